"""The distributed path, for real, on CPU: SFT and GRPO on the tiny model in 2 processes (torchrun,
gloo), started by `fincorp <stage>` itself because params.yaml says `launch.num_processes: 2`.
Results are saved once (by the main process) and evaluate like any other adapter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import write_tiny_params

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_two_process_training_saves_once_and_evaluates(stage, tiny_workspace, tmp_path, committed_params):
    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    write_tiny_params(ws, committed_params, **{"launch.num_processes": 2})
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "fincorp", stage], cwd=ws, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "launching: torch.distributed.run --standalone --nproc_per_node=2" in run.stdout
    assert json.loads((ws / f"telemetry/{stage}.json").read_text())["num_processes"] == 2
    assert sorted(p.name for p in (ws / f"models/{stage}").iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "run.json"]
    assert not (ws / "checkpoints" / stage).exists()
    ev = subprocess.run([sys.executable, "-m", "fincorp", "eval", stage, "--model", f"models/{stage}"], cwd=ws,
                        env=env, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    metrics = json.loads((ws / f"eval/{stage}.json").read_text())
    assert metrics["n"] == 16 and 0.0 <= metrics["accuracy"]["value"] <= 1.0
    assert abs(sum(metrics["prediction_distribution"].values()) - 1) < 1e-9
