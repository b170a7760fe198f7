"""Stage `split`: stratified, seeded train/test split and a validation slice of the train rows
-> data/train.jsonl, data/val.jsonl, data/test.jsonl.

    fincorp split               (or: dvc repro split)

scikit-learn's train_test_split with stratify=label: 800 rows at test_fraction 0.2 give 640/160,
exactly 40 per class in test. Disjoint, together the whole set, byte-identical for the same inputs.

The validation slice (`split.val_size` rows, stratified, drawn from the train rows with seed
split.seed + 1) is what recipes are tuned on (`fincorp study tune`) and what the training stages score
for their learning curves; the test set is never used for either. `split.holdout_val: true` (the tune
study) removes the slice from data/train.jsonl, so validation accuracy is held out; with false (the
reference run) the final recipes train on every train row and the curves are in-sample.
"""

from __future__ import annotations

from typing import Any

from sklearn.model_selection import train_test_split

from fincorp.jsonl import DataError, read_jsonl, write_jsonl
from fincorp.params import load_params
from fincorp.rules import LABELS

REQUIRED_KEYS = ("id", "company", "sector", "founder_background", "annual_revenue_usd", "annual_burn_usd",
                 "burn_rate_pct", "nps", "label")


def validate_rows(rows: list[dict[str, Any]], path: str) -> None:
    """Every row has the fields and types later stages rely on; errors name the file and line."""
    seen: set[str] = set()
    for lineno, row in enumerate(rows, start=1):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: missing field {missing[0]!r}")
        for k in ("annual_revenue_usd", "annual_burn_usd", "nps"):
            if isinstance(row[k], bool) or not isinstance(row[k], int):
                raise DataError(f"{path}:{lineno}: field {k!r} must be an integer, got {row[k]!r}")
        if isinstance(row["burn_rate_pct"], bool) or not isinstance(row["burn_rate_pct"], (int, float)):
            raise DataError(f"{path}:{lineno}: field 'burn_rate_pct' must be a number, got {row['burn_rate_pct']!r}")
        for k in ("id", "company", "sector", "founder_background"):
            if not isinstance(row[k], str):
                raise DataError(f"{path}:{lineno}: field {k!r} must be a string, got {row[k]!r}")
        if row["label"] not in LABELS:
            raise DataError(f"{path}:{lineno}: unknown label {row['label']!r}; allowed: {', '.join(LABELS)}")
        if row["id"] in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {row['id']!r}")
        seen.add(row["id"])


def read_applications(path: str) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    validate_rows(rows, str(path))
    return rows


def split(rows: list[dict[str, Any]], test_fraction: float, seed: int) -> tuple[list, list]:
    """Stratified by label; pure given the seed."""
    train, test = train_test_split(
        rows, test_size=test_fraction, random_state=seed, shuffle=True, stratify=[r["label"] for r in rows]
    )
    return list(train), list(test)


def validation_slice(train: list[dict[str, Any]], val_size: int, seed: int) -> tuple[list, list]:
    """(train minus the slice, the slice): `val_size` train rows stratified by label; pure given the seed."""
    rest, val = train_test_split(train, test_size=val_size, random_state=seed, shuffle=True,
                                 stratify=[r["label"] for r in train])
    return list(rest), list(val)


def run(params_path: str, data: str, train_out: str, test_out: str, val_out: str) -> None:
    p = load_params(params_path).split
    train, test = split(read_applications(data), p.test_fraction, p.seed)
    rest, val = validation_slice(train, p.val_size, p.seed + 1)
    write_jsonl(train_out, rest if p.holdout_val else train)
    write_jsonl(val_out, val)
    write_jsonl(test_out, test)
