"""Intervals and paired tests, shared by eval and report (thin wrappers over statsmodels/scipy)."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint


def wilson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    # The interval always holds k/n; rounding can put the bound a hair inside it (400/400 -> 0.9999999999999999).
    return (min(float(lo), k / n), max(float(hi), k / n))


def mcnemar_exact(a_correct: list[bool], b_correct: list[bool]) -> dict:
    """McNemar's exact test on paired per-item correctness: only the discordant items count."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError("paired predictions must cover the same items")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    table = [[int(np.sum(a & b)), only_a], [only_b, int(np.sum(~a & ~b))]]
    p = 1.0 if only_a + only_b == 0 else float(sm_mcnemar(table, exact=True).pvalue)
    return {"only_a_correct": only_a, "only_b_correct": only_b, "discordant": only_a + only_b, "p_value": p}


def paired_bootstrap_diff(a_correct: list[bool], b_correct: list[bool], seed: int,
                          n_resamples: int = 10_000, alpha: float = 0.05) -> dict:
    """Accuracy difference (a - b) with a paired bootstrap percentile interval (scipy.stats.bootstrap)."""
    a, b = np.asarray(a_correct, float), np.asarray(b_correct, float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired predictions must cover the same, non-empty set of items")
    diff = a - b
    point = float(diff.mean())
    if np.all(diff == diff[0]):  # no variation: the interval is the point (bootstrap would be degenerate)
        return {"diff": point, "ci_low": point, "ci_high": point}
    res = sps.bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=1 - alpha,
                        method="percentile", rng=np.random.default_rng(seed))
    return {"diff": point, "ci_low": float(res.confidence_interval.low),
            "ci_high": float(res.confidence_interval.high)}
