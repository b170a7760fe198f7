"""Bad input across the CLI: each gets a clear error naming what and where, before expensive work,
and leaves no output behind that DVC could cache. Model garbage is counted as invalid, not a crash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from omegaconf import OmegaConf

from fincorp.cli import main
from fincorp.generate import generate
from fincorp.jsonl import write_jsonl

REPO = Path(__file__).resolve().parents[1]


def set_key(path: Path, dotted: str, value) -> None:
    cfg = OmegaConf.load(path)
    OmegaConf.update(cfg, dotted, value, force_add=True)
    OmegaConf.save(cfg, path)


def del_key(path: Path, dotted: str) -> None:
    d = OmegaConf.to_container(OmegaConf.load(path))
    *parents, leaf = dotted.split(".")
    node = d
    for part in parents:
        node = node[part]
    del node[leaf]
    OmegaConf.save(OmegaConf.create(d), path)


def truncate_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"
    path.write_text("".join(lines))


def edit_row(path: Path, **changes) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2].update(changes)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def stale_meta(ws: Path) -> None:
    (ws / "models/base").mkdir(parents=True)
    (ws / "models/base/meta.json").write_text(json.dumps({"source": "hub", "name": "acme/other", "path": "/x"}))


CASES = {
    # name: (command, setup(ws), message fragment, outputs that must not exist)
    "unknown param": (["generate"], lambda ws: set_key(ws / "params.yaml", "generate.rows", 5),
                      "unknown key generate.rows", ["data/applications.jsonl"]),
    "missing param": (["generate"], lambda ws: del_key(ws / "params.yaml", "generate.seed"),
                      "missing key generate.seed", ["data/applications.jsonl"]),
    "mistyped param": (["generate"], lambda ws: set_key(ws / "params.yaml", "generate.n", "800"),
                       "generate.n: expected an integer, got '800'", ["data/applications.jsonl"]),
    "unbalanced size": (["generate"], lambda ws: set_key(ws / "params.yaml", "generate.n", 802),
                        "generate.n: must be a positive multiple of 4", ["data/applications.jsonl"]),
    "impossible GRPO batch": (["grpo"], lambda ws: set_key(ws / "params.yaml", "grpo.num_generations", 3),
                              "must be divisible by num_generations = 3", ["models/grpo"]),
    "missing data file": (["split"], lambda ws: (ws / "data/applications.jsonl").unlink(),
                          "data/applications.jsonl: file not found", ["data/train.jsonl"]),
    "truncated line": (["split"], lambda ws: truncate_line(ws / "data/applications.jsonl"),
                       "data/applications.jsonl:3: not valid JSON", ["data/train.jsonl"]),
    "wrong field type": (["split"], lambda ws: edit_row(ws / "data/applications.jsonl", nps="80"),
                         "data/applications.jsonl:3: field 'nps' must be an integer", ["data/train.jsonl"]),
    "unknown label": (["split"], lambda ws: edit_row(ws / "data/applications.jsonl", label="APPROVE"),
                      "data/applications.jsonl:3: unknown label 'APPROVE'", ["data/train.jsonl"]),
    "corrupt train file for sft": (["sft"], lambda ws: truncate_line(ws / "data/train.jsonl"),
                                   "data/train.jsonl:3: not valid JSON", ["models/sft"]),
    "corrupt validation file for grpo": (["grpo"], lambda ws: truncate_line(ws / "data/val.jsonl"),
                                         "data/val.jsonl:3: not valid JSON", ["models/grpo"]),
    "no base model for sft": (["sft"], lambda ws: None, "build the base model first", ["models/sft"]),
    "no base model for grpo": (["grpo"], lambda ws: None, "build the base model first", ["models/grpo"]),
    "no adapter for eval": (["eval", "sft", "--model", "models/sft"], lambda ws: None, "no LoRA adapter here",
                            ["eval/sft.json", "predictions/sft.jsonl"]),
    "base built for another model": (["eval", "baseline"], stale_meta, "was built for source='hub'",
                                     ["eval/baseline.json"]),
    "no metrics for report": (["report"], lambda ws: None, "metrics", ["reports/results.md", "reports/metrics.json"]),
}


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workdir with the committed params and a small generated data set (no models)."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    rows = generate(40, 1, 0.25)
    write_jsonl(tmp_path / "data/applications.jsonl", rows)
    write_jsonl(tmp_path / "data/train.jsonl", rows[:32])
    write_jsonl(tmp_path / "data/val.jsonl", rows[:8])
    write_jsonl(tmp_path / "data/test.jsonl", rows[32:])
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_error_and_leaves_no_output(ws, case):
    command, setup, message, outputs = CASES[case]
    setup(ws)
    before = {out: (ws / out).read_bytes() if (ws / out).is_file() else None for out in outputs}
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.output.startswith("Error: "), result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    for out in outputs:  # not created, and an existing file not overwritten
        after = (ws / out).read_bytes() if (ws / out).is_file() else None
        assert after == before[out] and ((ws / out).exists() == (before[out] is not None)), f"{out} changed"


@pytest.mark.slow
@pytest.mark.parametrize("garbage", ["", "I cannot decide.", '{"decision": "maybe"}', "{{{{", "<think>"])
def test_a_model_that_emits_garbage_is_scored_invalid(tiny_workspace, tmp_path, monkeypatch, garbage):
    from fincorp import eval as eval_stage

    monkeypatch.setattr(eval_stage, "generate_completions", lambda model, tok, prompts, *a, **k: [garbage] * len(prompts))
    eval_stage.run(str(tiny_workspace / "params.yaml"), "garbage", str(tiny_workspace / "models/base"), None,
                   str(tiny_workspace / "data/test.jsonl"), str(tmp_path / "m.json"),
                   str(tmp_path / "p.jsonl"), str(tmp_path / "c.json"), str(tmp_path / "t.json"))
    metrics = json.loads((tmp_path / "m.json").read_text())  # the full record
    assert metrics["invalid_rate"] == 1.0 and metrics["accuracy"]["value"] == 0.0
    assert metrics["prediction_distribution"]["INVALID"] == 1.0
