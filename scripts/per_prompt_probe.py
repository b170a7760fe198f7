"""Per-prompt P_T(MANUAL_REVIEW | rule prompt) of a base, and the part of it GRPO can learn from.

    python scripts/per_prompt_probe.py BASE_DIR TRAIN_JSONL [OUT_JSON]

`fincorp probe` records the mean over the rule's prompts. This pass keeps each prompt's probability p at
temperatures 0.1 to 2 (eval's answer-probability code, as the probe) and adds, per optimizer step, the
expected MANUAL_REVIEW samples in groups whose rewards differ: a group of G samples that all answer
MANUAL_REVIEW has no GRPO advantage, so prompt i contributes G p_i (1 - p_i^(G-1)) instead of G p_i.
It is the analysis behind the discovery study's low-temperature check (docs/studies.md); params from
params.yaml (model, prompt, eval.batch_size, grpo batch and num_generations).
"""
from __future__ import annotations

import json
import math
import sys

from fincorp.eval import answer_log_probs
from fincorp.model import chat_kwargs, load_for_inference, load_tokenizer
from fincorp.params import load_params
from fincorp.probe import grpo_budget
from fincorp.prompt import answer_text, prompt_messages
from fincorp.rules import MANUAL_REVIEW
from fincorp.split import read_applications

TEMPERATURES = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)


def in_mixed_groups(ps: list[float], g: int) -> float:
    """Mean over prompts of P(a sample is MANUAL_REVIEW and its group of g holds another answer too)."""
    return sum(q * (1 - q ** (g - 1)) for q in ps) / len(ps)


def per_prompt(base: str, train: str, params: str = "params.yaml") -> dict[str, dict]:
    p = load_params(params)
    rows = read_applications(train)
    tokenizer = load_tokenizer(p.model, base)
    model = load_for_inference(p.model, base, None)
    prompts = [tokenizer.apply_chat_template(prompt_messages(r, p.prompt.burn_display), tokenize=False,
                                             add_generation_prompt=True, **chat_kwargs(p.model))
               for r in rows if r["label"] == MANUAL_REVIEW]
    if not prompts:
        raise ValueError(f"{train}: no rows with gold {MANUAL_REVIEW}")
    g = p.grpo.num_generations
    rule_samples = grpo_budget(p, len(rows))["prompts_per_step"] * g * len(prompts) / len(rows)
    out = {}
    for t in TEMPERATURES:
        ps = [math.exp(x) for x in answer_log_probs(model, tokenizer, prompts, answer_text(MANUAL_REVIEW),
                                                    p.eval.batch_size, t)]
        mean = sum(ps) / len(ps)
        informative = in_mixed_groups(ps, g)
        out[f"{t:g}"] = {"temperature": t, "n_rule_prompts": len(ps), "p_mr_vip": mean,
                         "n_prompts_above_half": sum(q > 0.5 for q in ps),
                         "e_vip": rule_samples * mean, "e_vip_in_mixed_groups": rule_samples * informative,
                         "largest_five": sorted(ps)[-5:]}
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    result = per_prompt(sys.argv[1], sys.argv[2])
    for t, r in result.items():
        print(f"T {t:>4}: P(MR | rule) {r['p_mr_vip']:.3g}  prompts with P > 0.5: {r['n_prompts_above_half']}/"
              f"{r['n_rule_prompts']}  E {r['e_vip']:.3g}  E in mixed groups {r['e_vip_in_mixed_groups']:.3g}  "
              f"(per T: {r['e_vip_in_mixed_groups'] / r['temperature']:.3g})")
    if len(sys.argv) == 4:
        with open(sys.argv[3], "w") as f:
            json.dump(result, f, indent=1)
