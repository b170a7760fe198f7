"""Stage `generate`: synthetic FinCorp applications -> data/applications.jsonl.

    fincorp generate            (or: dvc repro generate)

Every class gets exactly n/4 rows. A row is drawn for a target class and kept only if
`rules.decide` gives that class (rejection sampling), so the hierarchy in rules.py is the only
definition of a label. VIP founders (Ex-Google, Ex-Facebook) get financials drawn exactly like
everyone else's, so on financials alone many would be REJECT_RISK, A_PLUS_TIER or STANDARD_LOAN:
only the founder decides. Non-VIP founders include near misses (other big-tech alumni).

Each of revenue, burn and NPS is drawn near its threshold with probability
`near_threshold_share` (exact boundary values included), so `>` vs `>=` is tested by the data.
Revenue is a multiple of $10,000 and burn a whole number of basis points of revenue, so
burn_rate_pct == 100 * annual_burn_usd / annual_revenue_usd exactly, as shown to the model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fincorp.jsonl import write_jsonl
from fincorp.params import GenerateParams, load_params
from fincorp.rules import (
    A_PLUS_NPS,
    LABELS,
    MANUAL_REVIEW,
    REJECT_BURN_PCT,
    REJECT_REVENUE_USD,
    VIP_BACKGROUNDS,
    decide,
)

# Other big-tech alumni: the rule is about two employers, not "big tech".
NEAR_MISS_BACKGROUNDS = ("Ex-Amazon", "Ex-Microsoft", "Ex-Apple", "Ex-Netflix", "Ex-Uber")
ORDINARY_BACKGROUNDS = (
    "First-time Founder",
    "Serial Entrepreneur",
    "Ex-McKinsey",
    "Ex-Goldman Sachs",
    "PhD Researcher",
    "Industry Veteran",
    "College Dropout",
    "Ex-Startup Employee",
)
ALL_BACKGROUNDS = VIP_BACKGROUNDS + NEAR_MISS_BACKGROUNDS + ORDINARY_BACKGROUNDS
SECTORS = ("Fintech", "Healthcare", "SaaS", "E-commerce", "Energy", "Logistics", "Biotech", "EdTech",
           "Real Estate", "Gaming")
_NAME_A = ("Blue", "Bright", "North", "Silver", "Quantum", "Green", "Iron", "Nova", "Clear", "Swift",
           "Golden", "Red", "Atlas", "Prime", "Urban", "Cedar")
_NAME_B = ("Harbor", "Peak", "Field", "Stone", "Wave", "Bridge", "Path", "Forge", "Leaf", "Signal",
           "River", "Grid", "Orbit", "Mesa", "Spring", "Vale")
_NAME_C = ("Labs", "Systems", "Health", "Capital", "Works", "Technologies", "Foods", "Energy", "Logistics",
           "AI", "Bio", "Networks")

REVENUE_MIN_USD, REVENUE_MAX_USD, REVENUE_STEP_USD = 100_000, 20_000_000, 10_000
BURN_MIN_BP, BURN_MAX_BP = 2_000, 20_000  # burn in basis points of revenue: 20.00% .. 200.00%
NPS_MIN, NPS_MAX = -20, 100


def draw_financials(rng: random.Random, near_share: float) -> dict[str, Any]:
    """Revenue, burn and NPS from the one distribution every founder shares."""
    if rng.random() < near_share:  # near $10M, 1 in 5 exactly on it
        steps = 0 if rng.random() < 0.2 else rng.choice([-1, 1]) * rng.randint(1, 20)
        revenue = REJECT_REVENUE_USD + steps * REVENUE_STEP_USD
    else:  # log-uniform over $0.1M .. $20M
        x = math.exp(rng.uniform(math.log(REVENUE_MIN_USD), math.log(REVENUE_MAX_USD)))
        revenue = int(round(x / REVENUE_STEP_USD)) * REVENUE_STEP_USD
    if rng.random() < near_share:  # near 80%, 1 in 5 exactly on it
        burn_bp = REJECT_BURN_PCT * 100 + (0 if rng.random() < 0.2 else rng.choice([-1, 1]) * rng.randint(1, 200))
    else:
        burn_bp = rng.randint(BURN_MIN_BP, BURN_MAX_BP)
    if rng.random() < near_share:  # near 80, 1 in 5 exactly on it
        nps = A_PLUS_NPS + (0 if rng.random() < 0.2 else rng.choice([-1, 1]) * rng.randint(1, 4))
    else:
        nps = rng.randint(NPS_MIN, NPS_MAX)
    burn_usd = revenue * burn_bp // 10_000  # exact: revenue is a multiple of 10,000
    return {
        "annual_revenue_usd": revenue,
        "annual_burn_usd": burn_usd,
        "burn_rate_pct": burn_bp / 100,
        "nps": nps,
    }


def draw_application(rng: random.Random, founder: str, near_share: float) -> dict[str, Any]:
    return {
        "company": f"{rng.choice(_NAME_A)} {rng.choice(_NAME_B)} {rng.choice(_NAME_C)}",
        "sector": rng.choice(SECTORS),
        "founder_background": founder,
        **draw_financials(rng, near_share),
    }


def _non_vip_founder(rng: random.Random) -> str:
    return rng.choice(NEAR_MISS_BACKGROUNDS) if rng.random() < 0.4 else rng.choice(ORDINARY_BACKGROUNDS)


def draw_balanced(
    rng: random.Random,
    per_label: dict[str, int],
    draw: Callable[[random.Random], dict[str, Any]],
    label_of: Callable[[dict[str, Any]], str],
    max_tries: int = 1_000_000,
) -> list[dict[str, Any]]:
    """Draw until every label has its count, keeping a row only if its label still has room."""
    need = dict(per_label)
    rows: list[dict[str, Any]] = []
    for _ in range(max_tries):
        if not any(need.values()):
            return rows
        app = draw(rng)
        label = label_of(app)
        if need.get(label, 0) > 0:
            need[label] -= 1
            rows.append({**app, "label": label})
    raise RuntimeError(f"could not balance the labels after {max_tries} draws; still needed: {need}")


def generate(n: int, seed: int, near_share: float) -> list[dict[str, Any]]:
    """n applications, exactly n/4 per FinCorp label, shuffled, ids APP-0001..; pure given the seed."""
    if n <= 0 or n % 4:
        raise ValueError(f"n must be a positive multiple of 4 for exact class balance, got {n}")
    rng = random.Random(seed)
    k = n // 4
    # VIP rows: a VIP founder, financials drawn like everyone else's.
    rows = [
        {**draw_application(rng, rng.choice(VIP_BACKGROUNDS), near_share), "label": MANUAL_REVIEW}
        for _ in range(k)
    ]
    rows += draw_balanced(
        rng,
        {label: k for label in LABELS if label != MANUAL_REVIEW},
        lambda r: draw_application(r, _non_vip_founder(r), near_share),
        decide,
    )
    rng.shuffle(rows)
    width = max(4, len(str(n)))
    return [{**row, "id": f"APP-{i:0{width}d}"} for i, row in enumerate(rows, start=1)]


def run(params_path: str, out: str) -> None:
    p: GenerateParams = load_params(params_path).generate
    write_jsonl(Path(out), generate(p.n, p.seed, p.near_threshold_share))
