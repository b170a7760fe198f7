"""Loading the base model every stage agrees on, and what each stage records about its run.

Two records: the deterministic one saved beside each output (library versions, counts; a DVC output,
so it must be a function of code, params and data), and telemetry (wall time, peak memory, threads,
host, git commit: it varies run to run), written to telemetry/<stage>.json, which is git-ignored and
not a DVC output. `fincorp report` renders whatever telemetry it finds into reports/telemetry.md.

`model.source: local` -> the tiny model stage `base` wrote to models/base/.
`model.source: hub`    -> `model.name` (hub id or local folder) at `model.revision`, resolved through the
                          HF cache; models/base/meta.json records the resolved commit so later stages
                          load exactly that commit. Weights are never copied into the DVC cache.
Safetensors only; `trust_remote_code` is never enabled.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from fincorp.jsonl import write_json
from fincorp.params import ModelParams

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "dvc", "dvclive")


def versions() -> dict[str, str]:
    """The library versions the lock pins, and Python's major.minor: the record inside DVC outputs. The patch
    release (Debian's 3.11.2 in the CPU image, 3.11.7 on a host) changes no number, and would give identical
    weights new hashes; it goes to telemetry (write_telemetry's hardware) with the rest of the machine."""
    out = {"python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def hardware() -> dict[str, Any]:
    import torch

    hw: dict[str, Any] = {"machine": platform.machine(), "cpu_threads": torch.get_num_threads(),
                          "python": platform.python_version()}
    if torch.cuda.is_available():
        hw["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return hw


def git_commit(repo_dir: str | Path = ".") -> str:
    """HEAD of the git repository holding repo_dir, or "unknown" (no git, or not a repository)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:  # git is not installed
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def write_telemetry(path: str | Path, stage: str, started: float, **extra: Any) -> None:
    """This run's telemetry -> `path` (telemetry/<stage>.json): wall time since `started` (time.time()),
    peak memory, hardware and threads, host, the git commit of the working folder, and `extra`."""
    write_json(path, {
        "stage": stage,
        "wall_time_s": round(time.time() - started, 1),
        "peak_memory_mib": peak_memory_mib(),
        "hardware": hardware(),
        "host": platform.node(),
        "git_commit": git_commit(),
        **extra,
    })


def read_meta(base_dir: str | Path) -> dict[str, Any]:
    meta = Path(base_dir) / "meta.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta}: not found; build the base model first (`dvc repro base`)")
    return json.loads(meta.read_text())


def base_location(model: ModelParams, base_dir: str | Path) -> tuple[str, str | None]:
    """(path or hub id, revision) of the base weights, checked against models/base/meta.json."""
    meta = read_meta(base_dir)
    if meta["source"] != model.source or meta.get("name", "") != model.name:
        raise FileNotFoundError(
            f"{Path(base_dir) / 'meta.json'} was built for source={meta['source']!r} name={meta.get('name')!r}, "
            f"but params.yaml has model.source={model.source!r} model.name={model.name!r}; rerun `dvc repro base`"
        )
    if model.source == "local":
        return str(base_dir), None
    if Path(meta["path"]).is_dir():
        return meta["path"], None
    # Built on another machine (e.g. pulled with `dvc pull`): the same commit through this HF cache.
    return meta["name"], meta["resolved_commit"]


def load_tokenizer(model: ModelParams, base_dir: str | Path, padding_side: str = "left"):
    from transformers import AutoTokenizer

    path, revision = base_location(model, base_dir)
    tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=False)
    tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(model: ModelParams, base_dir: str | Path):
    import torch
    from transformers import AutoModelForCausalLM

    path, revision = base_location(model, base_dir)
    return AutoModelForCausalLM.from_pretrained(
        path, revision=revision, dtype=getattr(torch, model.dtype), trust_remote_code=False, use_safetensors=True
    )


def load_for_inference(model: ModelParams, base_dir: str | Path, adapter_dir: str | Path | None):
    """Base model, with a LoRA adapter merged in when one is given, in eval mode."""
    base = load_base_model(model, base_dir)
    if adapter_dir is None:
        return base.eval()
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json; train it first (`dvc repro`)")
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().eval()


def chat_kwargs(model: ModelParams) -> dict[str, Any]:
    """Chat-template kwargs: Qwen3's thinking is off for this task (ignored by templates without it)."""
    return {"enable_thinking": model.enable_thinking}


def generate_completions(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int,
                         do_sample: bool, temperature: float, seed: int, progress: bool = True) -> list[str]:
    """Completions for chat-formatted prompt strings, batched with left padding, in input order."""
    import torch
    from tqdm.auto import tqdm

    if tokenizer.padding_side != "left":
        raise ValueError("generation needs a left-padding tokenizer")
    torch.manual_seed(seed)
    out: list[str] = []
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc="generate", unit="batch", disable=not progress):
        enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        with torch.no_grad():
            ids = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                temperature=temperature if do_sample else None,
                top_p=1.0 if do_sample else None,
                top_k=0 if do_sample else None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = ids[:, enc["input_ids"].shape[1]:]
        out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return out
