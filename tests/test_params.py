"""params.load_params: the committed file loads; every mistake is a ParamsError naming the dotted key.

Also: the committed params.yaml is exactly the Hydra composition of conf/ with the default profile
(what DVC writes when hydra is enabled), so `dvc repro` and `dvc exp run -S ...` agree.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fincorp.params import ParamsError, load_params, to_dict


def test_committed_params_load(repo_root):
    p = load_params(repo_root / "params.yaml")
    assert p.profile == "cpu"
    assert p.generate.n == 800 and p.generate.n % 4 == 0
    assert 0 < p.split.test_fraction < 1
    assert p.base.prior.seed != p.generate.seed
    assert isinstance(p.sft.lr, float) and isinstance(p.grpo.lr, float)
    assert isinstance(p.sft.lora.target_modules, tuple)
    g = p.grpo
    assert (g.per_device_train_batch_size * g.gradient_accumulation_steps) % g.num_generations == 0


def test_params_are_frozen(repo_root):
    p = load_params(repo_root / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.sft.lr = 1.0  # type: ignore[misc]


def test_to_dict_round_trips_the_file(repo_root, committed_params):
    assert to_dict(load_params(repo_root / "params.yaml")) == committed_params


@pytest.mark.parametrize(("text", "expected"), [("2e-5", 2e-5), ("2.0e-05", 2e-5), ("1e-3", 1e-3), ("3", 3.0)])
def test_scientific_notation_is_a_float(repo_root, tmp_path, text, expected):
    src = (repo_root / "params.yaml").read_text(encoding="utf-8")
    old = "sft:\n  lr: 0.003\n"
    assert src.count(old) == 1
    path = tmp_path / "params.yaml"
    path.write_text(src.replace(old, f"sft:\n  lr: {text}\n"), encoding="utf-8")
    p = load_params(path)
    assert type(p.sft.lr) is float
    assert p.sft.lr == expected


# (changes, deleted keys, text the message must contain)
ERRORS = {
    "unknown top-level key": ({"learning_rate": 0.1}, [], "unknown key learning_rate"),
    "unknown nested key": ({"sft.lora.rank": 8}, [], "unknown key sft.lora.rank"),
    "unknown key in section": ({"grpo.kl_coef": 0.1}, [], "unknown key grpo.kl_coef"),
    "missing top-level key": ({}, ["seed"], "missing key seed"),
    "missing section": ({}, ["eval"], "missing key eval"),
    "missing nested key": ({}, ["sft.lora.r"], "missing key sft.lora.r"),
    "missing key in section": ({}, ["grpo.lr"], "missing key grpo.lr"),
    "section not a mapping": ({"generate": 5}, [], "generate: expected a mapping"),
    "lr not a number": ({"sft.lr": "abc"}, [], "sft.lr: expected a number, got 'abc'"),
    "n a float": ({"generate.n": 8.5}, [], "generate.n: expected an integer, got 8.5"),
    "bool for int": ({"generate.n": True}, [], "generate.n: expected an integer, got True"),
    "bool for int (nested)": ({"sft.lora.r": False}, [], "sft.lora.r: expected an integer"),
    "bool for float": ({"grpo.lr": True}, [], "grpo.lr: expected a number"),
    "int for bool": ({"eval.do_sample": 1}, [], "eval.do_sample: expected true or false"),
    "string for bool": ({"sft.bf16": "yes"}, [], "sft.bf16: expected true or false"),
    "int for string": ({"model.name": 7}, [], "model.name: expected a string"),
    "literal out of range": ({"grpo.reward": "foo"}, [],
                             "grpo.reward: 'foo' is not allowed; use one of: exact, scripts, partial"),
    "literal burn_display": ({"prompt.burn_display": "percent"}, [],
                             "prompt.burn_display: 'percent' is not allowed; use one of: pct, usd"),
    "literal scheduler": ({"sft.lr_scheduler_type": "Cosine"}, [], "sft.lr_scheduler_type: 'Cosine' is not allowed"),
    "literal loss_type": ({"grpo.loss_type": "ppo"}, [], "grpo.loss_type: 'ppo' is not allowed"),
    "target_modules empty": ({"sft.lora.target_modules": []}, [], "sft.lora.target_modules: expected a non-empty list"),
    "target_modules a string": ({"grpo.lora.target_modules": "q_proj"}, [], "grpo.lora.target_modules"),
    "n not multiple of 4": ({"generate.n": 802}, [], "generate.n: must be a positive multiple of 4"),
    "n zero": ({"generate.n": 0}, [], "generate.n: must be a positive multiple of 4"),
    "n negative": ({"generate.n": -4}, [], "generate.n: must be a positive multiple of 4"),
    "near share > 1": ({"generate.near_threshold_share": 1.5}, [], "generate.near_threshold_share"),
    "near share < 0": ({"generate.near_threshold_share": -0.1}, [], "generate.near_threshold_share"),
    "test_fraction 0": ({"split.test_fraction": 0}, [], "split.test_fraction: must be strictly between 0 and 1"),
    "test_fraction 1": ({"split.test_fraction": 1}, [], "split.test_fraction: must be strictly between 0 and 1"),
    "test_fraction 1.5": ({"split.test_fraction": 1.5}, [], "split.test_fraction: must be strictly between 0 and 1"),
    "test_fraction too small for n": ({"generate.n": 8, "split.test_fraction": 0.1}, [],
                                      "split.test_fraction: leaves fewer"),
    "negative batch size": ({"sft.per_device_train_batch_size": -1}, [],
                            "sft.per_device_train_batch_size: must be >= 1"),
    "zero grad accumulation": ({"grpo.gradient_accumulation_steps": 0}, [],
                               "grpo.gradient_accumulation_steps: must be >= 1"),
    "negative base batch": ({"base.per_device_train_batch_size": -16}, [], "base.per_device_train_batch_size"),
    "negative lr": ({"grpo.lr": -1e-5}, [], "grpo.lr: must be positive"),
    "zero epochs": ({"sft.num_train_epochs": 0}, [], "sft.num_train_epochs: must be positive"),
    "negative warmup": ({"base.warmup_steps": -1}, [], "base.warmup_steps: must be >= 0"),
    "lora r zero": ({"grpo.lora.r": 0}, [], "grpo.lora.r: must be >= 1"),
    "lora dropout 1": ({"sft.lora.dropout": 1.0}, [], "sft.lora.dropout"),
    "negative max_completion_length": ({"grpo.max_completion_length": -16}, [], "grpo.max_completion_length"),
    "zero eval batch": ({"eval.batch_size": 0}, [], "eval.batch_size"),
    "negative max_new_tokens": ({"eval.max_new_tokens": -1}, [], "eval.max_new_tokens"),
    "negative prior n": ({"base.prior.n": -3}, [], "base.prior.n"),
    "prior n not multiple of 3": ({"base.prior.n": 6001}, [], "base.prior.n"),
    "negative label noise": ({"base.prior.label_noise": -0.1}, [], "base.prior.label_noise: must be in [0, 1)"),
    "all rows escalate": ({"base.prior.manual_review_share": 1.0}, [], "base.prior.manual_review_share: must be in"),
    "noise + escalate >= 1": ({"base.prior.label_noise": 0.5, "base.prior.manual_review_share": 0.5}, [],
                              "base.prior.label_noise + base.prior.manual_review_share must be < 1"),
    "zero logging steps": ({"sft.logging_steps": 0}, [], "sft.logging_steps"),
    "negative save steps": ({"grpo.save_steps": -5}, [], "grpo.save_steps"),
    "grpo batch not divisible": ({"grpo.num_generations": 6}, [],
                                 "per_device_train_batch_size * gradient_accumulation_steps = 64 * 1 = 64"),
    "grpo batch not divisible (batch side)": ({"grpo.per_device_train_batch_size": 3}, [], "grpo.num_generations"),
    "grpo one generation": ({"grpo.num_generations": 1}, [], "grpo.num_generations: must be >= 2"),
    "grpo zero temperature": ({"grpo.temperature": 0}, [], "grpo.temperature"),
    "grpo negative beta": ({"grpo.beta": -0.1}, [], "grpo.beta"),
    "prior seed == generate seed": ({"base.prior.seed": 20251201}, [],
                                    "base.prior.seed: must differ from generate.seed"),
    "heads * head_dim != hidden": ({"base.head_dim": 16}, [], "base.head_dim"),
    "kv heads do not divide heads": ({"base.num_key_value_heads": 3}, [], "base.num_key_value_heads"),
    "local model with a name": ({"model.name": "Qwen/Qwen3-14B"}, [], "model.name: must be empty"),
    "hub model without a name": ({"model.source": "hub"}, [], "model.name: must name"),
    "vllm on cpu": ({"grpo.use_vllm": True}, [], "grpo.use_vllm"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_name_the_key(write_params, case):
    changes, delete, message = ERRORS[case]
    path = write_params(changes, delete)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)


def test_unknown_key_lists_the_allowed_keys(write_params):
    with pytest.raises(ParamsError) as e:
        load_params(write_params({"sft.lora.rank": 8}))
    assert "allowed keys in sft.lora: r, alpha, dropout, target_modules" in str(e.value)


# Sizes and seeds that once slipped through params._check (a ZeroDivisionError instead of a
# ParamsError, a seed sklearn rejected only when stage split ran).
UNCHECKED = {
    "vocab_size negative": ({"base.vocab_size": -600}, "base.vocab_size"),
    "intermediate_size negative": ({"base.intermediate_size": -1}, "base.intermediate_size"),
    "num_hidden_layers zero": ({"base.num_hidden_layers": 0}, "base.num_hidden_layers"),
    "base max_length negative": ({"base.max_length": -1}, "base.max_length"),
    "sft max_length zero": ({"sft.max_length": 0}, "sft.max_length"),
    "lora alpha negative": ({"sft.lora.alpha": -1}, "sft.lora.alpha"),
    "heads and head_dim both negative": ({"base.num_attention_heads": -4, "base.head_dim": -32},
                                         "base.num_attention_heads"),
    "kv heads zero (ZeroDivisionError)": ({"base.num_key_value_heads": 0}, "base.num_key_value_heads"),
    "split seed negative (sklearn rejects it later)": ({"split.seed": -1}, "split.seed"),
}


@pytest.mark.parametrize("case", list(UNCHECKED))
def test_unchecked_values_are_errors(write_params, case):
    changes, key = UNCHECKED[case]
    with pytest.raises(ParamsError, match=re.escape(key)):
        load_params(write_params(changes))


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [("- 1\n- 2\n", "expected a mapping at the top level"), ("seed: [1,\n", "cannot be read as YAML")],
)
def test_unreadable_file(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(path)


def test_valid_changes_are_accepted(write_params):
    p = load_params(write_params({"grpo.reward": "scripts", "prompt.burn_display": "usd", "grpo.lr": 5e-6,
                                  "grpo.num_generations": 4, "generate.n": 400}))
    assert (p.grpo.reward, p.prompt.burn_display, p.grpo.lr, p.grpo.num_generations, p.generate.n) == (
        "scripts", "usd", 5e-6, 4, 400)


# ---- Hydra: params.yaml == compose(conf/, default profile) ---------------------------------------

def _compose(repo_root: Path, tmp_path: Path, overrides: list[str]) -> dict:
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "p.yaml"
    compose_and_dump(out, str((repo_root / "conf").resolve()), None, "config", str(repo_root), overrides)
    return OmegaConf.to_container(OmegaConf.load(out), resolve=True)


@pytest.fixture
def compose(repo_root, tmp_path, monkeypatch, dvc_env):
    monkeypatch.chdir(tmp_path)  # Hydra must not need (or write into) the repo's working directory
    return lambda overrides=(): _compose(repo_root, tmp_path, list(overrides))


def test_committed_params_equal_the_hydra_composition(compose, committed_params):
    composed = compose()
    assert composed == committed_params
    assert composed["profile"] == "cpu"


def test_composed_params_load(compose, tmp_path):
    path = tmp_path / "composed.yaml"
    OmegaConf.save(OmegaConf.create(compose()), path)
    assert load_params(path).profile == "cpu"


def test_override_composes_to_a_float(compose, tmp_path, committed_params):
    composed = compose(["grpo.lr=5e-6"])
    assert composed["grpo"]["lr"] == 5e-06 and type(composed["grpo"]["lr"]) is float
    expected = {**committed_params, "grpo": {**committed_params["grpo"], "lr": 5e-06}}
    assert composed == expected
    path = tmp_path / "override.yaml"
    OmegaConf.save(OmegaConf.create(composed), path)
    assert load_params(path).grpo.lr == 5e-06
