"""split.split (stratified, seeded), split.read_applications (errors name file:line), split.run."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from fincorp import split as split_stage
from fincorp.generate import generate
from fincorp.jsonl import DataError, read_jsonl, write_jsonl
from fincorp.rules import LABELS
from fincorp.split import read_applications, split

SPLIT_SEED = 20251202  # split.seed in the committed params.yaml


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate(800, 20251201, 0.25)


@pytest.mark.parametrize(
    ("n", "test_fraction", "n_train", "n_test"),
    [(800, 0.2, 640, 160), (800, 0.5, 400, 400), (400, 0.25, 300, 100), (40, 0.2, 32, 8)],
)
def test_sizes_and_stratification(n, test_fraction, n_train, n_test):
    rows = generate(n, 3, 0.25)
    train, test = split(rows, test_fraction, SPLIT_SEED)
    assert (len(train), len(test)) == (n_train, n_test)
    assert Counter(r["label"] for r in test) == {label: n_test // 4 for label in LABELS}
    assert Counter(r["label"] for r in train) == {label: n_train // 4 for label in LABELS}


def test_disjoint_and_complete(rows):
    train, test = split(rows, 0.2, SPLIT_SEED)
    train_ids, test_ids = [r["id"] for r in train], [r["id"] for r in test]
    assert len(set(train_ids)) == len(train_ids) and len(set(test_ids)) == len(test_ids)
    assert not set(train_ids) & set(test_ids)
    assert set(train_ids) | set(test_ids) == {r["id"] for r in rows}
    by_id = {r["id"]: r for r in rows}
    assert all(r == by_id[r["id"]] for r in train + test)  # rows are passed through unchanged


def test_deterministic(rows, tmp_path):
    a = split(rows, 0.2, SPLIT_SEED)
    b = split(list(rows), 0.2, SPLIT_SEED)
    assert a == b
    write_jsonl(tmp_path / "a.jsonl", a[1])
    write_jsonl(tmp_path / "b.jsonl", b[1])
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_different_seed_different_test_set(rows):
    _, a = split(rows, 0.2, SPLIT_SEED)
    _, b = split(rows, 0.2, SPLIT_SEED + 1)
    assert {r["id"] for r in a} != {r["id"] for r in b}


def test_split_does_not_modify_its_input(rows):
    before = json.dumps(rows, sort_keys=True)
    split(rows, 0.2, SPLIT_SEED)
    assert json.dumps(rows, sort_keys=True) == before


# ---- read_applications: a bad row is an error naming file and line ----------------------------

def _lines(n: int = 8) -> list[str]:
    return [json.dumps(r, sort_keys=True) for r in generate(n, 5, 0.25)]


def _with(row_line: str, **changes) -> str:
    row = json.loads(row_line)
    for k, v in changes.items():
        if v is _DROP:
            del row[k]
        else:
            row[k] = v
    return json.dumps(row)


_DROP = object()

# Each case corrupts line 3 of an 8-line file.
BAD_LINE = {
    "truncated JSON": (lambda lines: lines[2][: len(lines[2]) // 2], "not valid JSON"),
    "non-object (list)": (lambda lines: "[1, 2, 3]", "expected a JSON object"),
    "non-object (string)": (lambda lines: '"APP-0003"', "expected a JSON object"),
    "non-object (null)": (lambda lines: "null", "expected a JSON object"),
    "empty line": (lambda lines: "", "empty line"),
    "whitespace line": (lambda lines: "   ", "empty line"),
    "missing field nps": (lambda lines: _with(lines[2], nps=_DROP), "missing field 'nps'"),
    "missing field label": (lambda lines: _with(lines[2], label=_DROP), "missing field 'label'"),
    "missing field founder": (lambda lines: _with(lines[2], founder_background=_DROP),
                              "missing field 'founder_background'"),
    "nps as string": (lambda lines: _with(lines[2], nps="80"), "'nps' must be an integer"),
    "nps as float": (lambda lines: _with(lines[2], nps=80.0), "'nps' must be an integer"),
    "nps as bool": (lambda lines: _with(lines[2], nps=True), "'nps' must be an integer"),
    "revenue as float": (lambda lines: _with(lines[2], annual_revenue_usd=1e7), "'annual_revenue_usd' must be"),
    "burn pct as string": (lambda lines: _with(lines[2], burn_rate_pct="80"), "'burn_rate_pct' must be a number"),
    "founder as null": (lambda lines: _with(lines[2], founder_background=None), "'founder_background' must be"),
    "unknown label": (lambda lines: _with(lines[2], label="VIP"), "unknown label 'VIP'"),
    "lowercase label": (lambda lines: _with(lines[2], label="reject_risk"), "unknown label"),
    "duplicate id": (lambda lines: _with(lines[2], id=json.loads(lines[0])["id"]), "duplicate id"),
}


@pytest.mark.parametrize("case", list(BAD_LINE))
def test_read_applications_errors_name_file_and_line(tmp_path, case):
    corrupt, message = BAD_LINE[case]
    lines = _lines()
    lines[2] = corrupt(lines)
    path = tmp_path / "applications.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_applications(str(path))
    assert f"{path}:3:" in str(e.value)
    assert message in str(e.value)


def test_read_applications_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="file not found") as e:
        read_applications(str(path))
    assert str(path) in str(e.value)


def test_read_applications_reads_a_valid_file(tmp_path, rows):
    path = tmp_path / "applications.jsonl"
    write_jsonl(path, rows)
    assert read_applications(str(path)) == rows


def test_blank_line_at_the_end_is_an_error(tmp_path):
    lines = _lines()
    path = tmp_path / "applications.jsonl"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:9: empty line")):
        read_jsonl(path)


# ---- run: params.yaml -> files ------------------------------------------------------------------

def _run(params: Path, data: Path, out: Path) -> tuple[Path, Path]:
    train, test = out / "train.jsonl", out / "test.jsonl"
    split_stage.run(str(params), str(data), str(train), str(test), str(out / "val.jsonl"))
    return train, test


def test_run_end_to_end(tmp_path, write_params, rows):
    params = write_params()
    data = tmp_path / "data" / "applications.jsonl"
    write_jsonl(data, rows)
    train, test = _run(params, data, tmp_path / "out1")
    train_rows, test_rows = read_applications(str(train)), read_applications(str(test))
    assert (len(train_rows), len(test_rows)) == (640, 160)
    assert Counter(r["label"] for r in test_rows) == {label: 40 for label in LABELS}
    assert sorted(r["id"] for r in train_rows + test_rows) == sorted(r["id"] for r in rows)
    # The same inputs give byte-identical outputs, equal to the pure function's.
    train2, test2 = _run(params, data, tmp_path / "out2")
    assert train.read_bytes() == train2.read_bytes() and test.read_bytes() == test2.read_bytes()
    assert (train_rows, test_rows) == split(rows, 0.2, SPLIT_SEED)
    # Keys sorted on write, one object a line, no temp file left behind.
    first = test.read_text(encoding="utf-8").splitlines()[0]
    assert list(json.loads(first)) == sorted(json.loads(first))
    assert sorted(p.name for p in (tmp_path / "out1").iterdir()) == ["test.jsonl", "train.jsonl", "val.jsonl"]


def test_validation_slice_is_stratified_seeded_and_never_test(tmp_path, write_params, rows):
    """128 of the 640 train rows, 32 per class, seed split.seed + 1; in train unless holdout_val."""
    params = write_params()
    data = tmp_path / "applications.jsonl"
    write_jsonl(data, rows)
    out = tmp_path / "out"
    train, test = _run(params, data, out)
    val_rows = read_applications(str(out / "val.jsonl"))
    train_ids = {r["id"] for r in read_applications(str(train))}
    assert len(val_rows) == 128 and Counter(r["label"] for r in val_rows) == {label: 32 for label in LABELS}
    assert {r["id"] for r in val_rows} <= train_ids  # the reference run trains on every train row
    assert not {r["id"] for r in val_rows} & {r["id"] for r in read_applications(str(test))}
    assert val_rows == split_stage.validation_slice(split(rows, 0.2, SPLIT_SEED)[0], 128, SPLIT_SEED + 1)[1]
    # holdout_val: train is the other 512 rows; test and the slice are unchanged.
    held = write_params({"split.holdout_val": True})
    train_h, test_h = _run(held, data, tmp_path / "held")
    held_ids = {r["id"] for r in read_applications(str(train_h))}
    assert len(held_ids) == 512 and held_ids == train_ids - {r["id"] for r in val_rows}
    assert test_h.read_bytes() == test.read_bytes()
    assert (tmp_path / "held/val.jsonl").read_bytes() == (out / "val.jsonl").read_bytes()


def test_run_reads_its_params(tmp_path, write_params, rows):
    params = write_params({"split.test_fraction": 0.25, "split.seed": 7})
    data = tmp_path / "applications.jsonl"
    write_jsonl(data, rows)
    train, test = _run(params, data, tmp_path / "out")
    test_rows = read_applications(str(test))
    assert len(test_rows) == 200
    assert test_rows == split(rows, 0.25, 7)[1]


def test_run_bad_data_names_file_and_line(tmp_path, write_params):
    params = write_params()
    data = tmp_path / "applications.jsonl"
    lines = _lines()
    lines[4] = _with(lines[4], label="MAYBE")
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{data}:5: unknown label 'MAYBE'")):
        _run(params, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written on error
