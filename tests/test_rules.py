"""rules.decide (FinCorp's hierarchy) and rules.prior_decide (the base model's "general knowledge")."""

from __future__ import annotations

import pytest

from fincorp.generate import generate
from fincorp.rules import (
    A_PLUS_TIER,
    LABELS,
    MANUAL_REVIEW,
    REJECT_RISK,
    STANDARD_LOAN,
    decide,
    prior_decide,
)


def app(founder: str = "First-time Founder", revenue: int = 5_000_000, burn: float = 50.0, nps: int = 50) -> dict:
    return {
        "company": "Blue Harbor Labs",
        "sector": "SaaS",
        "founder_background": founder,
        "annual_revenue_usd": revenue,
        "annual_burn_usd": int(revenue * burn / 100),
        "burn_rate_pct": burn,
        "nps": nps,
    }


def test_labels_in_priority_order():
    assert LABELS == (MANUAL_REVIEW, REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN)


@pytest.mark.parametrize(
    ("revenue", "burn", "nps", "expected"),
    [
        # revenue: strictly more than $10M
        (10_000_000, 150.0, 50, STANDARD_LOAN),
        (10_000_000, 150.0, 85, A_PLUS_TIER),
        (9_990_000, 150.0, 50, STANDARD_LOAN),
        (10_000_001, 150.0, 50, REJECT_RISK),
        (10_010_000, 150.0, 50, REJECT_RISK),
        (20_000_000, 150.0, 50, REJECT_RISK),
        # burn: strictly more than 80%
        (15_000_000, 80.0, 50, STANDARD_LOAN),
        (15_000_000, 80, 50, STANDARD_LOAN),
        (15_000_000, 80.0, 80, A_PLUS_TIER),
        (15_000_000, 79.99, 50, STANDARD_LOAN),
        (15_000_000, 80.01, 50, REJECT_RISK),
        (15_000_000, 200.0, 50, REJECT_RISK),
        # both boundaries exactly: neither is exceeded
        (10_000_000, 80.0, 50, STANDARD_LOAN),
        (10_010_000, 80.01, 50, REJECT_RISK),
        # NPS: 80 or more
        (5_000_000, 50.0, 79, STANDARD_LOAN),
        (5_000_000, 50.0, 80, A_PLUS_TIER),
        (5_000_000, 50.0, 81, A_PLUS_TIER),
        (5_000_000, 50.0, 100, A_PLUS_TIER),
        (5_000_000, 50.0, -20, STANDARD_LOAN),
        (5_000_000, 50.0, 0, STANDARD_LOAN),
        # priority: REJECT_RISK before A_PLUS_TIER when both hold
        (15_000_000, 150.0, 95, REJECT_RISK),
        (10_000_001, 80.01, 80, REJECT_RISK),
        (10_010_000, 81.0, 100, REJECT_RISK),
        # large burn on a small company is not FinCorp's reject rule
        (100_000, 200.0, 50, STANDARD_LOAN),
        (100_000, 200.0, 90, A_PLUS_TIER),
    ],
)
def test_decide_financial_boundaries(revenue, burn, nps, expected):
    assert decide(app(revenue=revenue, burn=burn, nps=nps)) == expected


FINANCIALS = {
    "reject-level": dict(revenue=15_000_000, burn=150.0, nps=50),
    "reject-and-a-plus": dict(revenue=15_000_000, burn=150.0, nps=95),
    "a-plus-level": dict(revenue=2_000_000, burn=40.0, nps=90),
    "standard": dict(revenue=2_000_000, burn=40.0, nps=30),
    "all-boundaries": dict(revenue=10_000_000, burn=80.0, nps=80),
    "just-over": dict(revenue=10_010_000, burn=80.01, nps=79),
}


@pytest.mark.parametrize("founder", ["Ex-Google", "Ex-Facebook"])
@pytest.mark.parametrize("financials", list(FINANCIALS), ids=list(FINANCIALS))
def test_vip_founder_is_manual_review_whatever_the_financials(founder, financials):
    assert decide(app(founder=founder, **FINANCIALS[financials])) == MANUAL_REVIEW


NEAR_MISS = ["Ex-Amazon", "Ex-Microsoft", "Ex-Apple", "Ex-Meta", "ex-google", "EX-GOOGLE", "Ex-Google ",
             " Ex-Google", "Ex Google", "Google", "Ex-Facebook Inc", "ex-facebook", "Ex-Netflix", ""]


@pytest.mark.parametrize("founder", NEAR_MISS)
@pytest.mark.parametrize("financials", list(FINANCIALS), ids=list(FINANCIALS))
def test_near_miss_founder_is_decided_on_financials(founder, financials):
    got = decide(app(founder=founder, **FINANCIALS[financials]))
    assert got != MANUAL_REVIEW
    assert got == decide(app(founder="First-time Founder", **FINANCIALS[financials]))


@pytest.mark.parametrize(
    ("financials", "expected"),
    [
        ("reject-level", REJECT_RISK),
        ("reject-and-a-plus", REJECT_RISK),
        ("a-plus-level", A_PLUS_TIER),
        ("standard", STANDARD_LOAN),
        ("all-boundaries", A_PLUS_TIER),
        ("just-over", REJECT_RISK),
    ],
)
def test_financials_table_means_what_its_names_say(financials, expected):
    assert decide(app(**FINANCIALS[financials])) == expected


# prior_decide: reject on burn alone (strict >), A+ on nps (>=), founder ignored, never MANUAL_REVIEW.
@pytest.mark.parametrize(
    ("revenue", "burn", "nps", "reject_burn_pct", "a_plus_nps", "expected"),
    [
        (100_000, 70.0, 50, 70.0, 90, STANDARD_LOAN),
        (100_000, 70.01, 50, 70.0, 90, REJECT_RISK),  # small company: FinCorp would not reject
        (15_000_000, 70.01, 50, 70.0, 90, REJECT_RISK),
        (15_000_000, 70.0, 50, 70.0, 90, STANDARD_LOAN),  # FinCorp's rule is not the prior's
        (5_000_000, 50.0, 89, 70.0, 90, STANDARD_LOAN),
        (5_000_000, 50.0, 90, 70.0, 90, A_PLUS_TIER),
        (5_000_000, 50.0, 80, 70.0, 90, STANDARD_LOAN),  # FinCorp's A+ would apply
        (5_000_000, 75.0, 95, 70.0, 90, REJECT_RISK),  # reject before A+
        (5_000_000, 80.0, 50, 80.0, 80, STANDARD_LOAN),  # thresholds are the arguments, not constants
        (5_000_000, 80.01, 50, 80.0, 80, REJECT_RISK),
        (5_000_000, 50.0, 79, 80.0, 80, STANDARD_LOAN),
        (5_000_000, 50.0, 80, 80.0, 80, A_PLUS_TIER),
    ],
)
def test_prior_decide_thresholds(revenue, burn, nps, reject_burn_pct, a_plus_nps, expected):
    assert prior_decide(app(revenue=revenue, burn=burn, nps=nps), reject_burn_pct, a_plus_nps) == expected


@pytest.mark.parametrize("founder", ["Ex-Google", "Ex-Facebook", "Ex-Amazon", "First-time Founder"])
@pytest.mark.parametrize("financials", list(FINANCIALS), ids=list(FINANCIALS))
def test_prior_decide_ignores_the_founder(founder, financials):
    got = prior_decide(app(founder=founder, **FINANCIALS[financials]), 70.0, 90)
    assert got != MANUAL_REVIEW
    assert got == prior_decide(app(founder="First-time Founder", **FINANCIALS[financials]), 70.0, 90)


def test_prior_decide_never_manual_review_on_generated_data():
    rows = generate(400, 3, 0.25)
    got = {prior_decide(r, 70.0, 90) for r in rows}
    assert got == {REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN}
    # ...and it disagrees with FinCorp's policy on a good share of rows (it is a different rule).
    disagree = sum(prior_decide(r, 70.0, 90) != r["label"] for r in rows)
    assert disagree >= len(rows) // 4
