"""Stage eval on the tiny model: batched generation equals one-at-a-time, and clear errors."""

from __future__ import annotations

import json

import pytest

from fincorp.generate import generate
from fincorp.jsonl import write_jsonl
from fincorp.params import load_params
from fincorp.split import read_applications


@pytest.mark.slow
def test_batched_greedy_generation_equals_one_at_a_time(tiny_workspace):
    from fincorp.eval import generate_completions
    from fincorp.model import chat_kwargs, load_for_inference, load_tokenizer
    from fincorp.prompt import prompt_messages

    p = load_params(tiny_workspace / "params.yaml")
    base = tiny_workspace / "models/base"
    tok = load_tokenizer(p.model, base)
    model = load_for_inference(p.model, base, None)
    rows = read_applications(tiny_workspace / "data/test.jsonl")
    prompts = [tok.apply_chat_template(prompt_messages(r, "pct"), tokenize=False, add_generation_prompt=True,
                                       **chat_kwargs(p.model)) for r in rows]
    # Prompts differ in length (company names, numbers), so the batch really is left-padded.
    assert len({len(tok(x)["input_ids"]) for x in prompts}) > 1
    batched = generate_completions(model, tok, prompts, 12, 8, False, 1.0, 0, progress=False)
    single = generate_completions(model, tok, prompts, 12, 1, False, 1.0, 0, progress=False)
    assert batched == single


@pytest.mark.slow
def test_eval_writes_metrics_predictions_and_plot(tiny_workspace, tmp_path):
    from fincorp import eval as eval_stage

    run = dict(params_path=str(tiny_workspace / "params.yaml"), name="baseline",
               base_dir=str(tiny_workspace / "models/base"), adapter=None,
               test=str(tiny_workspace / "data/test.jsonl"),
               record_out=str(tmp_path / "e.json"), predictions_out=str(tmp_path / "p.jsonl"),
               plot_out=str(tmp_path / "c.json"), telemetry_out=str(tmp_path / "t.json"))
    eval_stage.run(**run)
    record = json.loads((tmp_path / "e.json").read_text())
    preds = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    test = read_applications(tiny_workspace / "data/test.jsonl")
    assert record["n"] == len(test) == len(preds)
    assert [p["id"] for p in preds] == [r["id"] for r in test]
    assert record["accuracy"]["correct"] == sum(p["correct"] for p in preds)
    telemetry = json.loads((tmp_path / "t.json").read_text())
    assert telemetry["stage"] == "eval@baseline" and telemetry["samples_per_second"] > 0
    outputs = ("e.json", "p.jsonl", "c.json")
    first = [(tmp_path / name).read_bytes() for name in outputs]
    eval_stage.run(**run)  # same seed, same model: byte-identical outputs (the timings are in t.json only)
    assert [(tmp_path / name).read_bytes() for name in outputs] == first


def test_missing_adapter_is_a_clear_error(tmp_path, write_params):
    from fincorp import eval as eval_stage

    params = write_params()
    write_jsonl(tmp_path / "test.jsonl", generate(4, 0, 0.25))
    with pytest.raises(FileNotFoundError, match="no LoRA adapter here"):
        eval_stage.run(str(params), "sft", str(tmp_path / "base"), str(tmp_path / "models/sft"),
                       str(tmp_path / "test.jsonl"), "e", "p", "c", "t")


def test_missing_base_folder_is_a_clear_error(tmp_path, write_params):
    from fincorp import eval as eval_stage

    write_jsonl(tmp_path / "test.jsonl", generate(4, 0, 0.25))
    with pytest.raises(FileNotFoundError, match="build the base model first"):
        eval_stage.run(str(write_params()), "baseline", str(tmp_path / "models/base"), None,
                       str(tmp_path / "test.jsonl"), "e", "p", "c", "t")


@pytest.mark.slow
def test_answer_probabilities_match_one_sequence_at_a_time(tiny_workspace):
    """Batched, right-padded log P(answer | prompt) equals the unpadded single-sequence computation."""
    import math

    import torch

    from fincorp.eval import answer_log_probs, label_probabilities
    from fincorp.model import load_for_inference, load_tokenizer
    from fincorp.params import load_params
    from fincorp.prompt import answer_text, prompt_messages

    p = load_params(tiny_workspace / "params.yaml")
    tok = load_tokenizer(p.model, tiny_workspace / "models/base")
    model = load_for_inference(p.model, tiny_workspace / "models/base", None)
    rows = read_applications(tiny_workspace / "data/test.jsonl")[:5]
    prompts = [tok.apply_chat_template(prompt_messages(r, "pct"), tokenize=False, add_generation_prompt=True)
               for r in rows]
    answer = answer_text("REJECT_RISK")
    batched = answer_log_probs(model, tok, prompts, answer, batch_size=4)
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    for text, got in zip(prompts, batched):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids + answer_ids])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        want = sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(answer_ids))
        assert got == pytest.approx(want, abs=1e-4)
    probs = label_probabilities(model, tok, prompts, batch_size=2)
    assert sum(v["mean"] for v in probs.values()) <= 1 + 1e-9  # four disjoint answers
    for v in probs.values():
        assert v["log10_mean"] <= math.log10(v["mean"]) + 1e-9  # Jensen: mean of logs <= log of mean
