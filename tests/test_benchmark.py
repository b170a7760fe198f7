"""scripts/benchmark.py's GRPO step profile on the tiny workspace (slow tier): the parts of a step add up,
FLOPs are counted, and the floor is below the measured step."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", REPO_ROOT / "scripts/benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grpo_step_profile_splits_the_step_and_counts_its_flops(tiny_workspace):
    profile = load_benchmark().grpo_step_profile(tiny_workspace, steps=3, skip=1)
    assert profile["steps_measured"] == 2
    parts = profile["generate_s"] + profile["loss_forward_backward_s"] + profile["other_s"]
    assert parts == pytest.approx(profile["step_s"], abs=0.01)
    assert profile["generate_s"] > 0 and profile["loss_forward_backward_s"] > 0
    assert 0 < profile["generate_gflops_per_step"] < profile["gflops_per_step"]
    assert profile["matmul_gflops_per_s"] > 0
    assert 0 < profile["floor_s"] < profile["step_s"]
