"""Stage base: the tokenizer, the chat template, the prior corpus, the built model, the hub path."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from fincorp.base import build_tokenizer, prior_corpus
from fincorp.params import ParamsError, load_params
from fincorp.prompt import answer_text, prompt_messages
from fincorp.rules import LABELS, MANUAL_REVIEW, prior_decide


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(400, "pct")


@pytest.mark.parametrize("text", [
    "Annual Revenue ($): 10000000",
    "Burn Rate (% of revenue): 80.01",
    "Customer NPS Score: -7",
    '{"decision": "MANUAL_REVIEW"}',
    *LABELS,
    "Founder Background: Ex-Google",
])
def test_tokenizer_round_trip(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_one_token_per_digit(tokenizer):
    pieces = tokenizer.tokenize("1234567890")
    assert len(pieces) == 10
    assert [tokenizer.convert_tokens_to_string([p]) for p in pieces] == list("1234567890")


def test_chat_template_generation_prompt_and_assistant_mask(tokenizer):
    app = {"company": "Blue Peak Labs", "sector": "SaaS", "founder_background": "Ex-Apple",
           "annual_revenue_usd": 1_000_000, "annual_burn_usd": 500_000, "burn_rate_pct": 50.0, "nps": 12}
    prompt = prompt_messages(app, "pct")
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>assistant\n")
    no_gen = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=False)
    assert not no_gen.endswith("<|im_start|>assistant\n")
    answer = answer_text("STANDARD_LOAN")
    out = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=True,
                                        return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assistant = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert assistant == answer + "<|im_end|>"
    assert tokenizer.decode([i for i, m in zip(ids, mask) if not m]).startswith("<|im_start|>system")


def test_prior_corpus_is_balanced_never_manual_review_and_follows_the_prior():
    rows = prior_corpus(300, 7, 0.25, 70.0, 90)
    counts = Counter(r["label"] for r in rows)
    assert counts == {"REJECT_RISK": 100, "A_PLUS_TIER": 100, "STANDARD_LOAN": 100}
    assert MANUAL_REVIEW not in counts
    assert all(r["label"] == prior_decide(r, 70.0, 90) for r in rows)
    assert all(r["id"].startswith("PRE-") for r in rows)
    # VIP founders are in the prior's world too, judged on their financials.
    assert any(r["founder_background"] in ("Ex-Google", "Ex-Facebook") for r in rows)
    assert prior_corpus(300, 7, 0.25, 70.0, 90) == rows


def test_prior_corpus_rejects_unbalanceable_size():
    with pytest.raises(ValueError, match="multiple of 3"):
        prior_corpus(100, 7, 0.25, 70.0, 90)


def test_unknown_model_source_is_a_params_error(write_params):
    with pytest.raises(ParamsError, match=r"model\.source: 'gcs' is not allowed; use one of: local, hub"):
        load_params(write_params({"model.source": "gcs"}))


@pytest.mark.slow
def test_built_base_loads_offline_from_its_folder(tiny_workspace, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_workspace / "models/base"
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.config.model_type == "qwen3"
    assert tok.eos_token == "<|im_end|>"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["source"] == "local"
    assert meta["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["versions"]["trl"].startswith("0.27.")
    assert meta["params"]["hidden_size"] == 32
    assert not {"wall_time_s", "peak_memory_mib", "hardware"} & set(meta)  # telemetry, not a DVC output


def _hub_params(write_params, folder: str, revision: str = "") -> Path:
    return write_params({"model.source": "hub", "model.name": folder, "model.revision": revision,
                         "model.dtype": "float32"})


def _snapshot(tiny_workspace: Path, tmp_path: Path, commit: str) -> Path:
    """A copy of the tiny base laid out like an HF cache snapshot (…/snapshots/<commit>/)."""
    snap = tmp_path / "hub/models--acme--tiny/snapshots" / commit
    shutil.copytree(tiny_workspace / "models/base", snap, ignore=shutil.ignore_patterns("meta.json"))
    return snap


@pytest.mark.slow
def test_hub_path_resolves_a_local_snapshot_without_copying_weights(tiny_workspace, tmp_path, write_params):
    from fincorp import base
    from fincorp.model import load_base_model

    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = _snapshot(tiny_workspace, tmp_path, commit)
    params = _hub_params(write_params, str(snap), commit)
    out = tmp_path / "models/base"
    out.parent.mkdir()
    base.run(str(params), str(out))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resolved_commit"] == commit
    assert meta["path"] == str(snap.resolve())
    assert meta["num_parameters"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["meta.json"]  # no weights in the DVC output
    model = load_base_model(load_params(params).model, out)
    assert model.config.model_type == "qwen3"


@pytest.mark.slow
def test_hub_revision_mismatch_is_a_clear_error(tiny_workspace, tmp_path, write_params):
    from fincorp import base

    snap = _snapshot(tiny_workspace, tmp_path, "a" * 40)
    (tmp_path / "models").mkdir()
    with pytest.raises(FileNotFoundError, match="does not match the local folder"):
        base.run(str(_hub_params(write_params, str(snap), "b" * 40)), str(tmp_path / "models/base"))
    assert not (tmp_path / "models/base").exists()


def test_hub_missing_folder_is_a_clear_error(tmp_path, write_params):
    from fincorp import base

    (tmp_path / "models").mkdir()
    with pytest.raises(FileNotFoundError, match="no such folder, and not a hub id"):
        base.run(str(_hub_params(write_params, str(tmp_path / "nowhere"))), str(tmp_path / "models/base"))


def test_eval_before_base_is_built_is_a_clear_error(tmp_path):
    from fincorp.model import read_meta

    with pytest.raises(FileNotFoundError, match="build the base model first"):
        read_meta(tmp_path / "models/base")


def test_prior_knobs_at_zero_give_the_clean_corpus():
    assert prior_corpus(300, 7, 0.25, 70.0, 90, 0.0, 0.0) == prior_corpus(300, 7, 0.25, 70.0, 90)


def test_prior_knobs_relabel_rows_and_keep_the_applications():
    clean = prior_corpus(3000, 7, 0.25, 70.0, 90)
    mr = prior_corpus(3000, 7, 0.25, 70.0, 90, manual_review_share=0.2)
    noisy = prior_corpus(3000, 7, 0.25, 70.0, 90, label_noise=0.4)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "label"} for r in rows]  # noqa: E731
    assert strip(mr) == strip(clean) == strip(noisy)
    share_mr = sum(r["label"] == MANUAL_REVIEW for r in mr) / len(mr)
    assert 0.17 < share_mr < 0.23
    assert all(r["label"] in (MANUAL_REVIEW, c["label"]) for r, c in zip(mr, clean))
    # A random label among the four: 3/4 of the noisy rows change, a quarter of those to MANUAL_REVIEW.
    changed = sum(r["label"] != c["label"] for r, c in zip(noisy, clean)) / len(noisy)
    assert 0.26 < changed < 0.34
    assert 0.07 < sum(r["label"] == MANUAL_REVIEW for r in noisy) / len(noisy) < 0.13
    assert prior_corpus(3000, 7, 0.25, 70.0, 90, label_noise=0.4) == noisy  # seeded


def test_vip_manual_review_share_escalates_vip_founders_only():
    """The positive control's prior: a share of VIP-founder rows says MANUAL_REVIEW, no other row changes."""
    from fincorp.rules import VIP_BACKGROUNDS

    clean = prior_corpus(3000, 7, 0.25, 70.0, 90)
    assert prior_corpus(3000, 7, 0.25, 70.0, 90, vip_manual_review_share=0.0) == clean
    vip = prior_corpus(3000, 7, 0.25, 70.0, 90, vip_manual_review_share=0.5)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "label"} for r in rows]  # noqa: E731
    assert strip(vip) == strip(clean)
    is_vip = [c["founder_background"] in VIP_BACKGROUNDS for c in clean]
    assert sum(is_vip) > 200  # the prior sees VIP founders
    assert all(r == c for r, c, v in zip(vip, clean, is_vip) if not v)
    escalated = [r["label"] == MANUAL_REVIEW for r, v in zip(vip, is_vip) if v]
    assert 0.4 < sum(escalated) / len(escalated) < 0.6
    assert all(r["label"] in (MANUAL_REVIEW, c["label"]) for r, c in zip(vip, clean))
    assert prior_corpus(3000, 7, 0.25, 70.0, 90, vip_manual_review_share=0.5) == vip  # seeded
