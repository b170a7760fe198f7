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
    assert profile["matmul_1024_gflops_per_s"] > 0
    # The shape-aware floor: kernels really replayed (forward and backward shapes), a memory bound from the
    # decode traffic, the floor the larger of the two and below the step it bounds.
    assert profile["kernel_calls_per_step"] > 100 and profile["kernel_shapes"] > 10
    assert 0 < profile["shape_aware_compute_floor_s"] < profile["step_s"]
    assert profile["decode_bytes_per_step"] > 0 and profile["memory_gb_per_s"] > 0
    assert profile["floor_s"] == max(profile["shape_aware_compute_floor_s"], profile["memory_floor_s"])
    # step_s and floor_s are rounded to 1 ms (on the tiny model the floor is a few ms): the ratio, taken
    # before rounding, lies within what those roundings allow.
    step, floor = profile["step_s"], profile["floor_s"]
    assert (step - 5e-4) / (floor + 5e-4) - 0.005 <= profile["step_over_floor"] <= (step + 5e-4) / (floor - 5e-4) + 0.005
    # The profiled pass's step, split into kernels, other ops and the rest (which covers what is left, or 0).
    kernels, others, rest = profile["breakdown_s"].values()
    assert kernels > 0 and others > 0 and rest >= 0
    assert kernels + others + rest >= profile["profiled_step_s"] * 0.98
    assert profile["other_leaf_op_calls_per_step"] > profile["kernel_calls_per_step"] > 0
    assert 0 < profile["dispatch_us_per_op"] < 100 and profile["other_ops_dispatch_floor_s"] > 0


def test_kernel_seconds_replays_matmuls_and_attention_at_their_shapes():
    bench = load_benchmark()
    small = bench.kernel_seconds("aten::mm", [[64, 128], [128, 256]])
    large = bench.kernel_seconds("aten::mm", [[2048, 128], [128, 256]])
    assert 0 < small < large
    qkv = [[2, 4, 40, 32]] * 3
    forward = bench.kernel_seconds("aten::_scaled_dot_product_flash_attention_for_cpu", [*qkv, [], [], [2, 1, 40, 40], []])
    backward = bench.kernel_seconds("aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                                    [[2, 4, 40, 32], *qkv, [2, 4, 40, 32], [2, 4, 40], [], [], [2, 1, 40, 40], []])
    assert forward > 0 and backward > 0
