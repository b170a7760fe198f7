"""What the two training stages (sft, grpo) must agree on: LoRA setup, logging, checkpoints, the records.

Checkpoints go to checkpoints/<stage>/ (git- and DVC-ignored), never into the stage's output: an
interrupted run resumes from its last checkpoint when rerun with the same params, base model and
data (a fingerprint file guards this); a finished run deletes them.

What a run writes is split by whether it can vary between runs of the same inputs: models/<stage>/run.json
and the dvclive curves are DVC outputs and hold only what code, params and data determine; wall time,
throughput, step times, memory, hardware, the process count and the checkpoint a run resumed from go to
telemetry/<stage>.json (git-ignored, not a DVC output).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.integrations import DVCLiveCallback

from fincorp.jsonl import write_json
from fincorp.model import versions, write_telemetry
from fincorp.params import LoraParams


def trainer_args(section: Any, seed: int, ckpt_dir: Path) -> dict[str, Any]:
    """The TrainingArguments sft and grpo share, from their params section (HF names, `lr` excepted):
    optimisation, precision, logging, checkpoints every `save_steps` (the last one kept), seeds.
    On a terminal the Trainer shows its progress bar (step, rate, time left); in a log file or CI (stderr not
    a terminal) it prints its log lines instead."""
    import sys

    import torch

    return dict(
        output_dir=str(ckpt_dir),
        learning_rate=section.lr,
        num_train_epochs=section.num_train_epochs,
        per_device_train_batch_size=section.per_device_train_batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        lr_scheduler_type=section.lr_scheduler_type,
        warmup_steps=section.warmup_steps,
        bf16=section.bf16,
        gradient_checkpointing=section.gradient_checkpointing,
        logging_steps=section.logging_steps,
        save_strategy="steps",
        save_steps=section.save_steps,
        save_total_limit=1,
        seed=seed,
        data_seed=seed,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not sys.stderr.isatty(),
    )


def lora_config(lp: LoraParams):
    from peft import LoraConfig

    return LoraConfig(r=lp.r, lora_alpha=lp.alpha, lora_dropout=lp.dropout,
                      target_modules=list(lp.target_modules), task_type="CAUSAL_LM", bias="none")


class StepAlignedDVCLiveCallback(DVCLiveCallback):
    """transformers' DVCLiveCallback, with dvclive's step set to the trainer's global step.

    The stock callback counts log calls, so its x axis drifts from the optimizer step (and restarts
    at 0 when a run resumes). dvc.yaml is not written by dvclive (dvcyaml=False): the repo's
    dvc.yaml declares the plots. Timing values (train_runtime, *_per_second, GRPO's step_time) and
    total_flos are not logged: they vary run to run, and logs/<stage>/ is a DVC output that must not
    (save_adapter puts the run's timings into telemetry/<stage>.json instead).
    """

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if self.live is not None:
            self.live.step = state.global_step
        # A copy: the other callbacks get the same dict.
        logs = {k: v for k, v in (logs or {}).items() if not is_timing_key(k)}
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)


TIMING_KEY_PARTS = ("runtime", "per_second", "step_time", "total_flos")


def is_timing_key(key: str) -> bool:
    """A trainer log key that measures time or throughput (or FLOPs), not learning."""
    return any(part in key for part in TIMING_KEY_PARTS)


def live_callback(log_dir: str | Path, resume: bool) -> StepAlignedDVCLiveCallback:
    from dvclive import Live

    if resume:
        drop_torn_summaries(Path(log_dir))
    live = Live(str(log_dir), dvcyaml=False, save_dvc_exp=False, resume=resume, report=None)
    return StepAlignedDVCLiveCallback(live=live)


def drop_torn_summaries(log_dir: Path) -> None:
    """Before dvclive resumes a killed run: dvclive rewrites its summary (metrics.json) and params.yaml in
    place, not atomically, so a kill during a write leaves a file Live(resume=True) cannot parse. Such a file
    is removed; the resumed run writes both again and takes its step from the trainer's checkpoint."""
    import yaml

    for name, parse in (("metrics.json", json.loads), ("params.yaml", yaml.safe_load)):
        path = log_dir / name
        if not path.is_file():
            continue
        try:
            whole = isinstance(parse(path.read_text(encoding="utf-8")), dict)
        except (ValueError, yaml.YAMLError):
            whole = False
        if not whole:
            path.unlink()


def fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (str, Path)) and Path(part).exists():
            p = Path(part)
            files = sorted(p.rglob("*")) if p.is_dir() else [p]
            for f in files:
                if f.is_file():
                    h.update(f.relative_to(p).as_posix().encode() if p.is_dir() else b"")
                    h.update(f.read_bytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def prepare_checkpoints(ckpt_dir: Path, **inputs: Any) -> str | None:
    """Last checkpoint to resume from, or None. Stale checkpoints (other inputs) are removed first.

    Under several processes only the main one cleans up; every process then reads the same folder.
    """
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        fp = fingerprint(*(inputs[k] for k in sorted(inputs)))
        stamp = ckpt_dir / "fingerprint.txt"
        if ckpt_dir.exists() and (not stamp.is_file() or stamp.read_text() != fp):
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fp)
    state.wait_for_everyone()
    # A checkpoint counts once the trainer has written its state (a kill can leave a partial folder).
    ckpts = sorted((c for c in ckpt_dir.glob("checkpoint-*") if (c / "trainer_state.json").is_file()),
                   key=lambda c: int(c.name.split("-")[1]))
    if ckpts:
        print(f"resuming from {ckpts[-1]}")
        return str(ckpts[-1])
    return None


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def stable_adapter_config(path: Path) -> None:
    """Rewrite PEFT's adapter_config.json with target_modules sorted. PEFT keeps them as a set and writes it
    in set order, which follows Python's per-process string hashing: the same adapter would otherwise get
    a different file, and a different DVC hash, on every run."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    write_json(path, config)


def save_adapter(trainer: Any, out: str | Path, ckpt_dir: Path, params: dict, started: float, result: Any,
                 resumed_from: str | None = None, telemetry: str | Path | None = None, **extra: Any) -> None:
    """Adapter (safetensors) + run.json into `out`, moved into place whole; then drop the checkpoints.

    run.json (a DVC output): params, library versions, global step, training loss, `extra`.
    `telemetry` (default telemetry/<out's folder name>.json, from the working folder): wall time since
    `started`, peak memory, hardware, process count, `resumed_from`, the trainer's runtime and
    throughput, and the mean step time when the trainer logs one (GRPO).
    Under several processes the main one saves, once; the others only wait for it.
    """
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    if not state.is_main_process:
        return
    out_dir = Path(out)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    trainer.model.save_pretrained(tmp, safe_serialization=True)
    stable_adapter_config(tmp / "adapter_config.json")
    write_json(tmp / "run.json", {
        "params": params,
        "versions": versions(),
        "global_step": result.global_step,
        "train_loss": result.training_loss,
        **extra,
    })
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    shutil.rmtree(ckpt_dir)
    step_times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h]
    write_telemetry(
        telemetry if telemetry is not None else Path("telemetry") / f"{out_dir.name}.json", out_dir.name, started,
        num_processes=state.num_processes,
        resumed_from=resumed_from,
        **{k: v for k, v in (result.metrics or {}).items() if is_timing_key(k)},
        mean_step_time_s=sum(step_times) / len(step_times) if step_times else None,
    )


class ValidationCallback(TrainerCallback):
    """Learning curves: scores the validation slice (data/val.jsonl) at step 0, every `every` optimizer
    steps and at the last step -> val/accuracy and val/vip_accuracy (the MANUAL_REVIEW rows), logged
    through dvclive at the trainer's global step, and kept in `history` for the run record.

    Greedy decoding, batched, through the shared parser: the same answer extraction eval uses. Every
    process scores (under ZeRO-3 or FSDP a forward pass needs all of them), the main one logs. Torch's
    random state (CPU and every CUDA device) is forked around it and the model's train/eval mode and the
    tokenizer's padding side are restored, so a run trains the same with or without it (a test checks).

    With `stop_vip_accuracy` > 0 (grpo.stop_vip_accuracy), training stops once validation VIP accuracy
    has been at least that at `stop_evals` validation points in a row: a rule discovered and held, not
    one lucky point (fincorp study discovery runs long budgets and stops there).
    """

    def __init__(self, rows: list[dict], prompts: list[str], tokenizer: Any, every: int, max_new_tokens: int,
                 batch_size: int, live: Any | None, stop_vip_accuracy: float = 0.0, stop_evals: int = 1):
        self.labels = [r["label"] for r in rows]
        self.stop_vip_accuracy, self.stop_evals = stop_vip_accuracy, stop_evals
        self.prompts, self.tokenizer, self.every = prompts, tokenizer, every
        self.max_new_tokens, self.batch_size, self.live = max_new_tokens, batch_size, live
        self.history: list[dict[str, Any]] = []

    def score(self, model: Any, step: int) -> dict[str, Any]:
        import torch

        from fincorp.model import generate_completions
        from fincorp.rules import MANUAL_REVIEW
        from fincorp.scoring import parse_decision

        was_training, side = model.training, self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        model.eval()
        try:
            with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
                completions = generate_completions(model, self.tokenizer, self.prompts, self.max_new_tokens,
                                                   self.batch_size, do_sample=False, temperature=1.0, seed=0,
                                                   progress=False)
        finally:
            model.train(was_training)
            self.tokenizer.padding_side = side
        correct = [parse_decision(c) == gold for c, gold in zip(completions, self.labels)]
        vip = [ok for ok, gold in zip(correct, self.labels) if gold == MANUAL_REVIEW]
        point = {"step": step, "accuracy": sum(correct) / len(correct), "correct": sum(correct), "n": len(correct),
                 "vip_accuracy": sum(vip) / len(vip) if vip else None, "vip_correct": sum(vip), "vip_n": len(vip)}
        self.history.append(point)
        if self.live is not None:
            self.live.step = step
            self.live.log_metric("val/accuracy", point["accuracy"])
            if vip:
                self.live.log_metric("val/vip_accuracy", point["vip_accuracy"])
        return point

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:  # a resumed run has its step-0 point already
            self.score(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.score(model, state.global_step)
            if self.should_stop():
                control.should_training_stop = True

    def should_stop(self) -> bool:
        """VIP accuracy at or above stop_vip_accuracy at the last stop_evals validation points."""
        last = self.history[-self.stop_evals:]
        return (self.stop_vip_accuracy > 0 and len(last) == self.stop_evals
                and all(h["vip_accuracy"] is not None and h["vip_accuracy"] >= self.stop_vip_accuracy for h in last))


def validation_callback(section: Any, p: Any, base_dir: str | Path, val_path: str | Path,
                        live: Any | None) -> ValidationCallback:
    """The ValidationCallback for a training stage: its own left-padding tokenizer, the shared prompt."""
    from fincorp.model import chat_kwargs, load_tokenizer
    from fincorp.prompt import prompt_messages
    from fincorp.split import read_applications

    rows = read_applications(str(val_path))
    tokenizer = load_tokenizer(p.model, base_dir, padding_side="left")
    prompts = [tokenizer.apply_chat_template(prompt_messages(r, p.prompt.burn_display), tokenize=False,
                                             add_generation_prompt=True, **chat_kwargs(p.model)) for r in rows]
    return ValidationCallback(rows, prompts, tokenizer, section.val_steps, p.eval.max_new_tokens,
                              p.eval.batch_size, live, getattr(section, "stop_vip_accuracy", 0.0),
                              getattr(section, "stop_evals", 1))

