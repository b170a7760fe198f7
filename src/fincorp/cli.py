"""`fincorp <stage>`: one command per DVC stage, each a thin call into the stage's run().

Paths are options whose defaults match dvc.yaml; every value comes from params.yaml (no
hyperparameter flags: they would hide values from `dvc params diff`).
"""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys
from pathlib import Path

import click

from fincorp.jsonl import DataError
from fincorp.params import ParamsError, load_params
from fincorp.preflight import GPUS, PreflightError, require_device

PARAMS = click.option("--params", "params_path", default="params.yaml", show_default=True,
                      type=click.Path(dir_okay=False), help="params file")
VAL = click.option("--val", default="data/val.jsonl", show_default=True,
                   help="validation slice scored every `val_steps` optimizer steps (learning curves)")


def user_errors(f):
    """Known user errors (bad params, bad data, missing model folders) become ClickExceptions."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except (ParamsError, DataError, FileNotFoundError, PreflightError) as e:
            raise click.ClickException(str(e)) from None

    return wrapper


MODEL_STAGES = ("base", "sft", "grpo", "hybrid", "eval", "probe")


def stage(name: str, params_path: str | None = None):
    """Import a stage module only when its command runs (torch/transformers take seconds to import). A model
    stage first checks the device: a profile with model.device cuda stops here, in one line, without a GPU."""
    if name in MODEL_STAGES and params_path is not None:
        require_device(load_params(params_path))
    module = importlib.import_module(f"fincorp.{name}")
    if name in MODEL_STAGES:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars would drown the stage's log
    return module


def train_stage(name: str, params_path: str, base_dir: str, train: str, out: str, log_dir: str, val: str,
                init: str | None = None) -> None:
    """Run a training stage in this process, or relaunch it on several when params.yaml's `launch:` says so.

    launch.accelerate_config set -> `accelerate launch --config_file FILE -m fincorp NAME ...`
    launch.num_processes > 1     -> `torchrun --standalone --nproc_per_node N -m fincorp NAME ...`
    (accelerate starts several CPU processes only through MPI; torchrun needs nothing. The stage's own
    options must not be prefixes of the launchers' options: torchrun would take `--logs` as its own
    `--logs-specs`, hence `--live` for the dvclive folder.) The workers see
    LOCAL_RANK and run the stage; TRL/accelerate shard the batches; the main process saves, once.
    `val`: the validation slice scored for the learning curves. `init` (stage hybrid): the adapter training
    starts from.
    """
    p = load_params(params_path)
    require_device(p)  # before a launcher starts N processes that would each fail
    launch = p.launch
    if "LOCAL_RANK" in os.environ or not (launch.accelerate_config or launch.num_processes > 1):
        stage(name).run(params_path, base_dir, train, out, log_dir, val, **({"init_adapter": init} if init else {}))
        return
    args = ["-m", "fincorp", name, "--params", params_path, "--base", base_dir, "--train", train, "--out", out,
            "--live", log_dir, "--val", val, *(["--init", init] if init else [])]
    if launch.accelerate_config:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", launch.accelerate_config, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={launch.num_processes}", *args]
    env = dict(os.environ)
    import torch

    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "true"  # gloo backend, CPU tensors
    click.echo(f"launching: {' '.join(cmd[2:])}")
    code = subprocess.call(cmd, env=env)
    if code:
        raise click.ClickException(f"{name} failed under the launcher (exit code {code}); see the log above")


@click.group()
@click.version_option(package_name="fincorp")
def main() -> None:
    """FinCorp: can an LLM learn a business rule that is never stated? SFT vs GRPO, as a DVC pipeline."""


@main.command()
@PARAMS
@click.option("--out", default="data/applications.jsonl", show_default=True)
@user_errors
def generate(params_path: str, out: str) -> None:
    """Synthetic applications, exactly balanced across the four decisions."""
    stage("generate").run(params_path, out)


@main.command()
@PARAMS
@click.option("--data", default="data/applications.jsonl", show_default=True)
@click.option("--train", "train_out", default="data/train.jsonl", show_default=True)
@click.option("--test", "test_out", default="data/test.jsonl", show_default=True)
@click.option("--val", "val_out", default="data/val.jsonl", show_default=True)
@user_errors
def split(params_path: str, data: str, train_out: str, test_out: str, val_out: str) -> None:
    """Stratified, seeded train/test split and a validation slice of the train rows."""
    stage("split").run(params_path, data, train_out, test_out, val_out)


@main.command()
@PARAMS
@click.option("--out", default="models/base", show_default=True)
@user_errors
def base(params_path: str, out: str) -> None:
    """Build and pre-train the tiny base (model.source local), or resolve a hub model (hub)."""
    stage("base", params_path).run(params_path, out, "telemetry/base.json")


@main.command(name="eval")
@PARAMS
@click.argument("name")
@click.option("--base", "base_dir", default="models/base", show_default=True)
@click.option("--model", "model_dir", default=None,
              help="LoRA adapter folder to evaluate on the base; the base folder (or none) for the base itself")
@click.option("--test", default="data/test.jsonl", show_default=True)
@user_errors
def eval_(params_path: str, name: str, base_dir: str, model_dir: str | None, test: str) -> None:
    """Score model NAME on the full test set; writes eval/NAME.json, predictions/NAME.jsonl."""
    same = model_dir is None or Path(model_dir).resolve() == Path(base_dir).resolve()
    stage("eval", params_path).run(params_path, name, base_dir, None if same else model_dir, test,
                                   f"eval/{name}.json", f"predictions/{name}.jsonl", f"plots/confusion/{name}.json",
                                   f"telemetry/eval-{name}.json")


@main.command()
@PARAMS
@click.option("--base", "base_dir", default="models/base", show_default=True)
@click.option("--train", default="data/train.jsonl", show_default=True)
@click.option("--out", default="models/sft", show_default=True)
@click.option("--live", "log_dir", default="logs/sft", show_default=True)
@VAL
@user_errors
def sft(params_path: str, base_dir: str, train: str, out: str, log_dir: str, val: str) -> None:
    """Supervised fine-tuning of a LoRA adapter (TRL SFTTrainer)."""
    train_stage("sft", params_path, base_dir, train, out, log_dir, val)


@main.command()
@PARAMS
@click.option("--base", "base_dir", default="models/base", show_default=True)
@click.option("--train", default="data/train.jsonl", show_default=True)
@click.option("--out", default="models/grpo", show_default=True)
@click.option("--live", "log_dir", default="logs/grpo", show_default=True)
@VAL
@user_errors
def grpo(params_path: str, base_dir: str, train: str, out: str, log_dir: str, val: str) -> None:
    """Reinforcement learning of a LoRA adapter (TRL GRPOTrainer) with a rule-based reward."""
    train_stage("grpo", params_path, base_dir, train, out, log_dir, val)


@main.command()
@PARAMS
@click.option("--base", "base_dir", default="models/base", show_default=True)
@click.option("--init", "init_dir", default="models/sft", show_default=True, help="the SFT adapter to start from")
@click.option("--train", default="data/train.jsonl", show_default=True)
@click.option("--out", default="models/hybrid", show_default=True)
@click.option("--live", "log_dir", default="logs/hybrid", show_default=True)
@VAL
@user_errors
def hybrid(params_path: str, base_dir: str, init_dir: str, train: str, out: str, log_dir: str, val: str) -> None:
    """GRPO (the grpo: recipe) continuing the SFT adapter: SFT to teach, RL to refine."""
    train_stage("hybrid", params_path, base_dir, train, out, log_dir, val, init=init_dir)


@main.command()
@PARAMS
@click.option("--base", "base_dir", default="models/base", show_default=True)
@click.option("--train", default="data/train.jsonl", show_default=True,
              help="the rows GRPO trains on: the probe measures the base on their prompts")
@click.option("--out", default="eval/probe.json", show_default=True, help="the measurement ('-' = print only)")
@click.option("--law", "law_path", default=None,
              help="the discovery law to predict with [default: reports/studies/discovery/law.json, if there]")
@user_errors
def probe(params_path: str, base_dir: str, train: str, out: str, law_path: str | None) -> None:
    """Before RL: how often the base samples the hidden rule's answer, and what the discovery law predicts."""
    module = stage("probe", params_path)
    if law_path is None and Path(module.DEFAULT_LAW).is_file():
        law_path = module.DEFAULT_LAW
    module.run(params_path, base_dir, train, None if out == "-" else out, law_path)


@main.command()
@PARAMS
@click.argument("models", nargs=-1)
@click.option("--out", "out_dir", default="reports", show_default=True)
@user_errors
def report(params_path: str, models: tuple[str, ...], out_dir: str) -> None:
    """Tables, paired tests, figures and provenance for MODELS (default: baseline sft grpo hybrid) -> reports/."""
    module = stage("report")
    module.run(params_path, models or module.MODELS, out_dir=out_dir)


@main.command()
@click.argument("name", type=click.Choice(["seeds", "reward", "prior", "data", "tune", "control", "discovery"]))
@click.option("--n", "n_seeds", default=5, show_default=True, help="seeds study: how many seeds (42, 43, ...)")
@click.option("--queue", is_flag=True, help="only queue the experiments (run them with `dvc queue start -j N`)")
@click.option("--collect", "collect_only", is_flag=True, help="only write the report, from finished experiments")
@click.option("--force", is_flag=True, help="rerun experiments already run on this commit (default: keep them)")
@click.option("--out", "out_dir", default="reports/studies", show_default=True)
@user_errors
def study(name: str, n_seeds: int, queue: bool, collect_only: bool, force: bool, out_dir: str) -> None:
    """Run study NAME as DVC experiments and report it -> reports/studies/NAME/ (README, "Studies")."""
    if queue and collect_only:
        raise click.UsageError("--queue and --collect exclude each other")
    stage("study").run(name, n_seeds=n_seeds, queue=queue, collect_only=collect_only, force=force, out_dir=out_dir)


@main.command()
@PARAMS
@click.option("--profile", default=None,
              help="plan conf/ composed with this profile, as `dvc exp run -S profile=NAME` does "
                   "[default: params.yaml]")
@click.option("--gpu", default=None,
              help=f"plan for this GPU, visible or not: {', '.join(GPUS)} [default: the visible one]")
@click.option("--base", "base_dir", default="models/base", show_default=True)
@click.option("--out", default=None,
              help="the table (markdown; its JSON beside it) [default: telemetry/preflight-PROFILE.md]")
@user_errors
def preflight(params_path: str, profile: str | None, gpu: str | None, base_dir: str, out: str | None) -> None:
    """Memory, FLOPs and time of every stage before any download or training; stops when it cannot run or fit."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    importlib.import_module("fincorp.preflight").run(params_path, profile, gpu, base_dir, out)
