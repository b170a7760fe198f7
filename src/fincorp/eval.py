"""Stage `eval`: one code path for every model, on every test row -> eval/<model>.json, predictions/<model>.jsonl.

    fincorp eval baseline
    fincorp eval sft --adapter models/sft          (or: dvc repro eval@sft)

Loads the base model (with the LoRA adapter merged in, if given), renders each test application
with the shared prompt and chat template, and generates a completion: temperature sampling with a
fixed seed (`eval.do_sample: true`, the article's protocol) or greedy. Generation is batched with
left padding. Each completion goes through scoring.parse_decision, the same parser the GRPO reward
uses; an invalid output counts as wrong.

Writes
  eval/<model>.json         the full record: accuracy with a 95% Wilson interval, per-class recall, VIP
                            accuracy (the MANUAL_REVIEW rows: the article's Task 2), invalid rate,
                            prediction distribution and its entropy (mode collapse), confusion matrix, and
                            vip_label_probability: per label, the mean over VIP prompts of the
                            probability of sampling exactly that answer at temperature 1 (and of its log10);
                            non_vip_manual_review_probability, the same for MANUAL_REVIEW on the other prompts.
                            What the report and the studies read; in git, not a DVC metric (the report
                            turns it into reports/metrics.json, the one DVC metrics file)
  predictions/<model>.jsonl one row per test item (id, label, completion, prediction, correct):
                            the paired record the report's significance tests use
  plots/confusion/<model>.json  actual/predicted pairs for `dvc plots show`
  telemetry/eval-<model>.json   wall time, generation time, throughput, peak memory (they vary run to
                            run: git-ignored, not a DVC output)
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fincorp.jsonl import write_json, write_jsonl
from fincorp.model import (chat_kwargs, generate_completions, load_for_inference, load_tokenizer,
                           write_telemetry)
from fincorp.params import load_params
from fincorp.prompt import answer_text, prompt_messages
from fincorp.rules import LABELS, MANUAL_REVIEW
from fincorp.scoring import INVALID, parse_decision
from fincorp.split import read_applications
from fincorp.stats import wilson

def answer_log_probs(model, tokenizer, prompts: list[str], answer: str, batch_size: int,
                     temperature: float = 1.0) -> list[float]:
    """ln P(answer, then end of turn | prompt) for each chat-formatted prompt, sampling at `temperature`.

    The probability that sampling (as GRPO does, at grpo.temperature) emits exactly this answer, by
    its canonical tokenization (other tokenizations of the same text are not counted: a lower bound).
    """
    import torch

    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        seqs = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in prompts[start:start + batch_size]]
        width = max(len(s) for s in seqs) + len(answer_ids)
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):  # right padding: positions of the real tokens start at 0
            ids[i, :len(s) + len(answer_ids)] = torch.tensor(s + answer_ids)
            mask[i, :len(s) + len(answer_ids)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.double()
            logp = torch.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1).cpu()
        for i, s in enumerate(seqs):
            positions = torch.arange(len(s) - 1, len(s) - 1 + len(answer_ids))  # logits predicting the answer
            out.append(float(logp[i, positions, torch.tensor(answer_ids)].sum()))
    return out


def mean_probability(lp: list[float]) -> dict[str, float]:
    """From ln P per prompt: the mean of P and the mean of log10 P."""
    return {"mean": sum(math.exp(x) for x in lp) / len(lp), "log10_mean": sum(lp) / len(lp) / math.log(10)}


def label_probabilities(model, tokenizer, prompts: list[str], batch_size: int,
                        temperature: float = 1.0) -> dict[str, dict[str, float]]:
    """Per label: the mean over prompts of P(exactly that answer) and the mean of its log10."""
    return {label: mean_probability(answer_log_probs(model, tokenizer, prompts, answer_text(label), batch_size,
                                                     temperature))
            for label in LABELS}


def compute_metrics(labels: list[str], predictions: list[str | None]) -> dict[str, Any]:
    """Exact-match metrics from gold labels and parsed predictions (None = invalid). Pure."""
    n = len(labels)
    if n == 0 or n != len(predictions):
        raise ValueError(f"need as many predictions as labels (got {len(predictions)} for {n})")
    shown = [p if p is not None else INVALID for p in predictions]
    correct = [g == p for g, p in zip(labels, predictions)]
    k = sum(correct)

    def acc(k: int, n: int) -> dict[str, Any]:
        lo, hi = wilson(k, n)
        return {"value": k / n if n else 0.0, "correct": k, "n": n, "ci95_low": lo, "ci95_high": hi}

    per_class = {}
    for label in LABELS:
        idx = [i for i, g in enumerate(labels) if g == label]
        per_class[label] = acc(sum(correct[i] for i in idx), len(idx))
    counts = Counter(shown)
    dist = {c: counts.get(c, 0) / n for c in (*LABELS, INVALID)}
    entropy = -sum(q * math.log2(q) for q in dist.values() if q > 0)
    return {
        "n": n,
        "accuracy": acc(k, n),
        "vip_accuracy": per_class[MANUAL_REVIEW],
        "per_class": per_class,
        "invalid_rate": counts.get(INVALID, 0) / n,
        "prediction_distribution": dist,
        # 0 bits = one answer for everything; log2(4) = 2 bits = all four labels equally often.
        "prediction_entropy_bits": entropy,
        "confusion": {g: {c: sum(1 for gg, pp in zip(labels, shown) if gg == g and pp == c)
                          for c in (*LABELS, INVALID)} for g in LABELS},
    }


def run(params_path: str, name: str, base_dir: str, adapter: str | None, test: str, record_out: str,
        predictions_out: str, plot_out: str, telemetry_out: str | None) -> None:
    started = time.time()
    p = load_params(params_path)
    rows = read_applications(test)
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: no LoRA adapter here (adapter_config.json missing); "
                                f"train it first with `dvc repro {Path(adapter).name}`")
    tokenizer = load_tokenizer(p.model, base_dir)
    model = load_for_inference(p.model, base_dir, adapter or None)
    prompts = [tokenizer.apply_chat_template(prompt_messages(r, p.prompt.burn_display), tokenize=False,
                                             add_generation_prompt=True, **chat_kwargs(p.model)) for r in rows]
    start = time.time()
    completions = generate_completions(model, tokenizer, prompts, p.eval.max_new_tokens, p.eval.batch_size,
                                       p.eval.do_sample, p.eval.temperature, p.seed)
    seconds = time.time() - start
    preds = [parse_decision(c) for c in completions]
    metrics = {"model": name, **compute_metrics([r["label"] for r in rows], preds)}
    # How likely the model is to even sample each answer on the VIP prompts: GRPO can only reinforce an
    # answer it samples (README, "Prior-strength study").
    vip_prompts = [t for t, r in zip(prompts, rows) if r["label"] == MANUAL_REVIEW]
    metrics["vip_label_probability"] = (label_probabilities(model, tokenizer, vip_prompts, p.eval.batch_size)
                                        if vip_prompts else None)
    # The same for MANUAL_REVIEW on every other prompt (no VIP founder): is escalation tied to the founder?
    other = [t for t, r in zip(prompts, rows) if r["label"] != MANUAL_REVIEW]
    metrics["non_vip_manual_review_probability"] = (
        mean_probability(answer_log_probs(model, tokenizer, other, answer_text(MANUAL_REVIEW), p.eval.batch_size))
        if other else None)
    write_jsonl(predictions_out, [
        {"id": r["id"], "label": r["label"], "completion": c, "prediction": pr, "correct": pr == r["label"]}
        for r, c, pr in zip(rows, completions, preds)
    ])
    write_json(plot_out, [{"actual": r["label"], "predicted": pr or INVALID} for r, pr in zip(rows, preds)])
    write_json(record_out, metrics)
    # Timing varies run to run, so it stays out of every DVC output (which must reproduce bit for bit).
    if telemetry_out is not None:
        write_telemetry(telemetry_out, f"eval@{name}", started, generate_seconds=round(seconds, 2),
                        samples_per_second=round(len(rows) / seconds, 1))
    print(f"{name}: accuracy {metrics['accuracy']['value']:.3f} on {len(rows)} rows, "
          f"VIP {metrics['vip_accuracy']['value']:.3f}, invalid {metrics['invalid_rate']:.3f} "
          f"({len(rows) / seconds:.0f} samples/s)")
