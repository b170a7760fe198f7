"""Stage `probe` and `fincorp probe`: before any RL, how often does the base sample the hidden rule's answer?

    fincorp probe                       (or: dvc repro probe) -> eval/probe.json, and the law's prediction
    fincorp probe --law reports/studies/discovery/law.json

GRPO can only reward an answer it samples. The probe loads the base (the same loading code as every
stage: the tiny local model, or a hub model such as Qwen3-14B on a GPU host) and, on the rows GRPO
trains on (data/train.jsonl), measures the probability of sampling exactly each label's answer at the
GRPO sampling temperature (and at temperature 1), separately on the rule's prompts (gold MANUAL_REVIEW:
a VIP founder) and on the others. The measurement is eval's answer-probability code (teacher-forced,
canonical tokenization: a lower bound on what the sampler can emit as that label).

From it follows what the discovery law reads: the expected number of MANUAL_REVIEW completions GRPO
samples per optimizer step on the rule's prompts (rewarded) and on the others (penalised),

    expected_vip_escalations_per_step = prompts per step x share of rule prompts x num_generations
                                        x P_T(MANUAL_REVIEW | rule prompt)

and the same with the other prompts. eval/probe.json holds the measurement only (it reproduces bit for
bit, and does not depend on the GRPO budget). The prediction (steps to 50% / 90% validation VIP accuracy
within the profile's GRPO budget, or "not within the budget") comes from the laws fitted by `fincorp study
discovery` (reports/studies/discovery/law.json: the law in E at the temperatures it was fitted at, and the
law in E / T at GRPO's temperature and learning rate) and is printed, with its 95% prediction interval
(discovery.prediction_lines).
"""

from __future__ import annotations

import math
from pathlib import Path

from fincorp.eval import answer_log_probs, label_probabilities, mean_probability
from fincorp.jsonl import write_json
from fincorp.model import chat_kwargs, load_for_inference, load_tokenizer
from fincorp.params import Params, load_params
from fincorp.prompt import answer_text, prompt_messages
from fincorp.rules import MANUAL_REVIEW
from fincorp.split import read_applications

DEFAULT_LAW = "reports/studies/discovery/law.json"


def grpo_budget(p: Params, n_rows: int) -> dict[str, int]:
    """Prompts per optimizer step and the GRPO budget in optimizer steps, as TRL counts them (one process
    per launch.num_processes; each step takes prompts_per_step distinct prompts x num_generations)."""
    g = p.grpo
    completions = g.per_device_train_batch_size * g.gradient_accumulation_steps * p.launch.num_processes
    prompts = completions // g.num_generations
    steps_per_epoch = math.ceil(n_rows / prompts)
    return {"prompts_per_step": prompts, "steps_per_epoch": steps_per_epoch,
            "max_steps": math.ceil(steps_per_epoch * g.num_train_epochs)}


def temperatures(p: Params) -> list[float]:
    return sorted({1.0, float(p.grpo.temperature)})


def measure(p: Params, base_dir: str | Path, rows: list[dict]) -> dict:
    """The probe's record for a base on these rows (pure given the base and the rows)."""
    tokenizer = load_tokenizer(p.model, base_dir)
    model = load_for_inference(p.model, base_dir, None)
    prompts = [tokenizer.apply_chat_template(prompt_messages(r, p.prompt.burn_display), tokenize=False,
                                             add_generation_prompt=True, **chat_kwargs(p.model)) for r in rows]
    vip = [t for t, r in zip(prompts, rows) if r["label"] == MANUAL_REVIEW]
    other = [t for t, r in zip(prompts, rows) if r["label"] != MANUAL_REVIEW]
    if not vip or not other:
        raise ValueError(f"the probe needs rows with and without gold {MANUAL_REVIEW} (got {len(vip)} and "
                         f"{len(other)} of {len(rows)})")
    prompts_per_step = grpo_budget(p, len(rows))["prompts_per_step"]
    vip_share = len(vip) / len(rows)
    per_temperature = {}
    for t in temperatures(p):
        on_vip = label_probabilities(model, tokenizer, vip, p.eval.batch_size, t)
        on_other = mean_probability(answer_log_probs(model, tokenizer, other, answer_text(MANUAL_REVIEW),
                                                     p.eval.batch_size, t))
        samples = prompts_per_step * p.grpo.num_generations
        per_temperature[f"{t:g}"] = {
            "temperature": t,
            "vip_label_probability": on_vip,
            "p_mr_vip": on_vip[MANUAL_REVIEW]["mean"],
            "p_mr_other": on_other["mean"],
            "log10_p_mr_other": on_other["log10_mean"],
            "expected_vip_escalations_per_step": samples * vip_share * on_vip[MANUAL_REVIEW]["mean"],
            "expected_other_escalations_per_step": samples * (1 - vip_share) * on_other["mean"],
        }
    return {"n_rows": len(rows), "n_vip": len(vip), "n_other": len(other), "vip_share": vip_share,
            "grpo_temperature": float(p.grpo.temperature), "num_generations": p.grpo.num_generations,
            "prompts_per_step": prompts_per_step, "by_temperature": per_temperature}


def describe(record: dict, law: dict | None, max_steps: int, lr: float | None = None) -> str:
    """What a user reads: the measurement at GRPO's temperature and, given a law, its prediction within the
    profile's GRPO budget of `max_steps` optimizer steps at GRPO's learning rate `lr`."""
    m = record["by_temperature"][f"{record['grpo_temperature']:g}"]
    lines = [f"probe: {record['n_vip']} rule prompts (gold {MANUAL_REVIEW}) and {record['n_other']} others in the "
             f"GRPO training rows; sampling at temperature {m['temperature']:g}",
             f"  P({MANUAL_REVIEW} | rule prompt) = {m['p_mr_vip']:.3g}   P({MANUAL_REVIEW} | other prompt) = "
             f"{m['p_mr_other']:.3g}",
             f"  expected sampled escalations per optimizer step: {m['expected_vip_escalations_per_step']:.3g} on rule "
             f"prompts (rewarded), {m['expected_other_escalations_per_step']:.3g} on others (penalised); "
             f"{record['prompts_per_step']} prompts x {record['num_generations']} generations per step",
             f"  GRPO budget of these params: {max_steps} optimizer steps"]
    if law is None:
        lines.append("  no discovery law to predict with (run `fincorp study discovery`, or pass --law)")
        return "\n".join(lines)
    from fincorp.discovery import prediction_lines  # the law's form is the study's (not a stage dependency)

    return "\n".join(lines + prediction_lines(law, m, max_steps, lr))


def run(params_path: str, base_dir: str, train: str, out: str | None, law_path: str | None) -> dict:
    p = load_params(params_path)
    rows = read_applications(train)
    law = None
    if law_path is not None:
        import json

        if not Path(law_path).is_file():
            raise FileNotFoundError(f"{law_path}: no discovery law here (run `fincorp study discovery` first)")
        law = json.loads(Path(law_path).read_text())
    record = measure(p, base_dir, rows)
    if out is not None:
        write_json(out, record)
    print(describe(record, law, grpo_budget(p, len(rows))["max_steps"], float(p.grpo.lr)))
    return record
