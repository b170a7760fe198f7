"""fincorp.reproduce: the verdict on a reproduced clone, on hand-made clones (no pipeline run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from fincorp import reproduce


def lock(base_md5: str = "b1", eval_md5: str = "e1", data_md5: str = "d1", code_md5: str = "c1",
         lr: float = 0.002) -> str:
    return yaml.safe_dump({"schema": "2.0", "stages": {
        "generate": {"cmd": "fincorp generate", "deps": [{"path": "src/fincorp/generate.py", "md5": "g1"}],
                     "outs": [{"path": "data/applications.jsonl", "md5": data_md5}]},
        "base": {"cmd": "fincorp base", "deps": [{"path": "src/fincorp/base.py", "md5": code_md5}],
                 "params": {"params.yaml": {"base": {"lr": lr}}},
                 "outs": [{"path": "models/base", "md5": base_md5}]},
        "eval": {"cmd": "fincorp eval", "deps": [{"path": "models/base", "md5": base_md5},
                                                 {"path": "data/applications.jsonl", "md5": data_md5}],
                 "outs": [{"path": "eval/baseline.json", "md5": eval_md5}]},
    }})


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    root = tmp_path / "clone"
    root.mkdir()
    files = {"dvc.lock": lock(), "eval/baseline.json": '{"accuracy": 0.3}\n', "README.md": "x\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ref"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    return root


def reproduce_as(root: Path, lock_text: str, eval_text: str = '{"accuracy": 0.3}\n') -> None:
    (root / "dvc.lock").write_text(lock_text)
    (root / "eval/baseline.json").write_text(eval_text)


def test_an_identical_reproduction_is_the_reference(clone):
    assert reproduce.compare(clone)["verdict"] == "reference"


def test_other_weights_from_the_same_code_and_data_are_another_cpu(clone):
    reproduce_as(clone, lock(base_md5="b2", eval_md5="e2"), '{"accuracy": 0.31}\n')
    v = reproduce.compare(clone)
    assert v["verdict"] == "other-cpu" and v["stages"] == ["base", "eval"]
    assert reproduce.main(["check", str(clone)]) == 0


@pytest.mark.parametrize("lock_text, why", [
    (lock(code_md5="c2", base_md5="b2", eval_md5="e2"), "stage base: its command, params or code differ"),
    (lock(lr=0.003, base_md5="b2", eval_md5="e2"), "stage base: its command, params or code differ"),
    (lock(eval_md5="e2"), "stage base's weights equal the reference's"),  # nondeterminism after an equal base
    (lock(data_md5="d2", base_md5="b2", eval_md5="e2"), "stage generate is not computed from the base"),
])
def test_anything_else_differs(clone, lock_text, why):
    reproduce_as(clone, lock_text, '{"accuracy": 0.31}\n')
    v = reproduce.compare(clone)
    assert v["verdict"] == "differs" and why in v["message"]
    assert reproduce.main(["check", str(clone)]) == 1


def test_a_changed_file_no_stage_writes_or_a_new_file_differs(clone):
    reproduce_as(clone, lock(base_md5="b2", eval_md5="e2"))
    (clone / "README.md").write_text("edited\n")
    assert "README.md changed" in reproduce.compare(clone)["message"]
    (clone / "README.md").write_text("x\n")
    (clone / "stray.txt").write_text("?\n")
    v = reproduce.compare(clone)
    assert v["verdict"] == "differs" and "stray.txt" in v["message"]


def test_two_reproductions_on_one_machine_are_compared_byte_for_byte(clone, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(clone), str(other)], check=True)
    for root in (clone, other):
        reproduce_as(root, lock(base_md5="b2", eval_md5="e2"), '{"accuracy": 0.31}\n')
    assert reproduce.same(clone, other) == []
    (other / "eval/baseline.json").write_text('{"accuracy": 0.32}\n')
    assert reproduce.same(clone, other) == ["eval/baseline.json"]
    assert reproduce.main(["same", str(clone), str(other)]) == 1
