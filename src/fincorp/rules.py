"""FinCorp's decision hierarchy: the only definition of a label in the project.

First match wins:
  1. MANUAL_REVIEW  founder_background is "Ex-Google" or "Ex-Facebook" (the hidden rule)
  2. REJECT_RISK    annual_revenue_usd > 10,000,000 and burn_rate_pct > 80
  3. A_PLUS_TIER    nps >= 80
  4. STANDARD_LOAN  otherwise

`prior_decide` is *not* FinCorp's policy: it is the "general credit knowledge" the CPU base model is
pre-trained on (stage `base`), standing in for what a pretrained LLM already believes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MANUAL_REVIEW = "MANUAL_REVIEW"
REJECT_RISK = "REJECT_RISK"
A_PLUS_TIER = "A_PLUS_TIER"
STANDARD_LOAN = "STANDARD_LOAN"
# Priority order of the hierarchy.
LABELS: tuple[str, ...] = (MANUAL_REVIEW, REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN)

VIP_BACKGROUNDS: tuple[str, ...] = ("Ex-Google", "Ex-Facebook")
REJECT_REVENUE_USD = 10_000_000
REJECT_BURN_PCT = 80
A_PLUS_NPS = 80


def decide(app: Mapping[str, Any]) -> str:
    """FinCorp's label for one application (keys as in data/applications.jsonl)."""
    if app["founder_background"] in VIP_BACKGROUNDS:
        return MANUAL_REVIEW
    if app["annual_revenue_usd"] > REJECT_REVENUE_USD and app["burn_rate_pct"] > REJECT_BURN_PCT:
        return REJECT_RISK
    if app["nps"] >= A_PLUS_NPS:
        return A_PLUS_TIER
    return STANDARD_LOAN


def prior_decide(app: Mapping[str, Any], reject_burn_pct: float, a_plus_nps: int) -> str:
    """Standard banking intuition, not FinCorp's policy; never MANUAL_REVIEW.

    Reject any company burning more than `reject_burn_pct` of its revenue (whatever its size), else
    reward exceptional loyalty (nps >= `a_plus_nps`), else a standard loan. The founder is ignored.
    """
    if app["burn_rate_pct"] > reject_burn_pct:
        return REJECT_RISK
    if app["nps"] >= a_plus_nps:
        return A_PLUS_TIER
    return STANDARD_LOAN
