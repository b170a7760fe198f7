"""Stage grpo: params checks before any model loads, and a few real GRPOTrainer steps on the tiny model."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter

import pytest
import torch

from fincorp.params import ParamsError, load_params
from fincorp.split import read_applications


@pytest.mark.parametrize(("changes", "message"), [
    ({"grpo.num_generations": 1}, "grpo.num_generations: must be >= 2"),
    ({"grpo.per_device_train_batch_size": 6, "grpo.gradient_accumulation_steps": 1},
     "= 6 completions per step must be divisible by num_generations = 8; change one of these three values"),
    ({"grpo.reward": "shaped"}, "grpo.reward: 'shaped' is not allowed; use one of: exact, scripts, partial"),
    ({"grpo.loss_type": "ppo"}, "grpo.loss_type: 'ppo' is not allowed"),
    ({"grpo.use_vllm": True}, "grpo.use_vllm: needs a GPU profile"),
    ({"grpo.temperature": 0}, "grpo.temperature: must be positive"),
    ({"grpo.gradient_checkpointing": True},
     "grpo.share_prompt_prefix: needs grpo.gradient_checkpointing: false (with checkpointing the model keeps no "
     "key/value cache to share)"),
])
def test_grpo_params_are_checked_before_any_model_loads(write_params, changes, message):
    with pytest.raises(ParamsError) as e:
        load_params(write_params(changes))
    assert message in str(e.value)


@pytest.mark.slow
def test_grpo_steps_change_lora_only_and_the_reward_sees_the_label(tiny_workspace, tmp_path, monkeypatch):
    from fincorp import grpo
    from fincorp.grpo import build_trainer

    monkeypatch.chdir(tiny_workspace)
    p = load_params("params.yaml")
    # A cooler sampler: the tiny base samples mostly invalid JSON at 1.0 (greedy is valid), and groups of
    # all-invalid completions have no reward variance to learn from.
    p = dataclasses.replace(p, grpo=dataclasses.replace(p.grpo, temperature=0.5))
    rows = read_applications("data/train.jsonl")[:16]
    trainer, reward = build_trainer(p, "models/base", rows, tmp_path / "ckpt", None)
    before = {n: t.detach().clone() for n, t in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    frozen = [n for n in before if "lora_" not in n]
    assert all(torch.equal(before[n], after[n]) for n in frozen), "base weights changed"
    # The policy gradient is zero when every group has zero reward variance.
    zero_std = [h["frac_reward_zero_std"] for h in trainer.state.log_history if "frac_reward_zero_std" in h]
    assert min(zero_std) < 1.0, "every group had the same reward: nothing to learn from"
    assert any(not torch.equal(before[n], after[n]) for n in lora), "no LoRA weight changed"
    # Every completion was scored against its own prompt's gold label, passed by TRL from the dataset.
    expected = Counter({label: n * p.grpo.num_generations for label, n in Counter(r["label"] for r in rows).items()})
    assert reward.gold_seen == expected
    out = tmp_path / "models/grpo"
    out.parent.mkdir()
    grpo.run("params.yaml", "models/base", "data/train.jsonl", str(out), str(tmp_path / "logs/grpo"), "data/val.jsonl",
             checkpoints=str(tmp_path / "checkpoints/grpo"))
    record = json.loads((out / "run.json").read_text())
    assert (out / "adapter_model.safetensors").is_file()
    assert record["vip_samples"] > 0 and 0 <= record["vip_manual_review_samples"] <= record["vip_samples"]
    assert (tmp_path / "logs/grpo/plots/metrics/frac_reward_zero_std.tsv").is_file()
    # Our label shares, logged per step through dvclive: the five shares sum to 1 at every step.
    share_dir = tmp_path / "logs/grpo/plots/metrics/sampled_share"
    columns = {}
    for label in ("MANUAL_REVIEW", "REJECT_RISK", "A_PLUS_TIER", "STANDARD_LOAN", "INVALID"):
        rows = list(csv.DictReader((share_dir / f"{label}.tsv").open(), delimiter="\t"))
        columns[label] = {int(r["step"]): float(r[label]) for r in rows}
    steps = set.intersection(*(set(c) for c in columns.values()))
    assert steps and all(abs(sum(c[s] for c in columns.values()) - 1) < 1e-6 for s in steps)


@pytest.mark.slow
def test_hybrid_continues_the_sft_adapter(tiny_workspace, tmp_path, monkeypatch, committed_params):
    """Stage hybrid: GRPO whose trainable LoRA starts as the SFT adapter, saved as one adapter on the base."""
    from safetensors.torch import load_file

    from tests.conftest import write_tiny_params

    from fincorp import hybrid, sft
    from fincorp.grpo import build_trainer

    monkeypatch.chdir(tiny_workspace)
    sft_dir = tmp_path / "models/sft"
    sft.run("params.yaml", "models/base", "data/train.jsonl", str(sft_dir), str(tmp_path / "logs/sft"), "data/val.jsonl",
            checkpoints=str(tmp_path / "checkpoints/sft"))
    p = load_params("params.yaml")
    rows = read_applications("data/train.jsonl")[:8]
    trainer, _ = build_trainer(p, "models/base", rows, tmp_path / "ckpt", None, init_adapter=str(sft_dir))
    # The file also holds the (frozen) embedding and output layers, saved because LoRA targets them.
    saved = {k: v for k, v in load_file(sft_dir / "adapter_model.safetensors").items() if "lora_" in k}
    start = {n: t for n, t in trainer.model.named_parameters() if t.requires_grad}
    assert start and all("lora_" in n for n in start)
    # Every trainable tensor is the SFT adapter's (PEFT names it without the adapter name when saved).
    assert len(start) == len(saved)
    assert all(torch.equal(start[n], saved[n.replace(".default", "")]) for n in start)

    out = tmp_path / "models/hybrid"
    # A cooler sampler, as in the grpo test: at 1.0 the tiny SFT adapter's samples are invalid in every group
    # of most steps (no reward variance, no gradient), so whether the adapter moves would be down to luck.
    (tmp_path / "cool").mkdir()
    cool = write_tiny_params(tmp_path / "cool", committed_params, **{"grpo.temperature": 0.5})
    hybrid.run(str(cool), "models/base", "data/train.jsonl", str(out), str(tmp_path / "logs/hybrid"), "data/val.jsonl",
               init_adapter=str(sft_dir), checkpoints=str(tmp_path / "checkpoints/hybrid"))
    record = json.loads((out / "run.json").read_text())
    assert record["init_adapter"] == str(sft_dir) and record["global_step"] > 0
    trained = load_file(out / "adapter_model.safetensors")
    assert saved.keys() <= trained.keys()
    assert any(not torch.equal(trained[k], saved[k]) for k in saved), "GRPO did not change the SFT adapter"
    assert not (tmp_path / "checkpoints/hybrid").exists()


def test_hybrid_without_an_sft_adapter_is_a_clear_error(tiny_workspace, tmp_path, monkeypatch):
    from fincorp import hybrid

    monkeypatch.chdir(tiny_workspace)
    with pytest.raises(FileNotFoundError, match="no LoRA adapter to start from.*dvc repro sft"):
        hybrid.run("params.yaml", "models/base", "data/train.jsonl", str(tmp_path / "out"), str(tmp_path / "logs"),
                   "data/val.jsonl", init_adapter=str(tmp_path / "sft"), checkpoints=str(tmp_path / "ckpt"))
