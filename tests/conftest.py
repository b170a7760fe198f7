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
