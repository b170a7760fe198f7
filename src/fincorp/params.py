"""Typed, frozen parameters: params.yaml holds every value, this module holds the types.

`load_params(path)` reads params.yaml once (with OmegaConf: PyYAML would read `2e-5` as a string),
checks it against the dataclasses below and returns a frozen `Params`. Unknown keys, missing keys,
wrong types and out-of-range values are errors that name the file and the dotted key, raised before
any stage does work.

Names passed through to Hugging Face keep HF's names (`per_device_train_batch_size`,
`gradient_accumulation_steps`, ...); the one exception is the learning rate, `lr`, so that
`dvc exp run -S grpo.lr=...` reads as the design says.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import OmegaConf

BurnDisplay = Literal["pct", "usd"]
Dtype = Literal["float32", "bfloat16", "float16"]
Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine"]


class ParamsError(ValueError):
    """params.yaml is wrong: the message names the file and the key."""


@dataclass(frozen=True)
class GenerateParams:
    n: int  # rows in data/applications.jsonl; a multiple of 4 (exact class balance)
    seed: int
    near_threshold_share: float  # chance that each of revenue, burn, NPS is drawn near its threshold


@dataclass(frozen=True)
class PromptParams:
    burn_display: BurnDisplay  # "pct": burn as % of revenue (article); "usd": absolute burn (scripts)


@dataclass(frozen=True)
class SplitParams:
    test_fraction: float
    seed: int
    val_size: int  # train rows in the validation slice (data/val.jsonl), a multiple of 4 (stratified)
    holdout_val: bool  # true: data/train.jsonl leaves the slice out (tuning); false: trains on every train row


@dataclass(frozen=True)
class ModelParams:
    source: Literal["local", "hub"]  # local: the tiny model stage `base` builds; hub: a pretrained model
    name: str  # hub id (e.g. Qwen/Qwen3-14B) or a local folder; "" for source=local
    revision: str  # pinned hub commit or tag; "" for source=local
    dtype: Dtype
    enable_thinking: bool  # passed to the chat template; Qwen3 thinking is off for this task
    device: Literal["auto", "cuda"]  # auto: CUDA when visible, else the CPU; cuda: stop at once without a GPU


@dataclass(frozen=True)
class PriorParams:
    """The 'general credit knowledge' the tiny base is pre-trained on (see rules.prior_decide)."""

    n: int  # pre-training rows, balanced across the prior's three labels
    seed: int  # generator seed; must differ from generate.seed
    reject_burn_pct: float
    a_plus_nps: int
    label_noise: float  # share of rows whose label is replaced by a uniformly random one of the four
    manual_review_share: float  # share of rows whose label is replaced by MANUAL_REVIEW
    vip_manual_review_share: float  # share of VIP-founder rows relabelled MANUAL_REVIEW (positive control)


@dataclass(frozen=True)
class BaseParams:
    """The tiny Qwen3 built and pre-trained offline when model.source is local."""

    vocab_size: int  # target size of the byte-level BPE
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool
    lr: float
    num_train_epochs: float
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    lr_scheduler_type: Scheduler
    warmup_steps: int
    max_length: int
    # The base's own pre-training seed (weights init, data order), apart from `seed` (sft, grpo, eval), so
    # RL runs under several seeds share one base (fincorp study discovery); the seeds study sets both.
    seed: int
    prior: PriorParams


@dataclass(frozen=True)
class LoraParams:
    r: int
    alpha: int
    dropout: float
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class SftParams:
    lr: float
    num_train_epochs: float
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    lr_scheduler_type: Scheduler
    warmup_steps: int
    weight_decay: float
    max_length: int
    completion_only_loss: bool  # False = loss on the whole sequence, as the published scripts did
    bf16: bool
    gradient_checkpointing: bool
    logging_steps: int
    save_steps: int  # checkpoint every N optimizer steps, so an interrupted run resumes
    val_steps: int  # score the validation slice every N optimizer steps (learning curves)
    lora: LoraParams


@dataclass(frozen=True)
class GrpoParams:
    lr: float
    num_train_epochs: float
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    num_generations: int
    max_completion_length: int
    temperature: float
    beta: float
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"]
    scale_rewards: Literal["group", "batch", "none"]
    lr_scheduler_type: Scheduler
    warmup_steps: int
    reward: Literal["exact", "scripts", "partial"]  # scoring.py
    reward_correct: float  # preset `exact` only
    reward_wrong: float  # preset `exact` only (wrong or invalid)
    bf16: bool
    gradient_checkpointing: bool
    share_prompt_prefix: bool  # prefix.py: each distinct prompt runs once when generating and in the loss
    use_vllm: bool
    vllm_gpu_memory_utilization: float  # colocate mode: vLLM's share of GPU memory
    logging_steps: int
    save_steps: int
    val_steps: int
    # Stop once validation VIP accuracy has been >= stop_vip_accuracy at stop_evals validation points in a
    # row (fincorp study discovery); 0 = never stop early, train every epoch.
    stop_vip_accuracy: float
    stop_evals: int
    lora: LoraParams


@dataclass(frozen=True)
class EvalParams:
    do_sample: bool  # True: temperature sampling with `seed` (the article); False: greedy
    temperature: float
    max_new_tokens: int
    batch_size: int


@dataclass(frozen=True)
class LaunchParams:
    """How the training stages (sft, grpo) start: one process, or several through accelerate/torchrun."""

    accelerate_config: str  # "" or a file under configs/accelerate/: `accelerate launch --config_file`
    num_processes: int  # with no accelerate_config and > 1: torchrun --standalone (CPU: gloo)


@dataclass(frozen=True)
class Params:
    profile: str  # which conf/profile/*.yaml this was composed from
    seed: int  # training and evaluation seed (data has its own seeds under generate/split)
    generate: GenerateParams
    prompt: PromptParams
    split: SplitParams
    model: ModelParams
    base: BaseParams
    sft: SftParams
    grpo: GrpoParams
    eval: EvalParams
    launch: LaunchParams


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # OmegaConf raises several YAML/grammar error types
        raise ParamsError(f"{path}: cannot be read as YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    params = _build(Params, raw, str(path), "")
    _check(params, str(path))
    return params


def to_dict(params: Any) -> dict[str, Any]:
    """Plain dict of a params dataclass (tuples as lists): what stages save beside their outputs."""

    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(params))


def _build(cls: type, raw: Any, file: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "(top level)"
    if not isinstance(raw, dict):
        raise ParamsError(f"{file}: {where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ParamsError(
            f"{file}: unknown key {prefix}{unknown[0]}; allowed keys in {where}: {', '.join(names)}"
        )
    missing = [n for n in names if n not in raw]
    if missing:
        raise ParamsError(f"{file}: missing key {prefix}{missing[0]}")
    return cls(**{n: _value(hints[n], raw[n], file, f"{prefix}{n}") for n in names})


def _value(tp: Any, v: Any, file: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, v, file, key + ".")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if v not in allowed:
            raise ParamsError(f"{file}: {key}: {v!r} is not allowed; use one of: {', '.join(map(str, allowed))}")
        return v
    if origin is tuple:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or not v:
            raise ParamsError(f"{file}: {key}: expected a non-empty list of strings, got {v!r}")
        return tuple(v)
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported type for {key}")  # not used; keeps the schema simple
    if tp is bool:
        if not isinstance(v, bool):
            raise ParamsError(f"{file}: {key}: expected true or false, got {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ParamsError(f"{file}: {key}: expected an integer, got {v!r}")
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ParamsError(f"{file}: {key}: expected a number, got {v!r}")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            raise ParamsError(f"{file}: {key}: expected a string, got {v!r}")
        return v
    raise TypeError(f"unsupported type {tp!r} for {key}")


def _check(p: Params, file: str) -> None:
    """Ranges and cross-field rules, checked before any model is loaded."""

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ParamsError(f"{file}: {key}: {msg}")

    need(p.generate.n > 0 and p.generate.n % 4 == 0, "generate.n",
         f"must be a positive multiple of 4 so the four classes balance exactly, got {p.generate.n}")
    need(0.0 <= p.generate.near_threshold_share <= 1.0, "generate.near_threshold_share",
         f"must be in [0, 1], got {p.generate.near_threshold_share}")
    need(0.0 < p.split.test_fraction < 1.0, "split.test_fraction",
         f"must be strictly between 0 and 1, got {p.split.test_fraction}")
    n_test = p.generate.n * p.split.test_fraction
    need(n_test >= 4 and p.generate.n - n_test >= 4, "split.test_fraction",
         f"leaves fewer than one row per class in train or test with generate.n={p.generate.n}")
    n_train = p.generate.n - math.ceil(n_test)
    need(p.split.val_size > 0 and p.split.val_size % 4 == 0 and p.split.val_size <= n_train // 2,
         "split.val_size", f"must be a positive multiple of 4 and at most half the {n_train} train rows, "
         f"got {p.split.val_size}")
    if p.model.source == "local":
        need(p.model.name == "" and p.model.revision == "", "model.name",
             "must be empty when model.source is local (the tiny model is built by stage base)")
    else:
        need(p.model.name != "", "model.name", "must name a hub model or a local folder when model.source is hub")
    need(p.base.prior.n > 0 and p.base.prior.n % 3 == 0, "base.prior.n",
         f"must be a positive multiple of 3 (balanced across the prior's three labels), got {p.base.prior.n}")
    for k in ("label_noise", "manual_review_share", "vip_manual_review_share"):
        need(0.0 <= getattr(p.base.prior, k) < 1.0, f"base.prior.{k}",
             f"must be in [0, 1), got {getattr(p.base.prior, k)}")
    need(p.base.prior.label_noise + p.base.prior.manual_review_share < 1.0, "base.prior.manual_review_share",
         "base.prior.label_noise + base.prior.manual_review_share must be < 1 (some rows keep the prior's label)")
    need(p.base.prior.seed != p.generate.seed, "base.prior.seed",
         "must differ from generate.seed so pre-training never sees train/test applications")
    for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "max_length"):
        need(getattr(p.base, k) >= 1, f"base.{k}", f"must be >= 1, got {getattr(p.base, k)}")
    need(p.sft.max_length >= 1, "sft.max_length", f"must be >= 1, got {p.sft.max_length}")
    seeds = {"seed": p.seed, "generate.seed": p.generate.seed, "split.seed": p.split.seed,
             "base.prior.seed": p.base.prior.seed, "base.seed": p.base.seed}
    for k, v in seeds.items():
        need(0 <= v < 2**32, k, f"must be in [0, 2**32), got {v}")
    need(p.base.hidden_size == p.base.num_attention_heads * p.base.head_dim, "base.head_dim",
         "hidden_size must equal num_attention_heads * head_dim")
    need(p.base.num_attention_heads % p.base.num_key_value_heads == 0, "base.num_key_value_heads",
         "must divide num_attention_heads")
    for section in ("base", "sft", "grpo"):
        s = getattr(p, section)
        need(s.lr > 0, f"{section}.lr", f"must be positive, got {s.lr}")
        need(s.num_train_epochs > 0, f"{section}.num_train_epochs", f"must be positive, got {s.num_train_epochs}")
        for k in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            need(getattr(s, k) >= 1, f"{section}.{k}", f"must be >= 1, got {getattr(s, k)}")
        need(s.warmup_steps >= 0, f"{section}.warmup_steps", "must be >= 0")
    for section in ("sft", "grpo"):
        s = getattr(p, section)
        need(s.lora.r >= 1, f"{section}.lora.r", f"must be >= 1, got {s.lora.r}")
        need(s.lora.alpha >= 1, f"{section}.lora.alpha", f"must be >= 1, got {s.lora.alpha}")
        need(0.0 <= s.lora.dropout < 1.0, f"{section}.lora.dropout", "must be in [0, 1)")
        need(s.logging_steps >= 1, f"{section}.logging_steps", "must be >= 1")
        need(s.save_steps >= 1, f"{section}.save_steps", "must be >= 1")
        need(s.val_steps >= 1, f"{section}.val_steps", "must be >= 1")
    g = p.grpo
    need(g.num_generations >= 2, "grpo.num_generations",
         f"must be >= 2 (GRPO compares completions within a group), got {g.num_generations}")
    # TRL: generation_batch_size = per_device_train_batch_size * gradient_accumulation_steps (one process)
    # and must be divisible by num_generations.
    gen_batch = g.per_device_train_batch_size * g.gradient_accumulation_steps
    need(gen_batch % g.num_generations == 0, "grpo.num_generations",
         f"per_device_train_batch_size * gradient_accumulation_steps = {g.per_device_train_batch_size} * "
         f"{g.gradient_accumulation_steps} = {gen_batch} completions per step must be divisible by "
         f"num_generations = {g.num_generations}; change one of these three values")
    need(g.max_completion_length >= 1, "grpo.max_completion_length", "must be >= 1")
    need(0.0 <= g.stop_vip_accuracy <= 1.0, "grpo.stop_vip_accuracy",
         f"must be in [0, 1] (0 = never stop early), got {g.stop_vip_accuracy}")
    need(g.stop_evals >= 1, "grpo.stop_evals", f"must be >= 1, got {g.stop_evals}")
    need(g.temperature > 0, "grpo.temperature", "must be positive")
    need(g.beta >= 0, "grpo.beta", "must be >= 0")
    need(p.eval.max_new_tokens >= 1, "eval.max_new_tokens", "must be >= 1")
    need(p.eval.batch_size >= 1, "eval.batch_size", "must be >= 1")
    need(p.eval.temperature > 0, "eval.temperature", "must be positive")
    need(p.launch.num_processes >= 1, "launch.num_processes", f"must be >= 1, got {p.launch.num_processes}")
    if p.launch.accelerate_config:
        need(Path(p.launch.accelerate_config).is_file(), "launch.accelerate_config",
             f"{p.launch.accelerate_config!r} is not a file (see configs/accelerate/)")
    need(not (g.share_prompt_prefix and g.gradient_checkpointing), "grpo.share_prompt_prefix",
         "needs grpo.gradient_checkpointing: false (with checkpointing the model keeps no key/value cache "
         "to share); set one of them to false")
    need(0.0 < g.vllm_gpu_memory_utilization < 1.0, "grpo.vllm_gpu_memory_utilization", "must be in (0, 1)")
    if g.use_vllm:
        need(p.model.source == "hub", "grpo.use_vllm", "needs a GPU profile (model.source: hub)")
