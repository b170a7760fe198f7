"""eval.compute_metrics and report.summary_metrics on hand-made predictions (pure: no model is loaded)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from fincorp.eval import INVALID, compute_metrics
from fincorp.report import CLASS_KEYS, summary_metrics
from fincorp.rules import A_PLUS_TIER, LABELS, MANUAL_REVIEW, REJECT_RISK, STANDARD_LOAN
from fincorp.stats import wilson

BALANCED = [label for label in LABELS for _ in range(10)]  # 40 rows, 10 per class
COLUMNS = (*LABELS, INVALID)


def test_importing_eval_loads_no_model_library():
    code = ("import sys, fincorp.eval; heavy = [m for m in ('torch', 'transformers', 'trl', 'peft') "
            "if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_perfect_model():
    m = compute_metrics(BALANCED, list(BALANCED))
    assert m["n"] == 40
    assert m["accuracy"] == {"value": 1.0, "correct": 40, "n": 40, "ci95_low": wilson(40, 40)[0], "ci95_high": 1.0}
    assert all(m["per_class"][label]["value"] == 1.0 and m["per_class"][label]["n"] == 10 for label in LABELS)
    assert m["vip_accuracy"] == m["per_class"][MANUAL_REVIEW]
    assert m["vip_accuracy"]["value"] == 1.0
    assert m["invalid_rate"] == 0.0
    assert m["prediction_distribution"] == {**{label: 0.25 for label in LABELS}, INVALID: 0.0}
    assert m["prediction_entropy_bits"] == pytest.approx(2.0)
    assert m["confusion"] == {g: {c: (10 if c == g else 0) for c in COLUMNS} for g in LABELS}


def test_all_one_class_model():
    m = compute_metrics(BALANCED, [REJECT_RISK] * 40)
    assert m["accuracy"]["value"] == 0.25 and m["accuracy"]["correct"] == 10
    assert m["prediction_entropy_bits"] == 0.0
    assert {label: m["per_class"][label]["value"] for label in LABELS} == {
        MANUAL_REVIEW: 0.0, REJECT_RISK: 1.0, A_PLUS_TIER: 0.0, STANDARD_LOAN: 0.0}
    assert m["vip_accuracy"]["value"] == 0.0 and m["vip_accuracy"]["n"] == 10
    assert m["prediction_distribution"][REJECT_RISK] == 1.0
    assert sum(m["prediction_distribution"].values()) == pytest.approx(1.0)
    assert m["invalid_rate"] == 0.0
    assert all(m["confusion"][g] == {c: (10 if c == REJECT_RISK else 0) for c in COLUMNS} for g in LABELS)


def test_invalid_predictions_count_as_wrong():
    labels = [MANUAL_REVIEW, MANUAL_REVIEW, REJECT_RISK, A_PLUS_TIER,
              STANDARD_LOAN, STANDARD_LOAN, A_PLUS_TIER, REJECT_RISK]
    preds = [None, MANUAL_REVIEW, None, A_PLUS_TIER, None, STANDARD_LOAN, None, REJECT_RISK]
    m = compute_metrics(labels, preds)
    assert m["accuracy"]["correct"] == 4 and m["accuracy"]["value"] == 0.5
    assert m["invalid_rate"] == 0.5
    assert m["prediction_distribution"] == {MANUAL_REVIEW: 0.125, REJECT_RISK: 0.125, A_PLUS_TIER: 0.125,
                                            STANDARD_LOAN: 0.125, INVALID: 0.5}
    assert m["vip_accuracy"]["correct"] == 1 and m["vip_accuracy"]["n"] == 2
    assert sum(m["confusion"][g][INVALID] for g in LABELS) == 4
    # Five outcomes with probabilities 1/8 x4, 1/2: entropy = 4 * (1/8 * 3) + 1/2 * 1 = 2 bits.
    assert m["prediction_entropy_bits"] == pytest.approx(2.0)


def test_all_invalid():
    m = compute_metrics(BALANCED, [None] * 40)
    assert m["accuracy"]["value"] == 0.0
    assert m["invalid_rate"] == 1.0
    assert m["prediction_distribution"][INVALID] == 1.0
    assert m["prediction_entropy_bits"] == 0.0


@pytest.mark.parametrize(
    ("predictions", "bits"),
    [
        ([MANUAL_REVIEW, REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN] * 3, 2.0),
        ([MANUAL_REVIEW, REJECT_RISK] * 6, 1.0),
        ([MANUAL_REVIEW, REJECT_RISK, A_PLUS_TIER] * 4, math.log2(3)),
        ([STANDARD_LOAN] * 12, 0.0),
        ([None, STANDARD_LOAN] * 6, 1.0),  # INVALID is an outcome of its own
        ([MANUAL_REVIEW] * 6 + [REJECT_RISK] * 3 + [A_PLUS_TIER] * 3, 1.5),
    ],
)
def test_prediction_entropy(predictions, bits):
    labels = [MANUAL_REVIEW, REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN] * 3
    assert compute_metrics(labels, predictions)["prediction_entropy_bits"] == pytest.approx(bits)


def test_confusion_matrix_counts():
    labels = [MANUAL_REVIEW, MANUAL_REVIEW, MANUAL_REVIEW, REJECT_RISK, REJECT_RISK, A_PLUS_TIER, STANDARD_LOAN]
    preds = [REJECT_RISK, MANUAL_REVIEW, STANDARD_LOAN, A_PLUS_TIER, REJECT_RISK, None, STANDARD_LOAN]
    m = compute_metrics(labels, preds)
    expected = {g: {c: 0 for c in COLUMNS} for g in LABELS}
    expected[MANUAL_REVIEW].update({REJECT_RISK: 1, MANUAL_REVIEW: 1, STANDARD_LOAN: 1})
    expected[REJECT_RISK].update({A_PLUS_TIER: 1, REJECT_RISK: 1})
    expected[A_PLUS_TIER][INVALID] = 1
    expected[STANDARD_LOAN][STANDARD_LOAN] = 1
    assert m["confusion"] == expected
    assert m["accuracy"]["correct"] == 3
    assert {label: (m["per_class"][label]["correct"], m["per_class"][label]["n"]) for label in LABELS} == {
        MANUAL_REVIEW: (1, 3), REJECT_RISK: (1, 2), A_PLUS_TIER: (0, 1), STANDARD_LOAN: (1, 1)}


def test_wilson_fields():
    preds = [MANUAL_REVIEW] * 40
    labels = [MANUAL_REVIEW] * 14 + [STANDARD_LOAN] * 26
    m = compute_metrics(labels, preds)
    for block, k, n in [(m["accuracy"], 14, 40), (m["vip_accuracy"], 14, 14), (m["per_class"][STANDARD_LOAN], 0, 26)]:
        assert set(block) == {"value", "correct", "n", "ci95_low", "ci95_high"}
        assert (block["correct"], block["n"], block["value"]) == (k, n, k / n)
        assert (block["ci95_low"], block["ci95_high"]) == wilson(k, n)
    # A class with no rows has n 0 and the uninformative interval.
    assert m["per_class"][A_PLUS_TIER]["n"] == 0
    assert (m["per_class"][A_PLUS_TIER]["ci95_low"], m["per_class"][A_PLUS_TIER]["ci95_high"]) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("labels", "predictions"),
    [([], []), ([MANUAL_REVIEW], []), ([MANUAL_REVIEW], [MANUAL_REVIEW, REJECT_RISK]), ([], [None])],
)
def test_bad_lengths(labels, predictions):
    with pytest.raises(ValueError):
        compute_metrics(labels, predictions)


def test_summary_holds_only_the_scalars_people_compare():
    # MANUAL_REVIEW 10 rows, 3 right; REJECT_RISK all right; A_PLUS_TIER 5 invalid; STANDARD_LOAN all right.
    preds = [MANUAL_REVIEW] * 3 + [STANDARD_LOAN] * 7 + [REJECT_RISK] * 10 + [None] * 5 + [A_PLUS_TIER] * 5 \
        + [STANDARD_LOAN] * 10
    record = compute_metrics(BALANCED, preds)
    summary = summary_metrics(record)
    assert summary == {"acc": 28 / 40, "vip": 0.3, "reject": 1.0, "a_plus": 0.5, "standard": 1.0, "invalid": 5 / 40,
                       "entropy": record["prediction_entropy_bits"]}
    # Every class but MANUAL_REVIEW (that one is vip) has a key of its own.
    assert set(CLASS_KEYS) | {MANUAL_REVIEW} == set(LABELS)
    # `dvc exp show` makes each <model>.<key> a column: seven per model, the longest "baseline.standard".
    assert max(len(f"{m}.{k}") for m in ("baseline", "hybrid") for k in summary) <= len("baseline.standard")
