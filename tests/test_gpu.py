"""The CUDA path (bf16, gradient checkpointing, device placement) on the tiny model. Skips without CUDA.

Run on a GPU host with scripts/gpu_smoke.sh, which also times it and keeps the log and metrics, with
`fincorp preflight`'s plan of the same training stage beside the peak that torch.cuda measured.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from conftest import write_tiny_params

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_bf16_gradient_checkpointing_training_and_eval_on_cuda(stage, tiny_workspace, tmp_path, committed_params,
                                                               monkeypatch):
    from fincorp import eval as eval_stage
    from fincorp import grpo, sft

    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    write_tiny_params(ws, committed_params, **{"model.dtype": "bfloat16", f"{stage}.bf16": True,
                                               f"{stage}.gradient_checkpointing": True})
    monkeypatch.chdir(ws)
    torch.cuda.reset_peak_memory_stats()
    start = time.time()
    {"sft": sft, "grpo": grpo}[stage].run("params.yaml", "models/base", "data/train.jsonl", f"models/{stage}",
                                          f"logs/{stage}", "data/val.jsonl")
    train_s = time.time() - start
    peak_mib = torch.cuda.max_memory_allocated() / 2**20  # training alone: eval below has its own peak
    record = json.loads(Path(f"models/{stage}/run.json").read_text())
    telemetry = json.loads(Path(f"telemetry/{stage}.json").read_text())
    assert telemetry["hardware"]["cuda_devices"], telemetry["hardware"]
    eval_stage.run("params.yaml", stage, "models/base", f"models/{stage}", "data/test.jsonl",
                   f"eval/{stage}.json", f"predictions/{stage}.jsonl", f"plots/{stage}.json",
                   f"telemetry/eval-{stage}.json")
    metrics = json.loads(Path(f"eval/{stage}.json").read_text())
    assert metrics["n"] == 16
    out = os.environ.get("FINCORP_SMOKE_OUT")
    if out:
        from fincorp import preflight
        from fincorp.params import load_params

        p = load_params("params.yaml")
        try:
            planned = preflight.plan(p, "models/base", preflight.target(p, None))["stages"][stage]
            seconds = planned["seconds"]  # None on a GPU without datasheet numbers here (memory only)
            plan = {"planned_peak_mib": round(planned["peak"] / 2**20), "planned_flops": planned["flops"],
                    "planned_seconds": None if seconds is None else round(seconds, 1)}
        except preflight.PreflightError as e:  # e.g. a driver too old for torch's CUDA: the measurement still counts
            plan = {"plan_error": str(e)}
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{stage}.json").write_text(json.dumps(
            {"train_seconds": round(train_s, 1), "peak_gpu_memory_mib": round(peak_mib), **plan,
             "device": torch.cuda.get_device_name(0), "metrics": metrics, "run": record, "telemetry": telemetry},
            indent=2, sort_keys=True))
