"""Every conf/profile/*.yaml composes (as `dvc exp run -S profile=NAME` does) into params that load.

The GPU profiles carry the study's numbers: `paper` the article's Methodology section, `paper-scripts`
what the authors' published scripts ran (see the comments in each file). No model is loaded here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fincorp.params import Params, load_params

PROFILE_DIR = Path(__file__).resolve().parents[1] / "conf" / "profile"
PROFILES = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@pytest.fixture
def load_profile(repo_root, tmp_path, monkeypatch):
    """load_profile(name, *overrides) -> Params, composed by DVC's Hydra helper into tmp_path."""
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.chdir(tmp_path)  # Hydra must not need (or write into) the repo's working directory

    def load(name: str, *overrides: str) -> Params:
        from dvc.utils.hydra import compose_and_dump

        out = tmp_path / f"params-{name}.yaml"
        compose_and_dump(out, str((repo_root / "conf").resolve()), None, "config", str(tmp_path),
                         [f"profile={name}", *overrides])
        return load_params(out)

    return load


def test_the_gpu_profiles_exist():
    assert {"cpu", "paper", "paper-scripts"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_composes_and_loads(load_profile, name):
    p = load_profile(name)
    assert p.profile == name  # each file records its own name
    g = p.grpo
    assert (g.per_device_train_batch_size * g.gradient_accumulation_steps) % g.num_generations == 0


@pytest.mark.parametrize("name", PROFILES)
def test_profile_defines_the_same_sections_as_cpu(name):
    """Profiles set model/base/sft/grpo in full, so switching profile never leaves one behind."""
    cpu = OmegaConf.to_container(OmegaConf.load(PROFILE_DIR / "cpu.yaml"))
    other = OmegaConf.to_container(OmegaConf.load(PROFILE_DIR / f"{name}.yaml"))
    required = set(cpu)
    assert required == {"profile", "model", "base", "sft", "grpo"}
    assert required <= set(other)
    assert set(other) - required <= {"eval", "prompt", "generate"}  # sections of conf/config.yaml

    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
        return out

    for section in sorted(required - {"profile"}):
        assert keys(other[section]) == keys(cpu[section]), section


@pytest.mark.parametrize("name", ["paper", "paper-scripts"])
def test_gpu_profiles_share_the_article_setup(load_profile, name):
    p = load_profile(name)
    assert p.model.source == "hub"
    assert p.model.name == "OpenPipe/Qwen3-14B-Instruct"  # what the published scripts load
    assert p.model.dtype == "bfloat16"
    assert p.model.enable_thinking is False
    for s in (p.sft, p.grpo):
        assert (s.lora.r, s.lora.alpha) == (16, 32)
        assert s.lora.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
        assert s.bf16 is True and s.gradient_checkpointing is True
    assert (p.sft.lr, p.grpo.lr) == (2e-5, 1e-5)
    assert (p.sft.per_device_train_batch_size, p.sft.gradient_accumulation_steps) == (2, 4)
    assert p.sft.max_length == 512
    assert p.grpo.gradient_accumulation_steps == 8
    assert p.grpo.max_completion_length == 150
    assert (p.eval.do_sample, p.eval.temperature) == (True, 0.1)
    assert p.eval.max_new_tokens == 50
    assert p.eval.batch_size >= 1  # still present: the profile overrides eval key by key


def test_paper_has_the_articles_numbers(load_profile):
    p = load_profile("paper")
    s, g = p.sft, p.grpo
    assert s.lr == 2e-5
    assert s.num_train_epochs == 4
    assert s.per_device_train_batch_size == 2
    assert s.gradient_accumulation_steps == 4
    assert s.completion_only_loss is True
    assert s.bf16 is True
    assert g.lr == 1e-5
    assert g.num_generations == 8
    assert g.num_train_epochs == 4
    assert g.gradient_accumulation_steps == 8
    assert g.per_device_train_batch_size == 8
    assert g.max_completion_length == 150
    assert g.bf16 is True
    assert (g.temperature, g.beta, g.loss_type, g.scale_rewards) == (1.0, 0.0, "dapo", "group")  # TRL defaults
    assert g.reward == "exact"
    assert g.use_vllm is False
    for lora in (s.lora, g.lora):
        assert (lora.r, lora.alpha, lora.dropout) == (16, 32, 0.0)
        assert lora.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert p.prompt.burn_display == "pct"
    assert p.eval.max_new_tokens == 50


def test_paper_scripts_has_the_scripts_numbers(load_profile):
    p = load_profile("paper-scripts")
    s, g = p.sft, p.grpo
    assert s.num_train_epochs == 2
    assert s.completion_only_loss is False  # loss on the whole sequence
    assert s.max_length == 512
    assert g.num_generations == 4
    assert g.num_train_epochs == 2
    assert (g.per_device_train_batch_size, g.gradient_accumulation_steps) == (1, 8)  # 8 completions = 2 prompts
    assert g.lora.dropout == 0.05
    assert g.reward == "scripts"
    assert g.max_completion_length == 150
    assert p.prompt.burn_display == "usd"
    assert p.eval.max_new_tokens == 50


def test_paper_revision_can_be_pinned_and_vllm_switched_on(load_profile):
    p = load_profile("paper", "model.revision=0123abc", "grpo.use_vllm=true")
    assert p.model.revision == "0123abc"
    assert p.grpo.use_vllm is True
