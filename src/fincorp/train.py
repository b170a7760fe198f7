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

from transformers.integrations import DVCLiveCallback

from fincorp.jsonl import write_json
from fincorp.model import versions, write_telemetry
from fincorp.params import LoraParams


def trainer_args(section: Any, seed: int, ckpt_dir: Path) -> dict[str, Any]:
    """The TrainingArguments sft and grpo share, from their params section (HF names, `lr` excepted):
    optimisation, precision, logging, checkpoints every `save_steps` (the last one kept), seeds."""
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
        disable_tqdm=True,
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

    live = Live(str(log_dir), dvcyaml=False, save_dvc_exp=False, resume=resume, report=None)
    return StepAlignedDVCLiveCallback(live=live)


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
