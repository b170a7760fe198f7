"""Benchmark the default profile on this machine: `make benchmark` (or python scripts/benchmark.py).

Clones the committed HEAD into a temp dir and, there:
  1. times a full `dvc repro` from nothing (the fresh-clone reproduction a stranger would run),
  2. times a no-op `dvc repro` (median of 3), then reruns the four eval stages alone (a fresh clone's
     repro finds them up to date: their outputs are in git and the retrained models are bit-identical),
  3. reads each stage's wall time and peak memory from its telemetry record (telemetry/<stage>.json),
  4. measures eval throughput on the 160 test prompts: batched (eval.batch_size) vs one at a time,
     greedy, on the built base model,
  5. profiles GRPO optimizer steps at the committed recipe (grpo_step_profile): wall time split into
     generation+scoring, the loss's forward+backward, and the rest (optimizer, TRL/Trainer bookkeeping),
     the FLOPs of a step counted by torch's FlopCounterMode, the step's shape-aware floor (every matmul
     and attention kernel it ran, timed alone at its own shapes; and the decode steps' memory traffic at
     this machine's bandwidth), and where the rest of the step goes (torch profiler),
  6. with --baseline COMMIT (make benchmark passes BENCH_BASELINE): the same step profile of that commit,
     alternated with HEAD's in this run, and the speed-up.
Prints a markdown table and writes benchmarks/cpu.json and benchmarks/cpu.md in this checkout.
Targets on 2 cores: full pipeline <= 10 min (up to 20 min allowed when the fair budgets need it, README),
peak memory of every stage <= 2 GB, no-op <= 1.5 s, GRPO step <= 1.5x its floor and >= 2x faster than the
baseline's.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = ("baseline", "sft", "grpo", "hybrid")  # the eval stages, eval@<model>


def sh(args: list[str], cwd: Path, env: dict) -> float:
    start = time.time()
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.time() - start


def eval_throughput(clone: Path) -> dict[str, float]:
    sys.path.insert(0, str(clone / "src"))
    import torch

    from fincorp.eval import generate_completions
    from fincorp.model import chat_kwargs, load_for_inference, load_tokenizer
    from fincorp.params import load_params
    from fincorp.prompt import prompt_messages
    from fincorp.split import read_applications

    p = load_params(clone / "params.yaml")
    tok = load_tokenizer(p.model, clone / "models/base")
    model = load_for_inference(p.model, clone / "models/base", None)
    rows = read_applications(clone / "data/test.jsonl")
    prompts = [tok.apply_chat_template(prompt_messages(r, p.prompt.burn_display), tokenize=False,
                                       add_generation_prompt=True, **chat_kwargs(p.model)) for r in rows]
    out = {"prompts": len(prompts), "threads": torch.get_num_threads()}
    for name, batch in (("batched", p.eval.batch_size), ("one_at_a_time", 1)):
        start = time.time()
        generate_completions(model, tok, prompts, p.eval.max_new_tokens, batch, False, 1.0, 0, progress=False)
        out[f"{name}_samples_per_second"] = round(len(prompts) / (time.time() - start), 1)
    out["speedup"] = round(out["batched_samples_per_second"] / out["one_at_a_time_samples_per_second"], 1)
    return out


def matmul_flop_rate(n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of an n x n float32 matmul on this machine's threads (a shape the tiny model never runs: kept
    only to show how far a flat-rate floor is from the shape-aware one)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


KERNELS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
           "aten::_scaled_dot_product_flash_attention_for_cpu_backward")


def kernel_seconds(name: str, shapes: list[list[int]], repeats: int = 3, calls: int = 10) -> float:
    """Time of one call of a matmul or attention kernel alone at the given input shapes (as torch's profiler
    records them), on random float32 inputs: the best of `repeats` blocks of `calls` calls, per call. What the
    kernel costs on this machine at that shape, its dispatch from Python included (as in the model)."""
    import torch

    t = [torch.randn(*sh) if sh else None for sh in shapes]
    aten = torch.ops.aten
    if name == "aten::mm":
        call = lambda: aten.mm(t[0], t[1])  # noqa: E731
    elif name == "aten::addmm":
        call = lambda: aten.addmm(t[0], t[1], t[2])  # noqa: E731
    elif name == "aten::bmm":
        call = lambda: aten.bmm(t[0], t[1])  # noqa: E731
    else:  # flash attention: q, k, v, ..., the mask (if any) is the first 4-D input after them
        q, k, v = t[:3] if name.endswith("_cpu") else t[1:4]
        mask = next((x for x in t[3 if name.endswith("_cpu") else 4:] if x is not None and x.dim() == 4
                     and x.shape[-1] == k.shape[-2]), None)
        mask = torch.zeros_like(mask) if mask is not None else None
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask)
        if name.endswith("_cpu"):
            call = lambda: aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask)  # noqa: E731
        else:
            grad = torch.randn_like(out)
            call = lambda: aten._scaled_dot_product_flash_attention_for_cpu_backward(  # noqa: E731
                grad, q, k, v, out, lse, 0.0, False, attn_mask=mask)
    call()  # warm-up
    return per_call_seconds(call, calls, repeats)


def dispatch_seconds(calls: int = 20000) -> float:
    """Per-call time of the cheapest torch op there is (adding two one-element tensors): what every op call
    costs before it does any work, on this machine."""
    import torch

    a, b = torch.ones(1), torch.ones(1)
    return per_call_seconds(lambda: torch.add(a, b), calls, 3)


def memory_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes per second this machine's threads move in a large tensor copy (read + write)."""
    import torch

    a = torch.empty(mib * 2**20 // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    return 2 * a.numel() * 4 / per_call_seconds(lambda: b.copy_(a), 1, repeats)


def per_call_seconds(fn, calls: int, repeats: int) -> float:
    """Best of `repeats` blocks of `calls` back-to-back calls of `fn`, per call (dispatch included)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def grpo_step_profile(clone: Path, steps: int = 8, skip: int = 2) -> dict[str, Any]:
    """`steps` GRPO optimizer steps at the committed recipe on the built base (no validation callback), three
    times: timed, under FlopCounterMode, and under torch's profiler (input shapes recorded). Means over the
    steps after the first `skip` (warm-up).

    The floor is shape-aware: every matmul and attention kernel the measured steps ran (from the profiler, with
    its input shapes, forward and backward) timed alone at those shapes; and a memory bound, the bytes every
    decode step must read (all weights, and the key/value cache at its longest) over this machine's copy
    bandwidth. The floor is the larger of the two. The profiler's self times split the step: the kernels,
    the other torch ops (elementwise, copies, reductions, sampling), and the time outside any op (Python:
    transformers, PEFT, TRL and the autograd engine)."""
    sys.path.insert(0, str(clone / "src"))
    import torch
    from torch.profiler import profile as torch_profile
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import TrainerCallback

    from fincorp.grpo import build_trainer
    from fincorp.params import load_params
    from fincorp.preflight import flop_counter
    from fincorp.split import read_applications

    p = load_params(clone / "params.yaml")
    rows = read_applications(clone / "data/train.jsonl")
    model_info: dict[str, int] = {}

    def profiled(counter: FlopCounterMode | None, prof: Any | None) -> dict[str, list[float]]:
        with tempfile.TemporaryDirectory() as ckpt:
            trainer, _ = build_trainer(p, str(clone / "models/base"), rows, Path(ckpt), None)
            trainer.args.max_steps, trainer.args.save_steps = steps, 10**9
            model_info["param_bytes"] = sum(t.numel() * t.element_size() for t in trainer.model.parameters())
            spent = {"step": [], "generate": [], "train_step": [], "flops": [], "generate_flops": [],
                     "prompt_tokens": []}
            clock = {"gen": 0.0, "train": 0.0, "gen_flops": 0.0}

            def timed(fn, key):
                def wrapper(*a, **k):
                    t, f = time.perf_counter(), counter.get_total_flops() if counter else 0
                    try:
                        out = fn(*a, **k)
                    finally:
                        clock[key] += time.perf_counter() - t
                        if key == "gen" and counter:
                            clock["gen_flops"] += counter.get_total_flops() - f
                    if key == "gen":
                        spent["prompt_tokens"].append(out["prompt_ids"].shape[1])
                    return out
                return wrapper

            trainer._generate_and_score_completions = timed(trainer._generate_and_score_completions, "gen")
            trainer.training_step = timed(trainer.training_step, "train")

            class Steps(TrainerCallback):
                def on_step_begin(self, args, state, control, **kw):
                    if prof is not None and state.global_step == skip:
                        prof.__enter__()
                    self.t, self.f = time.perf_counter(), counter.get_total_flops() if counter else 0
                    clock.update(gen=0.0, train=0.0, gen_flops=0.0)

                def on_step_end(self, args, state, control, **kw):
                    spent["step"].append(time.perf_counter() - self.t)
                    spent["generate"].append(clock["gen"])
                    spent["train_step"].append(clock["train"])
                    spent["flops"].append((counter.get_total_flops() - self.f) if counter else 0)
                    spent["generate_flops"].append(clock["gen_flops"])
                    if prof is not None and state.global_step == steps:
                        prof.__exit__(None, None, None)

            trainer.add_callback(Steps())
            trainer.train()
            return {k: v[skip:] for k, v in spent.items()}

    timed_run = profiled(None, None)
    with flop_counter() as counter:  # torch's counter, plus the CPU flash-attention kernel
        counted = profiled(counter, None)
    prof = torch_profile(record_shapes=True)  # a pass of its own: the FLOP counter slows every op down
    profiled_step_s = statistics.mean(profiled(None, prof)["step"])
    measured = steps - skip
    events = prof.key_averages(group_by_input_shape=True)
    kernels = [(e.key, e.input_shapes, e.count) for e in events if e.key in KERNELS]
    kernel_s = sum(count * kernel_seconds(name, shapes) for name, shapes, count in kernels) / measured
    # Self times per step in the profiled pass (each op's own time, its callees excluded).
    kernel_self = sum(e.self_cpu_time_total for e in events if e.key in KERNELS) / 1e6 / measured
    ops_self = sum(e.self_cpu_time_total for e in events) / 1e6 / measured
    # Leaf op calls (ops that call no other op: where the work and the dispatch happen), kernels excluded.
    leaves = sum(1 for e in prof.events() if e.name.startswith("aten::") and not e.cpu_children
                 and e.name not in KERNELS) / measured
    dispatch = dispatch_seconds()
    # Decode reads: every weight once per decode step, and the key/value cache (at its longest: prompt + the
    # completion so far, every row) -> a lower bound on the generation's memory traffic.
    b, g = p.base, p.grpo
    rows_gen = g.per_device_train_batch_size * g.gradient_accumulation_steps
    prompt = statistics.mean(counted["prompt_tokens"])
    kv_bytes = sum(2 * b.num_hidden_layers * rows_gen * b.num_key_value_heads * b.head_dim * 4 * (prompt + i)
                   for i in range(g.max_completion_length))
    decode_bytes = g.max_completion_length * model_info["param_bytes"] + kv_bytes
    bandwidth = memory_bandwidth()
    mean = statistics.mean
    rate = matmul_flop_rate()
    step_s, gen_s = mean(timed_run["step"]), mean(timed_run["generate"])
    loss_s = mean(timed_run["train_step"]) - gen_s  # training_step = _prepare_inputs (generation) + loss + backward
    flops = mean(counted["flops"])
    floor = max(kernel_s, decode_bytes / bandwidth)
    return {
        "steps_measured": measured, "threads": torch.get_num_threads(),
        "step_s": round(step_s, 3), "generate_s": round(gen_s, 3), "loss_forward_backward_s": round(loss_s, 3),
        "other_s": round(step_s - gen_s - loss_s, 3),
        "gflops_per_step": round(flops / 1e9, 2), "generate_gflops_per_step": round(mean(counted["generate_flops"]) / 1e9, 2),
        "kernel_calls_per_step": round(sum(c for _, _, c in kernels) / measured),
        "kernel_shapes": len(kernels),
        "shape_aware_compute_floor_s": round(kernel_s, 3),
        "shape_aware_gflops_per_s": round(flops / kernel_s / 1e9, 1),
        "decode_bytes_per_step": decode_bytes, "memory_gb_per_s": round(bandwidth / 1e9, 1),
        "memory_floor_s": round(decode_bytes / bandwidth, 4),
        "floor_s": round(floor, 3), "step_over_floor": round(step_s / floor, 2),
        # Where the profiled pass's step goes (the profiler adds its own cost to every op call): the self times
        # of the kernels and of every other torch op, and what no op accounts for.
        "profiled_step_s": round(profiled_step_s, 3),
        "breakdown_s": {"matmul and attention kernels": round(kernel_self, 3),
                        "other torch ops: elementwise, copies, reductions, sampling": round(ops_self - kernel_self, 3),
                        "outside torch ops: Python in transformers, PEFT, TRL; the autograd engine":
                            round(max(profiled_step_s - ops_self, 0.0), 3)},
        "op_calls_per_step": round(sum(e.count for e in events) / measured),
        "other_leaf_op_calls_per_step": round(leaves),
        "dispatch_us_per_op": round(dispatch * 1e6, 2),
        # Those leaf calls at the cheapest op's cost: what the step's op count alone costs beyond the kernels.
        "other_ops_dispatch_floor_s": round(leaves * dispatch, 3),
        "matmul_1024_gflops_per_s": round(rate / 1e9, 1), "flat_rate_floor_s": round(flops / rate, 3),
    }


def step_profile_in(folder: Path, env: dict) -> dict[str, Any]:
    """grpo_step_profile of the code checked out in `folder`, in a fresh interpreter that imports that code."""
    out = subprocess.run([sys.executable, __file__, "--grpo-step", str(folder)], cwd=folder, capture_output=True,
                         text=True, env={**env, "PYTHONPATH": str(folder / "src")})
    if out.returncode:
        sys.exit(f"GRPO step profile in {folder} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def side_by_side(clone: Path, baseline: str, env: dict, rounds: int = 2) -> dict[str, Any]:
    """The GRPO step of HEAD and of `baseline` (a commit), on this machine in one run, alternating
    `rounds` times (HEAD, baseline, HEAD, ...): absolute seconds drift between machines and hours, the ratio
    far less. The baseline runs in its own clone, on HEAD's data and built base (same shapes)."""
    old = clone.parent / "baseline"
    sh(["git", "clone", "-q", str(REPO), str(old)], clone.parent, env)
    sh(["git", "checkout", "-q", baseline], old, env)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=old, capture_output=True, text=True).stdout
    for part in ("data", "models/base"):
        shutil.rmtree(old / part, ignore_errors=True)
        shutil.copytree(clone / part, old / part)
    runs: dict[str, list[dict]] = {"head": [], "baseline": []}
    for _ in range(rounds):
        runs["head"].append(step_profile_in(clone, env))
        runs["baseline"].append(step_profile_in(old, env))
    mean = lambda key, which: round(statistics.mean(r[key] for r in runs[which]), 3)  # noqa: E731
    parts = ("step_s", "generate_s", "loss_forward_backward_s", "other_s", "gflops_per_step", "floor_s")
    result = {"baseline_commit": commit.strip(), "rounds": rounds,
              **{f"{which}_{k}": mean(k, which) for which in runs for k in parts}, "runs": runs}
    result["speedup"] = round(result["baseline_step_s"] / result["head_step_s"], 2)
    return result


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--grpo-step"]:  # one GRPO step profile of the checkout in args[1] (side_by_side's worker)
        print(json.dumps(grpo_step_profile(Path(args[1]))))
        return
    baseline = args[args.index("--baseline") + 1] if "--baseline" in args else None
    with tempfile.TemporaryDirectory(prefix="fincorp-bench-") as tmp:
        clone = Path(tmp) / "fincorp"
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "PYTHONPATH": str(clone / "src"), "DVC_SITE_CACHE_DIR": str(Path(tmp) / "dvc-site"),
               "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1"}
        sh(["git", "clone", "-q", str(REPO), str(clone)], Path(tmp), env)
        full = sh(["dvc", "repro"], clone, env)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
        noop = statistics.median(sh(["dvc", "repro"], clone, env) for _ in range(3))
        # A fresh clone's repro skips the evals (and the report): their outputs are in git and their deps
        # (the retrained models) come out bit-identical, so DVC finds them up to date. Rerun them alone,
        # forced, for their timings (the same deterministic outputs are written again).
        evals = [f"eval@{m}" for m in MODELS]
        sh(["dvc", "repro", "--force", "--single-item", *evals], clone, env)
        stages = {m: clone / f"telemetry/{m}.json" for m in ("base", "sft", "grpo", "hybrid")}
        stages |= {f"eval@{m}": clone / f"telemetry/eval-{m}.json" for m in MODELS}
        per_stage = {}
        for name, path in stages.items():
            rec = json.loads(path.read_text())
            # Eval: generation alone, as cpu.md says (its wall_time_s includes loading the model).
            per_stage[name] = {"wall_time_s": rec.get("generate_seconds", rec["wall_time_s"]),
                               "peak_memory_mib": rec["peak_memory_mib"]}
        throughput = eval_throughput(clone)
        if baseline:  # HEAD's step alternated with the baseline's; HEAD's own profile is the first of them
            compared = side_by_side(clone, baseline, env)
            grpo_step = compared["runs"]["head"][0]
        else:
            compared, grpo_step = None, grpo_step_profile(clone)
        # The README's experiment line, as its reader runs it right after `make repro` (last: it changes params).
        exp_args = ["dvc", "exp", "run", "-n", "lr3e-4", "-S", "grpo.lr=3e-4"]
        experiment = {"command": " ".join(exp_args), "wall_s": round(sh(exp_args, clone, env), 1)}
        shown = subprocess.run(["dvc", "exp", "show", "--only-changed", "--drop", ".*/", "--no-pager"], cwd=clone,
                               env={**env, "COLUMNS": "1000"}, capture_output=True, text=True).stdout
        experiment["exp_show"] = shown
    peak = max(v["peak_memory_mib"] for v in per_stage.values())
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "full_repro_s": round(full, 1),
        "git_status_after_repro": dirty.splitlines(),
        "noop_repro_s": round(noop, 2),
        "stages": per_stage,
        "eval_throughput": throughput,
        "grpo_step": grpo_step,
        "grpo_step_vs_baseline": compared,
        "experiment": experiment,
        "peak_memory_mib": peak,
        "targets": {"full_repro_s": 600, "full_repro_allowed_s": 1200, "peak_memory_mib": 2048, "noop_repro_s": 1.5,
                    "grpo_step_over_floor": 1.5, "grpo_speedup_vs_baseline": 2.0},
    }
    g = grpo_step
    lines = [
        "# Benchmark: default profile (`cpu`)", "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}.", "",
        "| what | measured | target |", "|---|---|---|",
        f"| fresh-clone `dvc repro` | {full:.0f} s | <= 600 s (up to 1200 s allowed) |",
        f"| `git status --porcelain` after it | {'empty' if not dirty else f'{len(dirty.splitlines())} files'} | empty |",
        f"| peak memory, largest stage | {peak:.0f} MiB | <= 2048 MiB |",
        f"| no-op `dvc repro` (median of 3) | {noop:.2f} s | <= 1.5 s |",
        f"| then `{experiment['command']}` (reruns grpo, hybrid, their evals, report) | {experiment['wall_s']:.0f} s | |",
        f"| eval, batched ({throughput['batched_samples_per_second']} samples/s) vs one at a time "
        f"({throughput['one_at_a_time_samples_per_second']} samples/s) | {throughput['speedup']}x | |", "",
        f"GRPO optimizer step at the committed recipe (mean of {g['steps_measured']} steps, {g['threads']} threads, "
        "no validation callback):", "",
        "| part | seconds per step |", "|---|---|",
        f"| generation and reward | {g['generate_s']} |",
        f"| loss forward + backward | {g['loss_forward_backward_s']} |",
        f"| rest (optimizer, Trainer and TRL bookkeeping) | {g['other_s']} |",
        f"| **step** | **{g['step_s']}** |",
        f"| shape-aware compute floor: the step's {g['kernel_calls_per_step']} matmul and attention kernel calls "
        f"({g['kernel_shapes']} shapes, forward and backward) each timed alone at its shape; {g['gflops_per_step']} "
        f"GFLOP at {g['shape_aware_gflops_per_s']} GFLOP/s | {g['shape_aware_compute_floor_s']} |",
        f"| memory floor: {g['decode_bytes_per_step'] / 1e6:.1f} MB that the decode steps must read (weights, "
        f"key/value cache) at {g['memory_gb_per_s']} GB/s | {g['memory_floor_s']} |",
        f"| **floor** (the larger) | **{g['floor_s']}** (step = {g['step_over_floor']}x floor) |",
        f"| for comparison: {g['gflops_per_step']} GFLOP at a 1024x1024 matmul's {g['matmul_1024_gflops_per_s']} "
        f"GFLOP/s | {g['flat_rate_floor_s']} |", "",
        f"Where the step goes, in a pass under torch's profiler (self times; the profiler adds its own cost to each "
        f"of the {g['op_calls_per_step']} op calls a step makes, so this step took {g['profiled_step_s']} s):", "",
        "| part | seconds per step |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in g["breakdown_s"].items()), "",
        f"Beyond its {g['kernel_calls_per_step']} kernel calls a step makes {g['other_leaf_op_calls_per_step']} other leaf "
        f"op calls (ops that call no other op); at {g['dispatch_us_per_op']} us, the cost of the cheapest op call here, "
        f"they alone take {g['other_ops_dispatch_floor_s']} s before doing any work.", "",
        *([] if compared is None else [
            f"Side by side in this run, alternating {compared['rounds']} times: HEAD against "
            f"{compared['baseline_commit']} (means; same data and base):", "",
            "| | baseline | HEAD |", "|---|---|---|",
            *(f"| {label} | {compared['baseline_' + k]} | {compared['head_' + k]} |" for label, k in (
                ("step (s)", "step_s"), ("generation and reward (s)", "generate_s"),
                ("loss forward + backward (s)", "loss_forward_backward_s"), ("rest (s)", "other_s"),
                ("GFLOP per step", "gflops_per_step"), ("floor (s)", "floor_s"))),
            f"| **speed-up** | | **{compared['speedup']}x** |", ""]),
        "| stage | wall time (s) | peak memory (MiB) |", "|---|---|---|",
        *(f"| {k} | {v['wall_time_s']} | {v['peak_memory_mib']} |" for k, v in per_stage.items()), "",
        "Eval wall time is generation only. FLOPs are counted by torch.utils.flop_counter.FlopCounterMode "
        "(matmuls and attention, with the CPU flash-attention kernel that torch leaves uncounted: preflight.flop_counter). Generated by `make benchmark`, run alone on the machine.",
        "", f"`dvc exp show --only-changed --drop '.*/'` after `{experiment['command']}`:", "", "```",
        *experiment["exp_show"].rstrip().splitlines(), "```",
    ]
    out = REPO / "benchmarks"
    out.mkdir(exist_ok=True)
    (out / "cpu.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (out / "cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
