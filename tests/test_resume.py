"""Fault tolerance: a training stage killed midway resumes from its last checkpoint when run again,
and ends with the same adapter as an uninterrupted run (CPU, same threads)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import write_tiny_params

pytestmark = pytest.mark.slow


def stage_cmd(stage: str, ws: Path, out: str) -> list[str]:
    return [sys.executable, "-m", "fincorp", stage, "--params", "params.yaml", "--out", out,
            "--live", f"logs/{Path(out).name}"]


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_killed_training_resumes_and_matches_an_uninterrupted_run(stage, tiny_workspace, tmp_path,
                                                                   committed_params):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    steps = {"sft": {"sft.num_train_epochs": 20.0, "sft.save_steps": 20},
             "grpo": {"grpo.num_train_epochs": 3.0, "grpo.save_steps": 4}}[stage]
    write_tiny_params(ws, committed_params, **steps)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    # 1. Start, wait for the first checkpoint, kill -9 (no chance to clean up).
    proc = subprocess.Popen(stage_cmd(stage, ws, "models/killed"), cwd=ws, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = ws / "checkpoints" / stage
    deadline = time.time() + 300
    while not list(ckpt.glob("checkpoint-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()[-2000:]}"
    time.sleep(0.3)  # let the checkpoint finish writing; a half-written one must not be picked up anyway
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ws / "models/killed").exists(), "a killed run left an output DVC could cache"

    # 2. Run again: it resumes from the checkpoint and finishes.
    done = subprocess.run(stage_cmd(stage, ws, "models/killed"), cwd=ws, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((ws / "telemetry/killed.json").read_text())
    assert record["resumed_from"] and "checkpoint-" in record["resumed_from"]
    assert not ckpt.exists(), "checkpoints are removed once the stage finishes"

    # 3. An uninterrupted run from scratch ends with the same adapter.
    clean = subprocess.run(stage_cmd(stage, ws, "models/clean"), cwd=ws, env=env, capture_output=True,
                           text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert json.loads((ws / "telemetry/clean.json").read_text())["resumed_from"] is None
    a = load_file(ws / "models/killed/adapter_model.safetensors")
    b = load_file(ws / "models/clean/adapter_model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, f"resumed adapter differs from the uninterrupted one by {worst}"
