"""`fincorp preflight`: the plan before the download. Memory, FLOPs and time of every stage of a profile,
on the GPU it will run on, before any weight is downloaded or any step is trained.

    fincorp preflight                                   # params.yaml, on the visible GPU (or this CPU)
    fincorp preflight --profile paper                   # conf/ composed with profile=paper, as
                                                        #   `dvc exp run -S profile=paper` composes it
    fincorp preflight --profile paper --gpu A100-80GB   # plan for a named GPU, from any machine

How it counts (nothing here is a hand formula):
  1. The model is built from its config on the meta device, with no weights: the HF cache's config.json
     when the model is cached, else the copy this project ships (configs/models/<hub id>/config.json); for
     model.source local, the built base's config (models/base) or one made from the base: params. The
     profile's LoRA is applied with PEFT, and parameters are counted.
  2. Every parameter becomes a fake tensor (torch's FakeTensorMode: shapes, dtypes and storages, no data),
     and each stage's unit of work runs once at the profile's real shapes: a training micro-batch
     (forward, loss, backward with the profile's gradient checkpointing, one AdamW step), generation
     (a prefill, then one decode step at the shortest and at the longest context), eval's
     answer-probability pass. FlopCounterMode counts the FLOPs; a dispatch mode follows every storage
     from allocation to release (rounded to the CUDA allocator's 512-byte blocks) and keeps the peak:
     what torch.cuda.max_memory_allocated() reports for the same work.
  3. A stage's totals multiply those units by the counts the trainers use (optimizer steps, gradient
     accumulation, TRL's generation batch of per_device_train_batch_size x gradient_accumulation_steps
     completions, the validation slice every val_steps steps, eval's batches).
  4. Time: compute at MFU x the GPU's dense bf16 rate; each decode step at least its bytes read
     (weights and KV cache) over a share of the GPU's memory bandwidth. Both shares are printed.
Lengths: prompts and answers are tokenized with the model's tokenizer when it is available (the built
tiny base, or the HF cache), else estimated from the rendered text (PROMPT_BYTES_PER_TOKEN). Generation is
planned at its maximum length (completions that stop early cost less), padding at the longest prompt.

GPUs are read with NVML (name, memory, compute capability, driver and the CUDA version it supports),
which works where torch's CUDA initialisation does not. The command stops with one line when the profile
needs CUDA and none is visible, when the driver is older than the CUDA this torch was built for, when
the GPU has no bf16 and the profile trains in it, or when a stage does not fit.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fincorp.params import Params, load_params

ROOT_CONFIGS = Path("configs/models")
GIB = 2**30


class PreflightError(RuntimeError):
    """The plan cannot run here (no GPU for a CUDA profile, driver too old, does not fit): one line says why."""


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    bf16_tflops: float  # dense, without sparsity
    bandwidth_tbs: float


# Datasheet numbers (SXM parts unless named), dense bf16 tensor-core rate.
GPUS = {
    "A100-40GB": Gpu("NVIDIA A100 40GB", 40.0, 312.0, 1.555),
    "A100-80GB": Gpu("NVIDIA A100 80GB", 80.0, 312.0, 2.039),
    "H100-80GB": Gpu("NVIDIA H100 80GB", 80.0, 989.0, 3.35),
    "H100-PCIE": Gpu("NVIDIA H100 PCIe", 80.0, 756.0, 2.0),
    "H200": Gpu("NVIDIA H200", 141.0, 989.0, 4.8),
    "L40S": Gpu("NVIDIA L40S", 48.0, 362.0, 0.864),
}
MFU = 0.35  # share of the dense bf16 rate that training and prefill reach (HF eager, LoRA, micro-batches)
BANDWIDTH_SHARE = 0.7  # share of the memory bandwidth a decode step reaches
CUDA_RESERVE_GIB = 1.0  # CUDA context and kernels, outside max_memory_allocated()
FRAGMENTATION = 1.10  # the caching allocator reserves more than it hands out
PROMPT_BYTES_PER_TOKEN = 3.0  # without a tokenizer: bytes of rendered text per token (Qwen splits digits)


# ---- accelerators ------------------------------------------------------------------------------------

def visible_gpus() -> tuple[list[dict[str, Any]], str]:
    """(GPUs seen by NVML, why none) — NVML needs only the driver, not a working CUDA runtime."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return [], f"no NVIDIA driver: NVML says {e}"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12040 for 12.4
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            out.append({"index": i, "name": pynvml.nvmlDeviceGetName(h),
                        "memory_gib": pynvml.nvmlDeviceGetMemoryInfo(h).total / GIB,
                        "compute_capability": ".".join(map(str, pynvml.nvmlDeviceGetCudaComputeCapability(h))),
                        "driver": driver, "driver_cuda": f"{cuda // 1000}.{cuda % 1000 // 10}"})
        return out, "" if out else "NVML sees no GPU"
    finally:
        pynvml.nvmlShutdown()


def needs_cuda_error(p: Params, why: str) -> PreflightError:
    return PreflightError(
        f"profile {p.profile} needs a CUDA GPU (model.device: cuda) and none is visible ({why}); run it on a "
        f"GPU host (docs/GPU.md), plan it from here with `fincorp preflight --profile {p.profile} --gpu A100-80GB`, "
        f"or use profile cpu")


def require_device(p: Params) -> None:
    """Before a model stage starts: a CUDA profile without a usable CUDA device stops here, in one line."""
    if p.model.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        gpus, why = visible_gpus()
        if gpus:
            why = f"NVML sees {gpus[0]['name']} but torch {torch.__version__} cannot use it" + (
                "" if torch.version.cuda else ": a CPU build")
        raise needs_cuda_error(p, why)


def check_driver(gpu: dict[str, Any]) -> None:
    """The driver must support the CUDA major version this torch was built for (CUDA 13 wheels: >= 580)."""
    import torch

    built = torch.version.cuda
    if not built:
        return
    have = tuple(int(x) for x in gpu["driver_cuda"].split("."))
    want = tuple(int(x) for x in built.split(".")[:2])
    if have[0] < want[0]:
        raise PreflightError(
            f"driver {gpu['driver']} supports CUDA up to {gpu['driver_cuda']}, but this torch {torch.__version__} "
            f"is built for CUDA {built}" + (" (needs driver >= 580)" if want[0] == 13 else "") +
            ": update the driver, or build the CUDA 12 image (docs/GPU.md, \"Older drivers\")")


def target(p: Params, gpu_name: str | None) -> dict[str, Any]:
    """Where the plan runs: a named GPU, else the first visible one, else this CPU (profiles that allow it)."""
    if gpu_name:
        key = gpu_name.upper()
        if key not in GPUS:
            raise PreflightError(f"--gpu {gpu_name}: unknown; known GPUs: {', '.join(GPUS)}")
        g = GPUS[key]
        return {"kind": "gpu", "name": g.name, "source": "named", "memory_gib": g.memory_gib, "spec": g}
    gpus, why = visible_gpus()
    if not gpus:
        if p.model.device == "cuda":
            raise needs_cuda_error(p, why)
        return {"kind": "cpu", "name": "this CPU", "source": f"no GPU ({why})"}
    g0 = gpus[0]
    check_driver(g0)
    # A GPU without datasheet numbers here is planned for its memory alone (no times).
    spec = next((s for s in GPUS.values() if _same_gpu(s, g0)), None)
    if p.model.dtype == "bfloat16" and float(g0["compute_capability"]) < 8.0:
        raise PreflightError(f"{g0['name']} (compute capability {g0['compute_capability']}) has no bf16; "
                             f"profile {p.profile} runs in bfloat16")
    return {"kind": "gpu", "name": g0["name"], "source": f"detected, driver {g0['driver']} (CUDA {g0['driver_cuda']}), "
            f"compute capability {g0['compute_capability']}", "memory_gib": g0["memory_gib"], "spec": spec}


def _same_gpu(spec: Gpu, seen: dict[str, Any]) -> bool:
    """NVML's name (e.g. "NVIDIA A100-SXM4-80GB") is this entry's: same chip, memory within 8 GiB, PCIe or not."""
    name, chip = seen["name"].upper(), spec.name.split()[1].upper()
    return chip in name and abs(spec.memory_gib - seen["memory_gib"]) < 8 and ("PCIE" in name) == ("PCIe" in spec.name)


# ---- counting ----------------------------------------------------------------------------------------

class _NoModules:
    """Stands in for FlopCounterMode's module tracker: its autograd hooks keep every activation that gradient
    checkpointing recomputes alive until the backward pass ends (a 40-layer micro-batch then looks 12 GiB
    bigger than it is). Only the total is read here, so every FLOP goes to "Global"."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def flop_counter():
    """FlopCounterMode that also counts the CPU flash-attention kernel (torch counts only the GPU ones), without
    per-module tracking (_NoModules)."""
    import torch
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    def forward(q, k, v, *args, out_shape=None, **kwargs):  # arguments arrive as shapes
        return fc.sdpa_flop_count(q, k, v)

    def backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)

    counter = fc.FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    })
    counter.mod_tracker = _NoModules()
    return counter


def live_bytes_mode(existing):
    """A dispatch mode that follows every storage an op allocates until it is freed; `.peak` is the most
    bytes alive at once, counting the storages of `existing` (the model's parameters) as alive throughout."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live: dict[int, int] = {}
            self.now = self.peak = 0
            for t in existing:
                self.add(t)

        def add(self, t) -> None:
            st = t.untyped_storage()
            key = st._cdata
            if key in self.live:
                return
            n = -(-st.nbytes() // 512) * 512  # the CUDA caching allocator's block size
            self.live[key] = n
            self.now += n
            self.peak = max(self.peak, self.now)
            weakref.finalize(st, self.free, key)

        def free(self, key: int) -> None:
            self.now -= self.live.pop(key, 0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            import torch

            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.add(t)
            return out

    return LiveBytes()


def model_config(p: Params, base_dir: str | Path):
    """(config, where it came from): see the module docstring, step 1."""
    from transformers import AutoConfig, Qwen3Config

    if p.model.source == "local":
        built = Path(base_dir) / "config.json"
        if built.is_file():
            return AutoConfig.from_pretrained(built.parent), str(built)
        b = p.base
        return Qwen3Config(vocab_size=b.vocab_size, hidden_size=b.hidden_size, intermediate_size=b.intermediate_size,
                           num_hidden_layers=b.num_hidden_layers, num_attention_heads=b.num_attention_heads,
                           num_key_value_heads=b.num_key_value_heads, head_dim=b.head_dim,
                           max_position_embeddings=b.max_length, tie_word_embeddings=b.tie_word_embeddings), \
            "params.yaml base: (models/base not built yet)"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(p.model.name, "config.json", revision=p.model.revision or None)
    if isinstance(cached, str):
        return AutoConfig.from_pretrained(Path(cached).parent), f"HF cache ({cached})"
    shipped = ROOT_CONFIGS / p.model.name / "config.json"
    if shipped.is_file():
        return AutoConfig.from_pretrained(shipped.parent), str(shipped)
    raise PreflightError(f"no config for {p.model.name}: not in the HF cache and no {shipped}; "
                         f"copy the model's config.json there")


def lengths(p: Params, base_dir: str | Path) -> dict[str, Any]:
    """Token lengths of the longest prompt, and of the longest answer, over every application the pipeline
    makes (generate and split run in memory); tokenized when the tokenizer is at hand."""
    from fincorp.generate import generate
    from fincorp.prompt import SYSTEM_PROMPT, answer_text, render_application
    from fincorp.rules import LABELS

    rows = generate(p.generate.n, p.generate.seed, p.generate.near_threshold_share)
    messages = [[{"role": "system", "content": SYSTEM_PROMPT},
                 {"role": "user", "content": render_application(r, p.prompt.burn_display)}] for r in rows]
    tok = _tokenizer(p, base_dir)
    if tok is not None:
        from fincorp.model import chat_kwargs

        texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True, **chat_kwargs(p.model))
                 for m in messages]
        prompt = max(len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"])  # as eval tokenizes
        answer = max(len(tok(answer_text(label), add_special_tokens=False)["input_ids"]) + 1 for label in LABELS)
        return {"prompt": prompt, "answer": answer, "how": "tokenized"}
    # ChatML around the two messages, and the empty think block a non-thinking Qwen3 turn opens with.
    wrap = len("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
               "<think>\n\n</think>\n\n")
    longest = max(len((m[0]["content"] + m[1]["content"]).encode()) + wrap for m in messages)
    answer = max(len(answer_text(label).encode()) for label in LABELS) + len("<|im_end|>")
    return {"prompt": math.ceil(longest / PROMPT_BYTES_PER_TOKEN), "answer": math.ceil(answer / PROMPT_BYTES_PER_TOKEN),
            "how": f"estimated at {PROMPT_BYTES_PER_TOKEN:g} bytes per token: no tokenizer at hand"}


def _tokenizer(p: Params, base_dir: str | Path):
    from transformers import AutoTokenizer

    try:
        if p.model.source == "local":
            return AutoTokenizer.from_pretrained(base_dir) if (Path(base_dir) / "tokenizer_config.json").is_file() \
                else None
        return AutoTokenizer.from_pretrained(p.model.name, revision=p.model.revision or None, local_files_only=True)
    except OSError:  # not in the HF cache
        return None


class FakeModel:
    """The model at its real shapes with fake tensors, and the counters that watch it run."""

    def __init__(self, config, dtype: str, lora=None, full: bool = False, gradient_checkpointing: bool = False):
        """lora: the LoRA params to train (a PEFT adapter); full: train every weight; neither: inference."""
        import torch
        from torch._subclasses.fake_tensor import FakeTensorMode
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype), attn_implementation="sdpa")
        self.total = sum(t.numel() for t in model.parameters())
        if lora is not None:
            from peft import get_peft_model

            from fincorp.train import lora_config

            model = get_peft_model(model, lora_config(lora))
        else:  # every weight trains (the tiny base's pre-training), or none does (eval, the merged model)
            model.requires_grad_(full)
        self.fake = FakeTensorMode()
        with self.fake:  # meta -> fake CPU tensors, in place (PEFT's .to() cannot swap fake tensors)
            for mod in model.modules():
                for name, t in list(mod._parameters.items()):
                    if t is not None:
                        mod._parameters[name] = torch.nn.Parameter(torch.empty(t.shape, dtype=t.dtype),
                                                                   requires_grad=t.requires_grad)
                for name, t in list(mod._buffers.items()):
                    if t is not None:
                        mod._buffers[name] = torch.empty(t.shape, dtype=t.dtype)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})  # as TRL 0.27 sets it
            model.enable_input_require_grads()
        self.model, self.config = model, config
        self.trainable = [t for t in model.parameters() if t.requires_grad]
        self.weight_bytes = sum(t.numel() * t.element_size() for t in model.parameters() if not t.requires_grad)
        self.trainable_bytes = sum(t.numel() * t.element_size() for t in self.trainable)

    def run(self, work) -> dict[str, float]:
        """FLOPs and peak bytes of work(model, torch, counted), the parameters counted as alive throughout;
        counted() reads the FLOPs so far."""
        import unittest.mock

        import torch

        # Masks are built without data-dependent branches (as under torch.compile): fake tensors have no data.
        # transformers 5 asks masking_utils.is_tracing, 4.57 (the vLLM image) is_torchdynamo_compiling.
        from transformers import masking_utils

        tracing = next(n for n in ("is_tracing", "is_torchdynamo_compiling") if hasattr(masking_utils, n))
        with self.fake, unittest.mock.patch.object(masking_utils, tracing, return_value=True), \
                flop_counter() as flops, live_bytes_mode(list(self.model.parameters())) as mem:
            work(self.model, torch, lambda: float(flops.get_total_flops()))
            return {"flops": float(flops.get_total_flops()), "peak_bytes": float(mem.peak)}


def train_step(fm: FakeModel, batch: int, seq: int, keep: int | None, bf16: bool, fp64_logprobs: bool = False,
               prompts: int | None = None):
    """One micro-batch: forward (logits for the last `keep` positions, or all), log-softmax loss, backward,
    and one AdamW step (its states are created here, as on the first real step). With `prompts` (GRPO's
    grpo.share_prompt_prefix), the batch's rows share that many distinct prompts (their first seq - keep
    tokens), which run once: prefix.logits_on_shared_prompts, the trainer's own code."""
    from fincorp.prefix import logits_on_shared_prompts

    def work(model, torch, counted):
        model.train()
        opt = torch.optim.AdamW(fm.trainable, lr=1e-4)
        ids = torch.zeros((batch, seq), dtype=torch.long)
        mask = torch.ones((batch, seq), dtype=torch.long)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if prompts and keep:
                rows = torch.arange(prompts).repeat_interleave(math.ceil(batch / prompts))[:batch]
                logits = logits_on_shared_prompts(model, ids[:prompts, :-keep], mask[:prompts, :-keep], rows,
                                                  ids[:, -keep:], mask).float()
            else:
                kw = {"logits_to_keep": keep + 1} if keep else {}
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False, **kw).logits
                logits = logits[:, :-1, :].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, -logits.shape[1]:, None]).squeeze(-1)
            loss = -logp.mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return fm.run(work)


def generation(fm: FakeModel, batch: int, prompt: int, new_tokens: int, prompts: int | None = None) -> dict[str, float]:
    """Sampling `new_tokens` tokens after `prompt`-token prompts for `batch` sequences, with the KV cache.
    FLOPs: the prefill, and `new_tokens` decode steps (a decode step's FLOPs grow linearly with its context,
    so the mean of the first and the last step is exact). Peak: the last decode step, the cache at full length.
    With `prompts` (grpo.share_prompt_prefix), the rows share that many distinct prompts: the prefill runs
    them once (prefix.prefill_shared_prompts, the trainer's own code) and the last prompt token of every row
    is one step on the copied cache.
    """
    from fincorp.prefix import prefill_shared_prompts

    cache = [0.0]

    def prefill_then_decode(context: int) -> dict[str, float]:
        split = {}

        def work(model, torch, counted):
            model.eval()
            with torch.no_grad():
                ids = torch.zeros((batch, context), dtype=torch.long)
                ones = torch.ones_like(ids)
                if prompts:
                    rows = torch.arange(prompts).repeat_interleave(math.ceil(batch / prompts))[:batch]
                    past = prefill_shared_prompts(model, ids[:prompts], ones[:prompts], rows)
                    out = model(input_ids=ids[:, -1:], attention_mask=ones, past_key_values=past, use_cache=True,
                                logits_to_keep=1)
                else:
                    out = model(input_ids=ids, attention_mask=ones, use_cache=True, logits_to_keep=1)
                cache[0] = sum(t.untyped_storage().nbytes() for layer in out.past_key_values.layers
                               for t in (layer.keys, layer.values))
                split["prefill"] = counted()
                model(input_ids=ids[:, :1], attention_mask=torch.ones((batch, context + 1), dtype=torch.long),
                      past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)

        run = fm.run(work)
        return {**run, "prefill": split["prefill"], "decode": run["flops"] - split["prefill"]}

    longest = prompt + new_tokens - 1
    first, last = prefill_then_decode(prompt), prefill_then_decode(longest)
    kv = cache[0] * (longest + 1) / longest  # measured after the prefill of `longest` tokens
    return {"prefill_flops": first["prefill"], "decode_flops": new_tokens * (first["decode"] + last["decode"]) / 2,
            "peak_bytes": last["peak_bytes"], "kv_bytes": kv,
            # a decode step reads every weight and, on average, half the final cache
            "decode_bytes_read": new_tokens * (fm.weight_bytes + fm.trainable_bytes + kv / 2)}


def answer_probabilities(fm: FakeModel, batch: int, seq: int) -> dict[str, float]:
    """eval's answer_log_probs for one batch: full logits, in float64, log-softmax (eval.py)."""

    def work(model, torch, counted):
        model.eval()
        with torch.no_grad():
            ids = torch.zeros((batch, seq), dtype=torch.long)
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            torch.log_softmax(logits.double(), dim=-1)

    return fm.run(work)


# ---- the plan ----------------------------------------------------------------------------------------

def compose(profile: str | None, params_path: str | Path, work: Path) -> Params:
    """params.yaml as it is, or conf/ composed with profile=NAME by DVC's Hydra helper (what
    `dvc exp run -S profile=NAME` writes into params.yaml)."""
    if profile is None:
        return load_params(params_path)
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import MissingConfigException

    conf = Path("conf").resolve()
    if not (conf / "profile" / f"{profile}.yaml").is_file():
        names = sorted(f.stem for f in (conf / "profile").glob("*.yaml"))
        raise PreflightError(f"--profile {profile}: no conf/profile/{profile}.yaml; profiles: {', '.join(names)}")
    out = work / "params.yaml"
    try:
        compose_and_dump(out, str(conf), None, "config", str(work), [f"profile={profile}"])
    except MissingConfigException as e:
        raise PreflightError(f"--profile {profile}: {e}") from None
    return load_params(out)


def row_counts(p: Params) -> dict[str, int]:
    """Rows each stage sees, as split writes them (sklearn rounds the test share up)."""
    test = math.ceil(p.generate.n * p.split.test_fraction)
    train = p.generate.n - test
    return {"train": train - (p.split.val_size if p.split.holdout_val else 0), "val": p.split.val_size, "test": test}


def cpu_rate() -> float:
    """FLOP/s of a 1024 x 1024 float32 matmul on this machine's threads (make benchmark's floor rate)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 2 * 1024**3 * 10 / (time.perf_counter() - start)


def process_baseline_bytes() -> float:
    """Peak resident memory of a fresh Python that imported the training stack: what a CPU stage holds before
    its first tensor (measured in a subprocess). Linux's VmHWM, not ru_maxrss, which keeps the parent's peak
    across fork and exec."""
    code = ("import resource, sys, torch, transformers, trl, peft, datasets\n"
            "try:\n"
            "    print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
            "except OSError:\n"
            "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == 'darwin' else 1))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1]) * 1024


def plan(p: Params, base_dir: str | Path, where: dict[str, Any]) -> dict[str, Any]:
    """Every stage's memory, FLOPs and time for profile params `p` on `where` (target())."""
    config, config_from = model_config(p, base_dir)
    n = row_counts(p)
    L = lengths(p, base_dir)
    P, A = L["prompt"], L["answer"]
    e = p.eval
    stages: dict[str, dict[str, Any]] = {}

    def validation(fm: FakeModel, every: int, steps: int) -> dict[str, float]:
        """The learning curve's scoring of the validation slice (train.ValidationCallback): greedy, eval's
        max_new_tokens and batch size, at step 0, every `every` steps and at the end."""
        times = 1 + steps // every + (steps % every != 0)
        g = generation(fm, min(e.batch_size, n["val"]), P, e.max_new_tokens)
        batches = times * math.ceil(n["val"] / e.batch_size)
        return {"g": g, "batches": batches}

    def trained(name: str, fm: FakeModel, micro: dict, micro_per_step: int, steps: int, val: dict,
                gen: dict | None, what: str) -> None:
        optimizer_bytes = 2 * fm.trainable_bytes  # AdamW's moments: alive from the first step on
        peaks = {"train step": micro["peak_bytes"], "validation": val["g"]["peak_bytes"] + optimizer_bytes,
                 **({"generation": gen["peak_bytes"] + optimizer_bytes} if gen else {})}
        peak = max(peaks.values())
        parts = {"train": steps * micro_per_step * micro["flops"]}
        gens = [(val["g"], val["batches"])] + ([(gen, steps)] if gen else [])
        step = micro_per_step * micro["flops"] + (gen["prefill_flops"] + gen["decode_flops"] if gen else 0.0)
        stages[name] = {"what": what, "weights": fm.weight_bytes, "trainable": 4 * fm.trainable_bytes,
                        "peak": peak, "peaks": peaks, "flops_parts": parts, "generations": gens, "step_flops": step,
                        "kv": max(g["kv_bytes"] for g, _ in gens), "steps": steps}

    if p.model.source == "local":
        b = p.base
        fm = FakeModel(config, p.model.dtype, full=True)
        seq = min(b.max_length, P + A)
        pd, ga = b.per_device_train_batch_size, b.gradient_accumulation_steps
        steps = math.ceil(b.prior.n * b.num_train_epochs / (pd * ga))
        micro = train_step(fm, pd, seq, None, False)
        stages["base"] = {"what": f"{steps} steps x {ga} x {pd} rows x {seq} tokens, every weight trains",
                          "weights": 0.0, "trainable": 4 * fm.trainable_bytes, "peak": micro["peak_bytes"],
                          "flops_parts": {"train": steps * ga * micro["flops"]},
                          "generations": [], "kv": 0.0, "steps": steps}
    else:
        stages["base"] = {"what": "resolve and download the weights (no accelerator work)", "weights": 0.0,
                          "trainable": 0.0, "peak": 0.0, "flops_parts": {}, "generations": [], "kv": 0.0, "steps": 0}

    s = p.sft
    fm = FakeModel(config, p.model.dtype, lora=s.lora, gradient_checkpointing=s.gradient_checkpointing)
    total_params, lora_params = fm.total, sum(t.numel() for t in fm.trainable)
    seq = min(s.max_length, P + A)
    pd, ga = s.per_device_train_batch_size, s.gradient_accumulation_steps
    steps = math.ceil(n["train"] * s.num_train_epochs / (pd * ga))
    trained("sft", fm, train_step(fm, pd, seq, None, s.bf16), ga, steps, validation(fm, s.val_steps, steps), None,
            f"{steps} steps x {ga} x {pd} rows x {seq} tokens")

    g = p.grpo
    completions = g.per_device_train_batch_size * g.gradient_accumulation_steps  # TRL's generation batch
    steps = math.ceil(n["train"] * g.num_generations * g.num_train_epochs / completions)
    for name, lora in (("grpo", g.lora), ("hybrid", s.lora)):
        if name == "hybrid" and lora == g.lora:
            stages["hybrid"] = {**stages["grpo"], "what": "as grpo, from the sft adapter"}
            continue
        fm = FakeModel(config, p.model.dtype, lora=lora, gradient_checkpointing=g.gradient_checkpointing)
        # grpo.share_prompt_prefix: a micro-batch holds whole prompt groups (grpo.shuffle_groups), and each
        # distinct prompt runs once, in generation and in the loss.
        shared = g.share_prompt_prefix
        micro_prompts = max(1, g.per_device_train_batch_size // g.num_generations) if shared else None
        trained(name, fm, train_step(fm, g.per_device_train_batch_size, P + g.max_completion_length,
                                     g.max_completion_length, g.bf16, prompts=micro_prompts),
                g.gradient_accumulation_steps, steps, validation(fm, g.val_steps, steps),
                generation(fm, completions, P, g.max_completion_length,
                           prompts=completions // g.num_generations if shared else None),
                f"{steps} steps: generate {completions} x {g.max_completion_length} tokens, then "
                f"{g.gradient_accumulation_steps} x {g.per_device_train_batch_size} completions x "
                f"{P + g.max_completion_length} tokens")

    fm = FakeModel(config, p.model.dtype)
    gen = generation(fm, min(e.batch_size, n["test"]), P, e.max_new_tokens)
    vip, other = n["test"] // 4, n["test"] - n["test"] // 4
    prob_batches = 4 * math.ceil(vip / e.batch_size) + math.ceil(other / e.batch_size)
    probs = answer_probabilities(fm, min(e.batch_size, n["test"]), P + A)
    stages["eval (each of 4)"] = {
        "what": f"{math.ceil(n['test'] / e.batch_size)} batches of {e.batch_size} x {e.max_new_tokens} tokens; "
                f"{prob_batches} answer-probability batches",
        "weights": fm.weight_bytes, "trainable": 0.0, "peak": max(gen["peak_bytes"], probs["peak_bytes"]),
        "flops_parts": {"answer_probabilities": prob_batches * probs["flops"]},
        "generations": [(gen, math.ceil(n["test"] / e.batch_size))], "kv": gen["kv_bytes"], "steps": 0}

    rate = cpu_rate() if where["kind"] == "cpu" else None
    baseline = process_baseline_bytes() if where["kind"] == "cpu" else 0.0
    for st in stages.values():
        compute = sum(st["flops_parts"].values()) + sum(k * gg["prefill_flops"] for gg, k in st["generations"])
        decode = sum(k * gg["decode_flops"] for gg, k in st["generations"])
        st["flops"] = compute + decode
        if where["kind"] == "cpu":  # a floor: every FLOP at the large-matmul rate
            st["seconds"] = st["flops"] / rate
        elif where["spec"] is None:
            st["seconds"] = None
        else:
            spec = where["spec"]
            flop_s, byte_s = MFU * spec.bf16_tflops * 1e12, BANDWIDTH_SHARE * spec.bandwidth_tbs * 1e12
            decode_s = sum(k * max(gg["decode_flops"] / flop_s, gg["decode_bytes_read"] / byte_s)
                           for gg, k in st["generations"])
            st["seconds"] = compute / flop_s + decode_s
        st["peak_total"] = st["peak"] + baseline if st["peak"] else 0.0
        del st["generations"]
    evals = stages["eval (each of 4)"]
    total = {"flops": sum(st["flops"] for st in stages.values()) + 3 * evals["flops"],
             "seconds": None if evals["seconds"] is None else
             sum(st["seconds"] for st in stages.values()) + 3 * evals["seconds"],
             "peak": max(st["peak_total"] for st in stages.values())}
    return {"profile": p.profile, "model": p.model.name or "the tiny base (model.source local)",
            "config": config_from, "dtype": p.model.dtype, "parameters": total_params, "lora_parameters": lora_params,
            "lora": {"r": p.sft.lora.r, "target_modules": list(p.sft.lora.target_modules)},
            "lengths": L, "rows": n, "target": {k: v for k, v in where.items() if k != "spec"},
            "assumptions": ({"cpu_flop_rate": rate, "process_baseline_bytes": baseline} if where["kind"] == "cpu" else
                            {"mfu": MFU, "bandwidth_share": BANDWIDTH_SHARE, "cuda_reserve_gib": CUDA_RESERVE_GIB,
                             "fragmentation": FRAGMENTATION,
                             **({"bf16_tflops": where["spec"].bf16_tflops, "bandwidth_tbs": where["spec"].bandwidth_tbs}
                                if where["spec"] else {})}),
            "stages": stages, "total": total}


def fits(plan_: dict[str, Any]) -> tuple[bool, str]:
    """Whether the largest stage fits the GPU: peak x fragmentation + CUDA context <= its memory."""
    t = plan_["target"]
    if t["kind"] == "cpu":
        return True, ""
    name, st = max(plan_["stages"].items(), key=lambda kv: kv[1]["peak"])
    need = st["peak"] / GIB * FRAGMENTATION + CUDA_RESERVE_GIB
    return need <= t["memory_gib"], (f"{name} needs {need:.1f} GiB (peak {st['peak'] / GIB:.1f} GiB x "
                                     f"{FRAGMENTATION} + {CUDA_RESERVE_GIB:g} GiB CUDA context) of the "
                                     f"{t['memory_gib']:.0f} GiB of {t['name']}")


def _gib(x: float) -> str:
    return f"{x / 2**20:.0f} MiB" if x < GIB else f"{x / GIB:.2f} GiB" if x < 10 * GIB else f"{x / GIB:.1f} GiB"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.2f} s" if s < 60 else f"{s / 60:.1f} min" if s < 3600 else f"{s / 3600:.2f} h"


def render(pl: dict[str, Any]) -> str:
    t, a = pl["target"], pl["assumptions"]
    cpu = t["kind"] == "cpu"
    lines = [
        f"# Preflight: profile `{pl['profile']}` on {t['name']} ({t['source']})", "",
        f"- Model: {pl['model']} ({pl['dtype']}), {pl['parameters']:,} parameters; config: {pl['config']}.",
        f"- LoRA r {pl['lora']['r']} on {', '.join(pl['lora']['target_modules'])} (sft): "
        f"{pl['lora_parameters']:,} trainable parameters ({100 * pl['lora_parameters'] / pl['parameters']:.2f}%).",
        f"- Rows: train {pl['rows']['train']}, validation {pl['rows']['val']}, test {pl['rows']['test']}; "
        f"longest prompt {pl['lengths']['prompt']} tokens, longest answer {pl['lengths']['answer']} "
        f"({pl['lengths']['how']}).",
        ("- Time: a floor, every FLOP at this CPU's 1024x1024 float32 matmul rate "
         f"({a['cpu_flop_rate'] / 1e9:.0f} GFLOP/s); peak = tensors + {a['process_baseline_bytes'] / 2**20:.0f} MiB "
         "of a Python that imported the training stack." if cpu else
         (f"- Time: compute at {a['mfu']:.0%} MFU of {a['bf16_tflops']:g} TFLOP/s (dense bf16); each decode step at "
          f"least its bytes read (weights, KV cache) at {a['bandwidth_share']:.0%} of {a['bandwidth_tbs']:g} TB/s. "
          if "bf16_tflops" in a else f"- Time: not planned, no datasheet numbers here for {t['name']} (`--gpu` names "
          f"one of {', '.join(GPUS)}). ") +
         f"Peak = tensors alive at once (what torch.cuda.max_memory_allocated() reports); to fit, "
         f"peak x {a['fragmentation']} + {a['cuda_reserve_gib']:g} GiB (CUDA context) must stay under "
         f"{t['memory_gib']:.0f} GiB."),
        "",
        "| stage | what runs | weights | trainable + grads + AdamW | peak | FLOPs | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, st in pl["stages"].items():
        peak = st["peak_total"]
        lines.append(f"| {name} | {st['what']} | {_gib(st['weights'])} | {_gib(st['trainable'])} | "
                     f"{_gib(peak) if peak else '-'} | {st['flops']:.2e} | {_duration(st['seconds'])} |")
    tot = pl["total"]
    lines.append(f"| **pipeline** | every stage, eval 4 times | | | **{_gib(tot['peak'])}** | **{tot['flops']:.2e}** | "
                 f"**{_duration(tot['seconds'])}** |")
    kv = {k: st["kv"] for k, st in pl["stages"].items() if st["kv"]}
    if kv:
        lines += ["", "KV cache at full length, inside each peak: " +
                  "; ".join(f"{k} {_gib(v)}" for k, v in kv.items()) + "."]
    parts = {k: st["peaks"] for k, st in pl["stages"].items() if "peaks" in st and k != "hybrid"}
    if parts:  # which unit of work sets each training stage's peak (AdamW's moments alive after the first step)
        lines += ["", "Peak by part (tensors alive at once): " + "; ".join(
            f"{k} " + ", ".join(f"{part} {_gib(v)}" for part, v in ps.items()) for k, ps in parts.items()) + "."]
    ok, why = fits(pl)
    if not cpu:
        lines += ["", f"Fits: {'yes' if ok else 'NO'}; the largest stage: {why}."]
    lines += ["", "Generated by `fincorp preflight" + (f" --profile {pl['profile']}" if pl["profile"] else "") +
              ("" if cpu or t["source"] != "named" else f" --gpu {pl['gpu_key']}") + "` (src/fincorp/preflight.py)."]
    return "\n".join(lines) + "\n"


def run(params_path: str, profile: str | None, gpu: str | None, base_dir: str, out: str | None) -> dict[str, Any]:
    """Compose, pick the target, plan, print and write the table (and its JSON); PreflightError when it cannot
    run here or does not fit (after the table, so the numbers say why)."""
    from fincorp.jsonl import write_json

    with tempfile.TemporaryDirectory(prefix="fincorp-preflight-") as work:
        p = compose(profile, params_path, Path(work))
    where = target(p, gpu)
    pl = plan(p, base_dir, where)
    pl["gpu_key"] = gpu.upper() if gpu else None
    text = render(pl)
    print(text)
    path = Path(out) if out else Path("telemetry") / f"preflight-{p.profile}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    write_json(path.with_suffix(".json"), pl)
    ok, why = fits(pl)
    if not ok:
        raise PreflightError(f"profile {p.profile} does not fit: {why}")
    return pl


def splice(doc: str | Path, table: str | Path) -> None:
    """Put a plan's markdown (its title as a bold line) between doc's `<!-- preflight:start/end -->` markers."""
    doc, start, end = Path(doc), "<!-- preflight:start -->", "<!-- preflight:end -->"
    text = doc.read_text()
    if start not in text or end not in text:
        raise PreflightError(f"{doc}: no {start} ... {end} markers to put the table between")
    title, _, body = Path(table).read_text().partition("\n")
    head, _, rest = text.partition(start)
    text = f"{head}{start}\n**{title.lstrip('# ')}**\n{body.rstrip()}\n{end}{rest.partition(end)[2]}"
    doc.write_text(text)
