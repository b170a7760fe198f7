"""`fincorp preflight`: the counting machinery (fake tensors, FLOPs, live bytes), Qwen3-14B's totals, the device
checks and their one-line errors; in the slow tier, the `paper` plan on one A100 and the plans of the tiny
model against what training it measures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fincorp import preflight
from fincorp.cli import main
from fincorp.params import LoraParams, load_params

QWEN3_14B = preflight.ROOT_CONFIGS / "Qwen/Qwen3-14B"
QKVO = LoraParams(r=16, alpha=32, dropout=0.0, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))


@pytest.fixture
def in_repo(repo_root, monkeypatch):
    """preflight reads conf/ and configs/ relative to the working folder, as the CLI does; nothing is written."""
    monkeypatch.chdir(repo_root)


def qwen3_14b():
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(QWEN3_14B)


def test_qwen3_14b_parameters_and_lora_on_qkvo(in_repo):
    fm = preflight.FakeModel(qwen3_14b(), "bfloat16", lora=QKVO)
    assert fm.total == 14_768_307_200  # embeddings and lm_head untied: about 14.8B
    # r x (in + out) per projection: 16 x (10240 + 6144 + 6144 + 10240) per layer, 40 layers
    assert sum(t.numel() for t in fm.trainable) == 20_971_520
    assert fm.weight_bytes == 2 * 14_768_307_200  # bf16, nothing allocated for real
    assert fm.trainable_bytes == 4 * 20_971_520  # PEFT keeps LoRA in fp32
    assert all(t.dtype == torch.float32 for t in fm.trainable)


def test_the_shipped_configs_are_qwen3_14b(in_repo):
    a = json.loads((QWEN3_14B / "config.json").read_text())
    b = json.loads((preflight.ROOT_CONFIGS / "OpenPipe/Qwen3-14B-Instruct/config.json").read_text())
    assert a == b  # the fork changes the chat template, not the architecture
    assert (a["hidden_size"], a["num_hidden_layers"], a["vocab_size"]) == (5120, 40, 151936)


def test_flop_counter_counts_cpu_attention():
    q, k, v = (torch.randn(2, 4, 64, 16) for _ in range(3))
    with preflight.flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 2 * (2 * 2 * 4 * 64 * 64 * 16)  # QK^T and PV, 2 FLOPs per MAC
    q.requires_grad_(True)
    with preflight.flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
    # torch's backward formula: dV, dP, dQ, dK and the softmax recompute, 2.5x the forward
    assert counter.get_total_flops() == 3.5 * 2 * (2 * 2 * 4 * 64 * 64 * 16)


def test_live_bytes_follows_allocations_and_frees_in_allocator_blocks():
    keep = torch.zeros(100)  # alive before: counted from the start
    with preflight.live_bytes_mode([keep]) as mem:
        a = torch.empty(1000)  # 4,000 B -> 4,096
        b = torch.empty(2000)  # 8,000 B -> 8,192
        view = b[:10]  # a view allocates nothing
        del a
        c = torch.empty(10)  # 40 B -> 512
        assert mem.now == 512 + 8192 + 512
    assert mem.peak == 512 + 4096 + 8192
    del b, view, c


def test_train_step_of_a_tiny_model_counts_forward_and_backward():
    """A full-fine-tuning micro-batch of a 1-layer model without attention cost dominating: forward is 2 FLOPs
    per weight per token, backward twice that (activation and weight gradients)."""
    from transformers import Qwen3Config

    config = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=False)
    fm = preflight.FakeModel(config, "float32", full=True)
    matmul_weights = fm.total - 64 * 32 - 3 * 32 - 2 * 16  # all but the embedding table and the norms
    tokens = 4 * 8
    out = preflight.train_step(fm, 4, 8, None, False)
    attention = 3.5 * 2 * (2 * 4 * 2 * 8 * 8 * 16)  # QK^T and PV, forward and torch's 2.5x backward
    rotary = 2 * 8 * 8  # inv_freq (head_dim / 2) x positions, once per forward
    assert out["flops"] == 3 * 2 * tokens * matmul_weights + attention + rotary
    assert out["peak_bytes"] > fm.weight_bytes + 4 * fm.trainable_bytes  # weights, grads, AdamW moments


def test_generation_counts_prefill_decode_and_the_kv_cache(in_repo):
    from transformers import Qwen3Config

    config = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=False)
    fm = preflight.FakeModel(config, "float32")
    g = preflight.generation(fm, batch=4, prompt=10, new_tokens=5)
    # keys and values: 2 layers x 1 head x 16 x 4 bytes per token, 4 x 15 tokens
    assert g["kv_bytes"] == pytest.approx(2 * 2 * 1 * 16 * 4 * 4 * 15)
    per_token = 2 * (fm.total - 64 * 32 - 5 * 32 - 4 * 16)  # matmul weights, lm_head's only for kept logits
    assert g["decode_flops"] > 5 * 4 * per_token  # plus attention over the growing context
    assert g["prefill_flops"] > 4 * 9 * (per_token - 2 * 64 * 32)


def test_check_driver_names_the_way_out(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    gpu = {"name": "NVIDIA A100-SXM4-80GB", "driver": "550.54.15", "driver_cuda": "12.4"}
    with pytest.raises(preflight.PreflightError, match=r"supports CUDA up to 12.4.*needs driver >= 580.*CUDA 12"):
        preflight.check_driver(gpu)
    preflight.check_driver({**gpu, "driver": "580.65", "driver_cuda": "13.0"})  # new enough: no error


def test_detected_gpu_matches_its_datasheet_entry():
    seen = {"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 79.3}
    assert [k for k, s in preflight.GPUS.items() if preflight._same_gpu(s, seen)] == ["A100-80GB"]
    seen = {"name": "NVIDIA H100 PCIe", "memory_gib": 79.6}
    assert [k for k, s in preflight.GPUS.items() if preflight._same_gpu(s, seen)] == ["H100-PCIE"]


def test_visible_gpus_are_planned_and_checked(write_params, monkeypatch):
    p = load_params(write_params({"model.device": "cuda", "model.dtype": "bfloat16"}))
    gpu = {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "memory_gib": 79.2, "compute_capability": "8.0",
           "driver": "580.82", "driver_cuda": "13.0"}
    monkeypatch.setattr(preflight, "visible_gpus", lambda: ([gpu], ""))
    assert preflight.target(p, None)["spec"] is preflight.GPUS["A100-80GB"]
    # a GPU without datasheet numbers is planned for its memory (no times), not refused
    monkeypatch.setattr(preflight, "visible_gpus", lambda: ([{**gpu, "name": "NVIDIA RTX 6000 Ada Generation",
                                                               "memory_gib": 47.5, "compute_capability": "8.9"}], ""))
    where = preflight.target(p, None)
    assert where["spec"] is None and where["memory_gib"] == 47.5
    monkeypatch.setattr(preflight, "visible_gpus", lambda: ([{**gpu, "name": "Tesla T4", "memory_gib": 15.0,
                                                               "compute_capability": "7.5"}], ""))
    with pytest.raises(preflight.PreflightError, match="Tesla T4 \\(compute capability 7.5\\) has no bf16"):
        preflight.target(p, None)


def test_fits_counts_allocator_slack_and_the_cuda_context():
    gib = 2**30
    plan = {"target": {"kind": "gpu", "name": "NVIDIA A100 80GB", "memory_gib": 80.0},
            "stages": {"sft": {"peak": 30 * gib}, "grpo": {"peak": 72 * gib}}}
    ok, why = preflight.fits(plan)
    assert not ok and why.startswith("grpo needs 80.2 GiB (peak 72.0 GiB x 1.1 + 1 GiB CUDA context)")
    plan["stages"]["grpo"]["peak"] = 70 * gib  # 70 x 1.1 + 1 = 78 GiB
    assert preflight.fits(plan)[0]


def test_a_cuda_profile_without_a_gpu_stops_in_one_line(in_repo, tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "visible_gpus", lambda: ([], "no NVIDIA driver: NVML says Driver Not Loaded"))
    result = CliRunner().invoke(main, ["preflight", "--profile", "paper", "--out", str(tmp_path / "plan.md")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "profile paper needs a CUDA GPU" in lines[0] and "--gpu A100-80GB" in lines[0]
    assert not (tmp_path / "plan.md").exists()


def test_a_model_stage_of_a_cuda_profile_stops_before_loading_anything(write_params, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(preflight, "visible_gpus", lambda: ([], "no NVIDIA driver"))
    params = write_params({"model.device": "cuda"})
    for args in (["sft", "--base", str(tmp_path / "missing")], ["base", "--out", str(tmp_path / "base")],
                 ["eval", "baseline", "--base", str(tmp_path / "missing")]):
        result = CliRunner().invoke(main, [args[0], "--params", str(params), *args[1:]])
        assert result.exit_code == 1, result.output
        assert "needs a CUDA GPU (model.device: cuda)" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "base").exists()


def test_device_param_is_checked(write_params):
    from fincorp.params import ParamsError

    with pytest.raises(ParamsError, match="model.device.*auto, cuda"):
        load_params(write_params({"model.device": "gpu"}))


def test_unknown_gpu_and_profile_are_errors(in_repo, tmp_path):
    result = CliRunner().invoke(main, ["preflight", "--profile", "paper", "--gpu", "TPU"])
    assert result.exit_code == 1 and "--gpu TPU: unknown; known GPUs: A100-40GB" in result.output
    result = CliRunner().invoke(main, ["preflight", "--profile", "nope", "--gpu", "A100-80GB"])
    assert result.exit_code == 1 and "no conf/profile/nope.yaml; profiles: cpu, paper" in result.output


def test_profile_is_composed_and_lengths_estimated_without_a_tokenizer(in_repo, tmp_path):
    p = preflight.compose("paper", "params.yaml", tmp_path)  # params.yaml is not read: conf/ is composed
    assert p.profile == "paper" and p.model.device == "cuda" and p.grpo.max_completion_length == 150
    lengths = preflight.lengths(p, tmp_path / "no-base")  # no tokenizer in this machine's HF cache
    assert lengths["how"] == "estimated at 3 bytes per token: no tokenizer at hand"
    assert 100 < lengths["prompt"] < 400 and 5 < lengths["answer"] < 20


@pytest.mark.slow
def test_paper_plan_on_one_a100(in_repo, tmp_path):
    """The `paper` profile on one A100 80GB: what docs/GPU.md quotes, and the reasons it fits."""
    out = tmp_path / "paper.md"
    result = CliRunner().invoke(main, ["preflight", "--profile", "paper", "--gpu", "A100-80GB", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pl = json.loads(out.with_suffix(".json").read_text())
    assert pl["parameters"] == 14_768_307_200 and pl["lora_parameters"] == 20_971_520
    st = pl["stages"]
    gib = 2**30
    for name in ("sft", "grpo", "eval (each of 4)"):  # the bf16 weights, 27.5 GiB, dominate every peak
        assert 27.5 < st[name]["peak"] / gib < 60, name
    assert st["grpo"]["kv"] > st["sft"]["kv"]  # 64 completions of 150 tokens vs validation batches
    assert st["grpo"]["peak"] > st["sft"]["peak"]
    assert 1e16 < st["sft"]["flops"] < st["grpo"]["flops"] < 2e18
    assert "Fits: yes" in out.read_text()


@pytest.mark.slow
def test_tiny_plan_against_measured_training(tiny_workspace, monkeypatch):
    """The plan of the tiny workspace (CPU target) against GRPO steps measured the way `make benchmark`
    measures them (scripts/benchmark.py's grpo_step_profile, same FLOP counter).

    The plan is an upper bound by construction: every completion runs to max_completion_length and every
    batch pads to the longest prompt, where the real steps stop at the longest completion drawn and pad to
    the longest prompt of their batch. So plan/measured >= 0.95 (the measured FLOPs are rounded to 10 MFLOP)
    and <= 1.5 (1.04 measured: the tiny base's completions mostly run to max_completion_length).
    """
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("benchmark", REPO_ROOT / "scripts/benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    measured = bench.grpo_step_profile(tiny_workspace, steps=3, skip=1)["gflops_per_step"] * 1e9
    monkeypatch.chdir(tiny_workspace)
    p = load_params("params.yaml")
    pl = preflight.plan(p, "models/base", {"kind": "cpu", "name": "this CPU", "source": "test"})
    planned = pl["stages"]["grpo"]["step_flops"]
    assert 0.95 <= planned / measured <= 1.5, (planned, measured)
    assert pl["lengths"]["how"] == "tokenized"


@pytest.mark.slow
def test_cpu_profile_plan_against_the_committed_benchmark(in_repo, tmp_path):
    """The `cpu` profile's plan on this CPU against benchmarks/cpu.json (`make benchmark`: each stage's peak
    resident memory). The plan's peak is the resident memory of a fresh Python that imported the training
    stack plus the tensors alive at once; a stage's process also holds its dataset, tokenizer, trainer and
    logger objects and the freed blocks glibc's allocator keeps, none of which the plan models. So the
    measured peak is at least the plan's, and at most 1.5x it."""
    p = load_params("params.yaml")
    pl = preflight.plan(p, tmp_path / "no-base", {"kind": "cpu", "name": "this CPU", "source": "test"})
    measured = json.loads(Path("benchmarks/cpu.json").read_text())["stages"]
    for stage in ("base", "sft", "grpo", "hybrid"):
        ratio = measured[stage]["peak_memory_mib"] * 2**20 / pl["stages"][stage]["peak_total"]
        assert 1.0 <= ratio <= 1.5, (stage, ratio)
