"""Shared fixtures: the repo root, and modified copies of params.yaml written under tmp_path.

Tests never write inside the repo: every file they make lives under tmp_path (or a CliRunner
isolated filesystem), and environment changes go through monkeypatch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def committed_params() -> dict[str, Any]:
    """The committed params.yaml as a plain dict, read with OmegaConf (2e-5 stays a float)."""
    return OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "params.yaml"), resolve=True)


@pytest.fixture
def write_params(tmp_path: Path, committed_params: dict[str, Any]) -> Callable[..., Path]:
    """write_params(changes={"sft.lr": "abc"}, delete=["sft.lora.r"], name="params.yaml") -> path.

    Starts from the committed params.yaml, sets or adds each dotted key in `changes`, removes each
    dotted key in `delete`, and saves the result with OmegaConf under tmp_path.
    """

    def write(changes: Mapping[str, Any] | None = None, delete: Iterable[str] = (),
              name: str = "params.yaml") -> Path:
        d = copy.deepcopy(committed_params)
        for key, value in (changes or {}).items():
            *parents, leaf = key.split(".")
            node = d
            for part in parents:
                node = node[part]
            node[leaf] = value
        for key in delete:
            *parents, leaf = key.split(".")
            node = d
            for part in parents:
                node = node[part]
            del node[leaf]
        path = tmp_path / name
        OmegaConf.save(OmegaConf.create(d), path)
        return path

    return write


@pytest.fixture
def dvc_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """For tests that import dvc: keep its site cache and analytics out of the user's state."""
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


# ---- the slow tier: a tiny workspace (data + base model) built once per session ----------------

TINY = {
    "generate.n": 80,
    "split.val_size": 16,
    "base.vocab_size": 400,
    "base.hidden_size": 32,
    "base.intermediate_size": 64,
    "base.num_hidden_layers": 2,
    "base.num_attention_heads": 2,
    "base.num_key_value_heads": 1,
    "base.head_dim": 16,
    "base.prior.n": 600,  # enough for the tiny base to answer in the JSON format (GRPO needs valid samples)
    "base.num_train_epochs": 5.0,
    "base.per_device_train_batch_size": 16,
    "sft.num_train_epochs": 1.0,
    "sft.logging_steps": 1,
    "sft.save_steps": 2,
    "sft.val_steps": 2,
    "grpo.num_train_epochs": 1.0,
    "grpo.per_device_train_batch_size": 8,
    "grpo.gradient_accumulation_steps": 2,
    "grpo.num_generations": 4,
    "grpo.temperature": 1.0,  # the tiny base samples mostly invalid output at the cpu profile's 1.5
    "grpo.logging_steps": 1,
    "grpo.save_steps": 2,
    "grpo.val_steps": 2,
    "eval.batch_size": 8,
}


def write_tiny_params(folder: Path, committed: dict[str, Any], **changes: Any) -> Path:
    d = copy.deepcopy(committed)
    for key, value in {**TINY, **changes}.items():
        *parents, leaf = key.split(".")
        node = d
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = folder / "params.yaml"
    OmegaConf.save(OmegaConf.create(d), path)
    return path


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory, committed_params: dict[str, Any]) -> Path:
    """A folder with params.yaml (tiny sizes), data/{applications,train,val,test}.jsonl and models/base/.

    Built once per session through the stages' own run() functions (seconds, on 2 CPU cores).
    """
    from fincorp import base, generate, split

    ws = tmp_path_factory.mktemp("tiny")
    params = write_tiny_params(ws, committed_params)
    generate.run(str(params), str(ws / "data/applications.jsonl"))
    split.run(str(params), str(ws / "data/applications.jsonl"), str(ws / "data/train.jsonl"),
              str(ws / "data/test.jsonl"), str(ws / "data/val.jsonl"))
    (ws / "models").mkdir()
    base.run(str(params), str(ws / "models/base"))
    return ws
