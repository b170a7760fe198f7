"""fincorp.train's records: what a training run writes to its DVC outputs (run.json, the dvclive curves)
holds no timing, and the timings go to telemetry/<stage>.json instead. Fakes stand in for the trainer."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from fincorp import train

TIMINGS = {"train_runtime": 232.2, "train_samples_per_second": 22.0, "train_steps_per_second": 2.76,
           "total_flos": 3.9e12, "step_time": 0.41}


@pytest.mark.parametrize("key", [*TIMINGS, "train/runtime"])
def test_timing_keys(key):
    assert train.is_timing_key(key)


@pytest.mark.parametrize("key", ["loss", "train_loss", "grad_norm", "learning_rate", "entropy", "reward",
                                 "sampled_share/INVALID", "frac_reward_zero_std", "epoch", "num_tokens"])
def test_learning_keys_are_kept(key):
    assert not train.is_timing_key(key)


def test_dvclive_curves_hold_no_timings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive looks for a git/dvc repo from the cwd; none here
    callback = train.live_callback(tmp_path / "logs", resume=False)
    args = SimpleNamespace(to_dict=lambda: {"learning_rate": 0.003})
    state = SimpleNamespace(global_step=10, is_world_process_zero=True)
    logs = {"loss": 0.5, "grad_norm": 0.1, "step_time": 0.4}
    callback.on_log(args, state, None, logs=logs)
    callback.on_log(args, SimpleNamespace(global_step=20, is_world_process_zero=True), None,
                    logs={"train_loss": 0.3, "epoch": 1.0, **{k: v for k, v in TIMINGS.items() if k != "step_time"}})
    assert logs == {"loss": 0.5, "grad_norm": 0.1, "step_time": 0.4}  # the other callbacks see every key
    metrics = tmp_path / "logs" / "plots" / "metrics"
    assert sorted(p.relative_to(metrics).as_posix() for p in metrics.rglob("*.tsv")) == [
        "epoch.tsv", "grad_norm.tsv", "loss.tsv", "train/loss.tsv"]
    assert (metrics / "loss.tsv").read_text().splitlines()[1].split("\t")[0] == "10"  # the trainer's step
    summary = json.loads((tmp_path / "logs" / "metrics.json").read_text())
    assert not [k for k in json.dumps(summary).split('"') if train.is_timing_key(k)], summary


@pytest.mark.parametrize("torn", ["", '{"step": 3, "loss"'])
def test_a_run_killed_while_dvclive_wrote_its_summary_resumes(tmp_path, monkeypatch, torn):
    """dvclive rewrites metrics.json in place: a kill mid-write leaves it empty or cut, and resuming must not
    fail on it; a whole summary is kept and resumed from."""
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.json").write_text(torn)
    (logs / "params.yaml").write_text("lr: [")
    callback = train.live_callback(logs, resume=True)
    assert callback.live.step == 0 and not (logs / "params.yaml").exists()
    (logs / "metrics.json").write_text('{"step": 30, "loss": 0.5}')
    assert train.live_callback(logs, resume=True).live.step == 31  # dvclive resumes after its last step


class FakeModel:
    def save_pretrained(self, folder, safe_serialization):
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"weights")
        (Path(folder) / "adapter_config.json").write_text('{"target_modules": ["v_proj", "q_proj"]}')


def fake_run(log_history):
    trainer = SimpleNamespace(model=FakeModel(), state=SimpleNamespace(log_history=log_history))
    result = SimpleNamespace(global_step=40, training_loss=0.25,
                             metrics={"train_loss": 0.25, "epoch": 1.0, **TIMINGS})
    return trainer, result


def test_run_json_is_deterministic_and_telemetry_holds_the_timings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "checkpoints" / "grpo"
    ckpt.mkdir(parents=True)
    trainer, result = fake_run([{"loss": 1.0, "step_time": 0.5}, {"loss": 0.5, "step_time": 0.3}, {"train_loss": 0.25}])
    train.save_adapter(trainer, tmp_path / "models" / "grpo", ckpt, {"lr": 0.001}, started=0.0, result=result,
                       resumed_from="checkpoints/grpo/checkpoint-20", vip_samples=12)
    record = json.loads((tmp_path / "models" / "grpo" / "run.json").read_text())
    assert set(record) == {"params", "versions", "global_step", "train_loss", "vip_samples"}
    assert (record["global_step"], record["train_loss"], record["vip_samples"]) == (40, 0.25, 12)
    assert (tmp_path / "models" / "grpo" / "adapter_model.safetensors").is_file()
    assert not ckpt.exists()
    telemetry = json.loads((tmp_path / "telemetry" / "grpo.json").read_text())  # default: telemetry/<out>.json
    assert telemetry["stage"] == "grpo" and telemetry["resumed_from"] == "checkpoints/grpo/checkpoint-20"
    assert telemetry["num_processes"] == 1 and telemetry["wall_time_s"] > 0 and telemetry["peak_memory_mib"] > 0
    assert telemetry["train_runtime"] == 232.2 and telemetry["total_flos"] == 3.9e12
    assert telemetry["mean_step_time_s"] == pytest.approx(0.4)
    assert {"hardware", "host", "git_commit"} <= set(telemetry) and "train_loss" not in telemetry


def test_telemetry_path_can_be_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    trainer, result = fake_run([{"loss": 1.0}])
    train.save_adapter(trainer, tmp_path / "out" / "sft", tmp_path / "ckpt", {}, started=0.0, result=result,
                       telemetry=tmp_path / "t" / "x.json")
    telemetry = json.loads((tmp_path / "t" / "x.json").read_text())
    assert telemetry["resumed_from"] is None and telemetry["mean_step_time_s"] is None
    assert not (tmp_path / "telemetry").exists()


def test_adapter_config_is_written_the_same_whatever_the_set_order(tmp_path):
    """PEFT writes target_modules in set order (per-process string hashing); save_adapter sorts them."""
    import json

    from fincorp.train import stable_adapter_config

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"r": 16, "target_modules": ["v_proj", "lm_head", "q_proj"]}))
    b.write_text(json.dumps({"target_modules": ["q_proj", "v_proj", "lm_head"], "r": 16}))
    stable_adapter_config(a)
    stable_adapter_config(b)
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text()) == {"r": 16, "target_modules": ["lm_head", "q_proj", "v_proj"]}


@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_bar_shows_on_a_terminal_only(monkeypatch, tmp_path, terminal):
    """On a terminal the Trainer's own progress bar (step, rate, time left); in a log file or CI its log lines."""
    import sys

    from fincorp.params import load_params
    from fincorp.train import trainer_args

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    args = trainer_args(load_params("params.yaml").grpo, 42, tmp_path)
    assert args["disable_tqdm"] is (not terminal)
