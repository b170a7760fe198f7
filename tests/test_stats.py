"""stats: Wilson intervals, McNemar's exact test, paired bootstrap of an accuracy difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fincorp.stats import mcnemar_exact, paired_bootstrap_diff, wilson


# The article's numbers and their published intervals (../shared/SEED-NOTES.md), plus the edges.
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (54, 160, 0.269, 0.414),  # baseline 33.8%
        (26, 60, 0.316, 0.559),  # GRPO 43.3%
        (53, 60, 0.778, 0.942),  # SFT 88.3%
        (1, 14, 0.013, 0.315),  # VIP GRPO
        (12, 14, 0.601, 0.960),  # VIP SFT
        (0, 40, 0.0, 0.088),
        (40, 40, 0.912, 1.0),
    ],
)
def test_wilson_known_values(k, n, low, high):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=5e-4)
    assert hi == pytest.approx(high, abs=5e-4)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def _wilson_closed_form(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(1, 1), (0, 1), (3, 7), (54, 160), (80, 160), (159, 160), (500, 1000)])
def test_wilson_matches_the_closed_form(k, n):
    assert wilson(k, n) == pytest.approx(_wilson_closed_form(k, n), abs=1e-9)


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 40)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson(40, 40)[1] == pytest.approx(1.0, abs=1e-12)
    lo90, hi90 = wilson(54, 160, alpha=0.10)
    lo95, hi95 = wilson(54, 160)
    assert lo95 < lo90 < hi90 < hi95  # a lower confidence level gives a narrower interval
    assert all(isinstance(x, float) for x in wilson(54, 160))


def _paired(only_a: int, only_b: int, both: int = 0, neither: int = 0) -> tuple[list[bool], list[bool]]:
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return a, b


@pytest.mark.parametrize(
    ("only_a", "only_b", "both", "neither", "p"),
    [
        (10, 0, 0, 0, 2 * 0.5**10),  # 0.001953125
        (10, 0, 50, 20, 2 * 0.5**10),  # concordant items do not count
        (0, 10, 5, 5, 2 * 0.5**10),
        (5, 5, 0, 0, 1.0),
        (0, 0, 30, 10, 1.0),  # no discordant items
        (1, 0, 10, 0, 1.0),  # 2 * 0.5
        (6, 1, 0, 0, 2 * (1 + 7) / 2**7),  # 0.125
        (8, 2, 3, 3, 2 * (1 + 10 + 45) / 2**10),  # 0.109375
        (2, 8, 0, 0, 2 * (1 + 10 + 45) / 2**10),
    ],
)
def test_mcnemar_exact(only_a, only_b, both, neither, p):
    a, b = _paired(only_a, only_b, both, neither)
    got = mcnemar_exact(a, b)
    assert got["only_a_correct"] == only_a
    assert got["only_b_correct"] == only_b
    assert got["discordant"] == only_a + only_b
    assert got["p_value"] == pytest.approx(p, rel=1e-12)
    swapped = mcnemar_exact(b, a)
    assert (swapped["only_a_correct"], swapped["only_b_correct"]) == (only_b, only_a)
    assert swapped["p_value"] == pytest.approx(p, rel=1e-12)


def test_mcnemar_counts_items_not_positions():
    # Interleaved rather than blocked: the same counts, the same p.
    a = [True, False, True, True, False, True]
    b = [False, False, True, False, True, False]
    got = mcnemar_exact(a, b)
    assert (got["only_a_correct"], got["only_b_correct"], got["discordant"]) == (3, 1, 4)
    assert got["p_value"] == pytest.approx(2 * (1 + 4) / 16)


@pytest.mark.parametrize(("n_a", "n_b"), [(3, 4), (10, 9), (0, 1), (1, 3)])
def test_mcnemar_mismatched_lengths(n_a, n_b):
    with pytest.raises(ValueError):
        mcnemar_exact([True] * n_a, [False] * n_b)


def _accuracies(n: int, acc_a: float, acc_b: float, seed: int) -> tuple[list[bool], list[bool]]:
    rng = np.random.default_rng(seed)
    return list(rng.random(n) < acc_a), list(rng.random(n) < acc_b)


@pytest.mark.parametrize(("n", "acc_a", "acc_b"), [(160, 0.85, 0.35), (160, 0.4, 0.45), (60, 0.9, 0.4)])
def test_paired_bootstrap_diff(n, acc_a, acc_b):
    a, b = _accuracies(n, acc_a, acc_b, seed=1)
    got = paired_bootstrap_diff(a, b, seed=0, n_resamples=2000)
    diff = np.asarray(a, float) - np.asarray(b, float)
    assert got["diff"] == pytest.approx(diff.mean(), abs=1e-12)
    assert got["ci_low"] <= got["diff"] <= got["ci_high"]
    # Close to the normal approximation diff +- 1.96 * sd / sqrt(n).
    half = 1.96 * diff.std() / math.sqrt(n)
    assert got["ci_low"] == pytest.approx(diff.mean() - half, abs=0.03)
    assert got["ci_high"] == pytest.approx(diff.mean() + half, abs=0.03)
    assert got == paired_bootstrap_diff(a, b, seed=0, n_resamples=2000)  # deterministic for a seed


def test_paired_bootstrap_diff_sign():
    a, b = _accuracies(100, 0.9, 0.3, seed=2)
    ab = paired_bootstrap_diff(a, b, seed=0, n_resamples=1000)
    ba = paired_bootstrap_diff(b, a, seed=0, n_resamples=1000)
    assert ab["diff"] == pytest.approx(-ba["diff"])
    assert ab["ci_low"] > 0 > ba["ci_high"]


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [
        ([True] * 20, [True] * 20, 0.0),
        ([True, False, True], [True, False, True], 0.0),
        ([True] * 10, [False] * 10, 1.0),
        ([False] * 10, [True] * 10, -1.0),
    ],
)
def test_paired_bootstrap_all_equal_diffs_zero_width(a, b, diff):
    got = paired_bootstrap_diff(a, b, seed=0)
    assert got == {"diff": diff, "ci_low": diff, "ci_high": diff}


@pytest.mark.parametrize(
    ("n_a", "n_b"),
    [
        (2, 3),
        (1, 3),  # a length-1 list would broadcast without the check
        (3, 1),
    ],
)
def test_paired_bootstrap_mismatched_lengths(n_a, n_b):
    with pytest.raises(ValueError):
        paired_bootstrap_diff([True] * n_a, [True, False, True][:n_b], seed=0, n_resamples=100)


@pytest.mark.parametrize("n", [1, 7, 40, 160, 400, 1600, 8000])
def test_wilson_holds_the_point_estimate_at_the_edges(n):
    """statsmodels gives 0.9999999999999999 as the upper bound of 400/400: the interval must still hold 1.0."""
    assert wilson(n, n)[1] == 1.0 and wilson(0, n)[0] == 0.0
    for k in range(0, n + 1, max(1, n // 50)):
        lo, hi = wilson(k, n)
        assert lo <= k / n <= hi
