"""The thin CLI: commands exist, generate/split write data/, user errors are ClickExceptions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from pathlib import Path

import pytest
from ruamel.yaml import YAML
from click.testing import CliRunner
from omegaconf import OmegaConf

from fincorp.cli import main
from fincorp.generate import generate
from fincorp.jsonl import write_jsonl

# One word per stage: the CLI has exactly one command per dvc.yaml stage, plus `study` (which runs
# experiments of the whole pipeline, so it is not a stage) and `preflight` (the plan before any stage runs).
STAGES = list(YAML(typ="safe").load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"])
DRIVERS = ["study", "preflight"]  # commands that are not DVC stages


@pytest.fixture
def workdir(tmp_path, repo_root, monkeypatch):
    """A working directory under tmp_path holding a copy of the committed params.yaml.

    (monkeypatch.chdir rather than CliRunner.isolated_filesystem, which Click 8.5 deprecates.)
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    shutil.copy(repo_root / "params.yaml", tmp_path / "params.yaml")
    return CliRunner(), tmp_path


def test_help_lists_every_stage():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()]
    assert sorted(listed) == sorted(STAGES + DRIVERS)
    assert sorted(main.commands) == sorted(STAGES + DRIVERS)


@pytest.mark.parametrize("command", STAGES)
def test_stage_help_has_params_option_and_no_hyperparameter_flags(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--params" in result.output
    for flag in ("--lr", "--seed", "--epochs", "--num-generations", "--batch-size"):
        assert flag not in result.output


def test_generate_then_split(workdir):
    runner, d = workdir
    result = runner.invoke(main, ["generate"])
    assert result.exit_code == 0, result.output
    data = d / "data" / "applications.jsonl"
    lines = data.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 800
    # The CLI writes exactly what the pure function returns.
    write_jsonl(d / "expected.jsonl", generate(800, 20251201, 0.25))
    assert data.read_bytes() == (d / "expected.jsonl").read_bytes()

    result = runner.invoke(main, ["split"])
    assert result.exit_code == 0, result.output
    train = (d / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    test = (d / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    assert (len(train), len(test)) == (640, 160)
    assert {json.loads(x)["id"] for x in train} | {json.loads(x)["id"] for x in test} == {
        json.loads(x)["id"] for x in lines}


def test_paths_come_from_options(workdir):
    runner, d = workdir
    assert runner.invoke(main, ["generate", "--out", "elsewhere/apps.jsonl"]).exit_code == 0
    assert not (d / "data").exists()
    result = runner.invoke(main, ["split", "--data", "elsewhere/apps.jsonl", "--train", "t/train.jsonl",
                                  "--test", "t/test.jsonl"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (d / "t").iterdir()) == ["test.jsonl", "train.jsonl"]


def _assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not an uncaught error
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ") or "\nError: " in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_bad_params_is_a_user_error(workdir):
    runner, d = workdir
    params = OmegaConf.load("params.yaml")
    params.generate.rows = 10
    OmegaConf.save(params, "params.yaml")
    result = runner.invoke(main, ["generate"])
    _assert_user_error(result, "params.yaml", "unknown key generate.rows")
    assert not (d / "data").exists()


def test_missing_params_file_is_a_user_error(workdir):
    runner, _ = workdir
    _assert_user_error(runner.invoke(main, ["generate", "--params", "nope.yaml"]), "nope.yaml", "file not found")


def test_corrupt_data_names_file_and_line(workdir):
    runner, d = workdir
    rows = [json.dumps(r, sort_keys=True) for r in generate(40, 1, 0.25)]
    rows[6] = rows[6][:20]
    (d / "data").mkdir()
    (d / "data" / "applications.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = runner.invoke(main, ["split"])
    _assert_user_error(result, "data/applications.jsonl:7: not valid JSON")
    assert not (d / "data" / "train.jsonl").exists()


def test_missing_data_is_a_user_error(workdir):
    runner, _ = workdir
    _assert_user_error(runner.invoke(main, ["split"]), "data/applications.jsonl", "file not found")


def test_python_dash_m(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fincorp", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in STAGES:
        assert command in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "0.1.0" in result.output


def test_study_rejects_unknown_names_and_conflicting_modes(workdir):
    runner, _ = workdir
    result = runner.invoke(main, ["study", "nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output
    result = runner.invoke(main, ["study", "reward", "--queue", "--collect"])
    assert result.exit_code == 2 and "exclude each other" in result.output
    result = runner.invoke(main, ["study", "seeds", "--n", "1"])
    assert result.exit_code == 1 and "--n must be at least 2" in result.output
    result = runner.invoke(main, ["study", "reward", "--collect"])  # no dvc.yaml in this folder
    assert result.exit_code == 1 and "dvc.yaml not found" in result.output
