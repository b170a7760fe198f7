"""Stage sft: the completion-only mask, and a few real SFTTrainer steps on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from fincorp.params import ParamsError, load_params
from fincorp.split import read_applications


def test_sft_params_are_validated(write_params):
    with pytest.raises(ParamsError, match=r"sft\.per_device_train_batch_size: must be >= 1"):
        load_params(write_params({"sft.per_device_train_batch_size": 0}))
    with pytest.raises(ParamsError, match=r"sft\.lora\.dropout: must be in \[0, 1\)"):
        load_params(write_params({"sft.lora.dropout": 1.0}))
    with pytest.raises(ParamsError, match=r"sft\.completion_only_loss: expected true or false"):
        load_params(write_params({"sft.completion_only_loss": "yes"}))


@pytest.mark.slow
@pytest.mark.parametrize("completion_only", [True, False])
def test_collated_labels_mask_exactly_the_prompt(tiny_workspace, tmp_path, completion_only):
    """Prompt tokens are -100 and completion tokens are not (trl 0.27.0 + transformers 5 got this wrong)."""
    import dataclasses

    from fincorp.prompt import answer_text
    from fincorp.sft import build_trainer

    p = load_params(tiny_workspace / "params.yaml")
    p = dataclasses.replace(p, sft=dataclasses.replace(p.sft, completion_only_loss=completion_only))
    rows = read_applications(tiny_workspace / "data/train.jsonl")[:4]
    trainer = build_trainer(p, str(tiny_workspace / "models/base"), rows, tmp_path / "ckpt", None)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    tok = trainer.processing_class
    for i, row in enumerate(rows):
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        real = batch["attention_mask"][i].bool()
        trained = tok.decode(labels[(labels != -100)])
        if completion_only:
            assert trained == answer_text(row["label"]) + "<|im_end|>\n"
        else:
            assert (labels[real] == ids[real]).all()  # whole sequence, prompt included
        assert (labels[~real] == -100).all()  # padding never trained


@pytest.mark.slow
def test_sft_run_trains_lora_only_and_saves_an_adapter(tiny_workspace, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from fincorp import sft
    from fincorp.model import load_base_model
    from fincorp.sft import build_trainer

    monkeypatch.chdir(tiny_workspace)  # dvclive looks for a git/dvc repo from the cwd; none here
    p = load_params("params.yaml")
    rows = read_applications("data/train.jsonl")
    trainer = build_trainer(p, "models/base", rows, tmp_path / "ckpt", None)
    before = {n: t.detach().clone() for n, t in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    frozen = [n for n in before if "lora_" not in n]
    assert lora and frozen
    assert all(not after[n].requires_grad for n in frozen)
    assert all(torch.equal(before[n], after[n]) for n in frozen), "base weights changed"
    assert any(not torch.equal(before[n], after[n]) for n in lora), "no LoRA weight changed"

    # The stage end to end: adapter as safetensors, run record, dvclive curves, no checkpoints left.
    out = tmp_path / "models/sft"
    out.parent.mkdir()
    sft.run("params.yaml", "models/base", "data/train.jsonl", str(out), str(tmp_path / "logs/sft"), "data/val.jsonl",
            checkpoints=str(tmp_path / "checkpoints/sft"))
    assert (out / "adapter_config.json").is_file()
    assert set(load_file(out / "adapter_model.safetensors"))  # non-empty safetensors
    record = json.loads((out / "run.json").read_text())
    assert record["global_step"] > 0 and "peak_memory_mib" not in record  # timings: telemetry/, not run.json
    assert json.loads((tiny_workspace / "telemetry/sft.json").read_text())["peak_memory_mib"] > 0
    assert (tmp_path / "logs/sft/plots/metrics/loss.tsv").is_file()
    assert not (tmp_path / "logs/sft/plots/metrics/train/runtime.tsv").exists()
    assert not (tmp_path / "checkpoints/sft").exists()
    base = load_base_model(p.model, "models/base")
    assert base.config.model_type == "qwen3"


@pytest.mark.slow
def test_validation_callback_logs_curves_and_leaves_training_unchanged(tiny_workspace, tmp_path, monkeypatch):
    """The learning curve's validation passes (greedy, RNG forked) must not change what is trained."""
    from safetensors.torch import load_file

    from fincorp import sft

    monkeypatch.chdir(tiny_workspace)
    p = load_params("params.yaml")
    rows = read_applications("data/train.jsonl")
    plain = build_and_train(p, rows, tmp_path / "plain", val=None)
    with_val = build_and_train(p, rows, tmp_path / "val", val="data/val.jsonl")
    history = [c for c in with_val.callback_handler.callbacks if type(c).__name__ == "ValidationCallback"][0].history
    steps = [h["step"] for h in history]
    last = with_val.state.global_step
    assert steps[0] == 0 and steps[-1] == last and steps == sorted(set(steps))
    assert all(s % p.sft.val_steps == 0 for s in steps[:-1])
    n_val = len(read_applications("data/val.jsonl"))
    assert all(h["n"] == n_val and 0 <= h["correct"] <= n_val for h in history)
    a = plain.model.state_dict()
    b = with_val.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "validation changed training"

    # Through the stage: dvclive writes the curve next to the loss, at the optimizer step.
    out, logs = tmp_path / "models/sft", tmp_path / "logs/sft"
    sft.run("params.yaml", "models/base", "data/train.jsonl", str(out), str(logs), "data/val.jsonl",
            checkpoints=str(tmp_path / "checkpoints/sft"))
    curve = (logs / "plots/metrics/val/accuracy.tsv").read_text().splitlines()
    assert curve[0] == "step\taccuracy" and [int(line.split("\t")[0]) for line in curve[1:]] == steps
    assert [float(line.split("\t")[1]) for line in curve[1:]] == [h["accuracy"] for h in history]
    assert json.loads((logs / "metrics.json").read_text())["val"]["accuracy"] == history[-1]["accuracy"]
    assert set(load_file(out / "adapter_model.safetensors"))


def build_and_train(p, rows, folder, val):
    from fincorp.sft import build_trainer

    trainer = build_trainer(p, "models/base", rows, folder / "ckpt", None, val=val)
    trainer.train()
    return trainer
