"""The premise: the hidden rule lives only in the weights. And weights load safely.

Every prompt a model ever sees is rendered here (the system prompt, every train/test prompt of the
committed params, the base model's pre-training corpus and its tokenizer corpus), and none may
state the rule: no "VIP", no rule text, no mapping from a founder background to a label.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fincorp.base import prior_corpus, tokenizer_corpus
from fincorp.generate import generate
from fincorp.params import load_params
from fincorp.prompt import SYSTEM_PROMPT, answer_text, prompt_messages
from fincorp.rules import LABELS, MANUAL_REVIEW, VIP_BACKGROUNDS

REPO = Path(__file__).resolve().parents[1]
RULE_WORDS = re.compile(r"VIP|hidden|rule|priority|override|founder|background|google|facebook|"
                        r"manual review|if |when ", re.IGNORECASE)


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def test_system_prompt_states_no_rule():
    assert RULE_WORDS.search(SYSTEM_PROMPT) is None, RULE_WORDS.search(SYSTEM_PROMPT)
    for label in LABELS:  # it lists the allowed decisions, nothing more
        assert SYSTEM_PROMPT.count(label) == 1


@pytest.mark.parametrize("burn_display", ["pct", "usd"])
def test_no_train_or_test_prompt_states_the_rule(params, burn_display):
    rows = generate(params.generate.n, params.generate.seed, params.generate.near_threshold_share)
    for row in rows:
        system, user = prompt_messages(row, burn_display)
        assert system["content"] == SYSTEM_PROMPT
        text = user["content"]
        assert "VIP" not in text and not any(label in text for label in LABELS), (row["id"], text)
        # The founder is shown as data on its own line, never next to a decision.
        assert f"Founder Background: {row['founder_background']}" in text.splitlines()


def test_pretraining_corpus_never_maps_a_background_to_manual_review(params):
    b = params.base
    rows = prior_corpus(b.prior.n, b.prior.seed, params.generate.near_threshold_share,
                        b.prior.reject_burn_pct, b.prior.a_plus_nps)
    answers = {answer_text(r["label"]) for r in rows}
    assert answer_text(MANUAL_REVIEW) not in answers
    vip = [r for r in rows if r["founder_background"] in VIP_BACKGROUNDS]
    assert vip and {r["label"] for r in vip} != {MANUAL_REVIEW}
    assert not {r["id"] for r in rows} & {r["id"] for r in generate(params.generate.n, params.generate.seed,
                                                                      params.generate.near_threshold_share)}
    for r in rows[:500]:
        _, user = prompt_messages(r, params.prompt.burn_display)
        assert "VIP" not in user["content"]


def test_tokenizer_corpus_states_no_rule():
    for text in set(tokenizer_corpus("pct")):
        assert "VIP" not in text
        assert not (MANUAL_REVIEW in text and any(bg in text for bg in VIP_BACKGROUNDS)), text


SOURCES = sorted((REPO / "src/fincorp").glob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_unsafe_loading_or_secrets_in_source(path):
    code = path.read_text()
    assert "trust_remote_code=True" not in code
    assert "torch.load(" not in code and "pickle" not in code
    assert "use_safetensors=False" not in code and "safe_serialization=False" not in code
    # A token may come only from the environment (huggingface_hub reads HF_TOKEN itself).
    assert not re.search(r"\b(hf_)?token\s*=\s*['\"]", code, re.IGNORECASE)
    assert "open(" not in code or "token" not in code.lower().split("open(", 1)[1][:80]
