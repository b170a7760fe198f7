"""generate.generate (pure, seeded, exactly balanced) and the prompt every stage renders from a row."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from fincorp.generate import NEAR_MISS_BACKGROUNDS, generate
from fincorp.jsonl import write_jsonl
from fincorp.prompt import SYSTEM_PROMPT, prompt_messages, render_application
from fincorp.rules import (
    A_PLUS_TIER,
    LABELS,
    MANUAL_REVIEW,
    REJECT_RISK,
    STANDARD_LOAN,
    VIP_BACKGROUNDS,
    decide,
)

SEED = 20251201  # generate.seed in the committed params.yaml
SHARE = 0.25  # generate.near_threshold_share


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate(800, SEED, SHARE)


@pytest.mark.parametrize("n", [4, 8, 40, 400, 800])
@pytest.mark.parametrize("near_share", [0.0, 0.25, 1.0])
def test_exact_balance(n, near_share):
    got = generate(n, 11, near_share)
    assert len(got) == n
    assert Counter(r["label"] for r in got) == {label: n // 4 for label in LABELS}


@pytest.mark.parametrize("n", [0, -4, 1, 2, 3, 5, 6, 7, 801, 802])
def test_n_not_a_positive_multiple_of_4_is_an_error(n):
    with pytest.raises(ValueError, match="multiple of 4"):
        generate(n, SEED, SHARE)


@pytest.mark.parametrize("seed", [SEED, 0, 1])
def test_same_seed_same_rows_and_bytes(tmp_path, seed):
    a, b = generate(800, seed, SHARE), generate(800, seed, SHARE)
    assert a == b
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    data = (tmp_path / "a.jsonl").read_bytes()
    assert data == (tmp_path / "b.jsonl").read_bytes()
    assert data.count(b"\n") == 800


def test_different_seed_different_rows(rows):
    other = generate(800, SEED + 1, SHARE)
    assert other != rows
    # Not just a reordering: most applications differ.
    def key(r):
        return (r["founder_background"], r["annual_revenue_usd"], r["annual_burn_usd"], r["nps"])

    shared = {key(r) for r in rows} & {key(r) for r in other}
    assert len(shared) < 100


def test_different_near_share_different_rows():
    assert generate(40, SEED, 0.0) != generate(40, SEED, 0.5)


@pytest.mark.parametrize("seed", [SEED, 0, 1, 2])
@pytest.mark.parametrize("near_share", [0.0, 0.25, 1.0])
def test_every_label_is_decide(seed, near_share):
    got = generate(400, seed, near_share)
    bad = [r for r in got if r["label"] != decide(r)]
    assert bad == []


def test_ids_unique_and_numbered(rows):
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {f"APP-{i:04d}" for i in range(1, 801)}


def test_ids_widen_for_large_n():
    ids = [r["id"] for r in generate(10_000, 5, SHARE)]
    assert set(ids) == {f"APP-{i:05d}" for i in range(1, 10_001)}


def test_rows_are_shuffled(rows):
    # Labels must not come in blocks (VIP rows first, say): a model could learn the position.
    first = [r["label"] for r in rows[:100]]
    assert len(set(first)) == 4
    assert Counter(first).most_common(1)[0][1] < 50


def test_fields_and_types(rows):
    for r in rows:
        assert set(r) == {"id", "company", "sector", "founder_background", "annual_revenue_usd",
                          "annual_burn_usd", "burn_rate_pct", "nps", "label"}
        assert type(r["annual_revenue_usd"]) is int
        assert type(r["annual_burn_usd"]) is int
        assert type(r["nps"]) is int
        assert type(r["burn_rate_pct"]) is float
        assert 100_000 <= r["annual_revenue_usd"] <= 20_000_000
        assert r["annual_revenue_usd"] % 10_000 == 0
        assert -20 <= r["nps"] <= 100
        assert r["burn_rate_pct"] > 0


@pytest.mark.parametrize("seed", [SEED, 0, 1])
def test_burn_pct_is_exactly_burn_over_revenue(seed):
    for r in generate(800, seed, SHARE):
        assert r["burn_rate_pct"] == 100 * r["annual_burn_usd"] / r["annual_revenue_usd"], r
        assert r["burn_rate_pct"] == round(r["burn_rate_pct"], 2), r  # whole basis points


def _financial_label(row: dict) -> str:
    return decide({**row, "founder_background": "First-time Founder"})


# Expected share of REJECT_RISK on financials alone is ~12% (P(revenue > 10M) ~ 0.20 times
# P(burn > 80%) ~ 0.60), so 200 VIP rows land under 10% for some seeds: the committed seed is
# checked at the brief's 10%, and a large n checks the distribution itself.
@pytest.mark.parametrize(("n", "seed"), [(800, SEED), (8000, 99)])
def test_vip_rows_have_every_kind_of_financials(n, seed):
    vip = [r for r in generate(n, seed, SHARE) if r["label"] == MANUAL_REVIEW]
    assert len(vip) == n // 4
    assert {r["founder_background"] for r in vip} == set(VIP_BACKGROUNDS)
    mix = Counter(_financial_label(r) for r in vip)
    for label in (REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN):
        assert mix[label] >= 0.10 * len(vip), mix


def test_vip_backgrounds_only_on_manual_review_rows(rows):
    for r in rows:
        assert (r["founder_background"] in VIP_BACKGROUNDS) == (r["label"] == MANUAL_REVIEW)


def test_near_miss_backgrounds_appear_among_non_vip_rows(rows):
    assert {"Ex-Amazon", "Ex-Microsoft", "Ex-Apple"} <= set(NEAR_MISS_BACKGROUNDS)
    assert not set(NEAR_MISS_BACKGROUNDS) & set(VIP_BACKGROUNDS)
    for label in (REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN):
        seen = {r["founder_background"] for r in rows if r["label"] == label}
        assert set(NEAR_MISS_BACKGROUNDS) <= seen, label


NEAR = {
    "revenue": lambda r: abs(r["annual_revenue_usd"] - 10_000_000) <= 200_000,
    "burn": lambda r: abs(r["burn_rate_pct"] - 80) <= 2,
    "nps": lambda r: abs(r["nps"] - 80) <= 4,
}
ON_BOUNDARY = {
    "revenue": lambda r: r["annual_revenue_usd"] == 10_000_000,
    "burn": lambda r: r["burn_rate_pct"] == 80.0,
    "nps": lambda r: r["nps"] == 80,
}


@pytest.mark.parametrize("field", list(NEAR))
def test_near_threshold_share(rows, field):
    near = sum(NEAR[field](r) for r in rows)
    assert near >= 0.10 * len(rows)
    assert sum(ON_BOUNDARY[field](r) for r in rows) >= 5
    # ...and the share comes from near_threshold_share, not from the base distribution.
    assert sum(NEAR[field](r) for r in generate(800, SEED, 0.0)) < near / 2


# Rows where the exact boundary decides the label (> vs >=): a model that learned ">=" for revenue
# or burn, or ">" for NPS, gets these wrong.
TRAPS = {
    "revenue == 10M, burn > 80, not REJECT": lambda r: (
        r["annual_revenue_usd"] == 10_000_000 and r["burn_rate_pct"] > 80 and r["label"] != MANUAL_REVIEW),
    "burn == 80, revenue > 10M, not REJECT": lambda r: (
        r["burn_rate_pct"] == 80.0 and r["annual_revenue_usd"] > 10_000_000 and r["label"] != MANUAL_REVIEW),
    "nps == 80, A_PLUS": lambda r: r["nps"] == 80 and r["label"] == A_PLUS_TIER,
}


@pytest.mark.parametrize("trap", list(TRAPS))
def test_boundary_rows_where_the_comparison_decides(rows, trap):
    hits = [r for r in rows if TRAPS[trap](r)]
    assert len(hits) >= 2
    assert all(r["label"] != REJECT_RISK for r in hits)


def test_no_global_random_state():
    random.seed(0)
    a = generate(200, SEED, SHARE)
    after_a = random.random()
    random.seed(12345)
    b = generate(200, SEED, SHARE)
    random.seed(0)
    c = generate(200, SEED, SHARE)
    after_c = random.random()
    assert a == b == c
    random.seed(0)
    assert random.random() == after_a == after_c  # generate did not draw from the global RNG


# ---- prompt ----------------------------------------------------------------------------------

EXAMPLE = {
    "id": "APP-0001",
    "company": "Nova Forge AI",
    "sector": "Fintech",
    "founder_background": "Ex-Amazon",
    "annual_revenue_usd": 12_340_000,
    "annual_burn_usd": 11_476_200,
    "burn_rate_pct": 93.0,
    "nps": 42,
    "label": REJECT_RISK,
}


@pytest.mark.parametrize(
    ("burn_display", "present", "absent"),
    [
        ("pct", ["Burn Rate (% of revenue): 93.00"], ["11476200", "Annual Burn Rate ($)"]),
        ("usd", ["Annual Burn Rate ($): 11476200"], ["93.00", "% of revenue"]),
    ],
)
def test_prompt_messages(burn_display, present, absent):
    messages = prompt_messages(EXAMPLE, burn_display)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    user = messages[1]["content"]
    assert user == render_application(EXAMPLE, burn_display)
    for s in ["Company: Nova Forge AI", "Sector: Fintech", "Founder Background: Ex-Amazon",
              "Annual Revenue ($): 12340000", "Customer NPS Score: 42", *present]:
        assert s in user.splitlines(), s
    for s in absent:
        assert s not in user
    for s in ["APP-0001", REJECT_RISK, "label"]:
        assert s not in user


@pytest.mark.parametrize(
    ("burn", "shown"),
    [(80.0, "80.00"), (80.01, "80.01"), (79.99, "79.99"), (93.5, "93.50"), (150.25, "150.25"), (20.0, "20.00")],
)
def test_pct_shows_two_decimals(burn, shown):
    user = render_application({**EXAMPLE, "burn_rate_pct": burn}, "pct")
    assert f"Burn Rate (% of revenue): {shown}" in user.splitlines()


@pytest.mark.parametrize("burn_display", ["", "PCT", "percent", "dollars", None])
def test_bad_burn_display(burn_display):
    with pytest.raises(ValueError, match="burn_display"):
        prompt_messages(EXAMPLE, burn_display)


def test_system_prompt_lists_labels_and_format():
    for label in LABELS:
        assert label in SYSTEM_PROMPT
    assert '{"decision": "<DECISION>"}' in SYSTEM_PROMPT
    assert "JSON" in SYSTEM_PROMPT


@pytest.mark.parametrize(
    "word", ["VIP", "Google", "Facebook", "founder", "Founder", "MANUAL_REVIEW if", "priority", "rule"]
)
def test_system_prompt_states_no_rule(word):
    assert word not in SYSTEM_PROMPT


@pytest.mark.parametrize("burn_display", ["pct", "usd"])
def test_rendered_applications_never_show_vip_or_label(rows, burn_display):
    for r in rows:
        messages = prompt_messages(r, burn_display)
        assert messages[0]["content"] == SYSTEM_PROMPT
        user = messages[1]["content"]
        assert "VIP" not in user
        assert not re.search(r"\bvip\b", user, re.IGNORECASE)
        for label in LABELS:
            assert label not in user, (r["id"], label)
        assert r["id"] not in user
        assert f"Founder Background: {r['founder_background']}" in user.splitlines()
