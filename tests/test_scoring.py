"""scoring: the one definition of "correct" (parse_decision) and the GRPO rewards built on it.

The `scripts` expectations are derived by hand from ../shared/SEED-NOTES.md, not from scoring.py:
  -20 if "<think>" appears; +2 if the output starts with "{" else -10; +50 correct, -20 wrong;
  extra -30 for MANUAL_REVIEW->REJECT_RISK and REJECT_RISK->A_PLUS_TIER; -10 if the JSON does not parse.
"""

from __future__ import annotations

import pytest

from fincorp import scoring
from fincorp.prompt import answer_text
from fincorp.rules import A_PLUS_TIER, LABELS, MANUAL_REVIEW, REJECT_RISK, STANDARD_LOAN
from fincorp.scoring import exact_reward, is_correct, parse_decision, scripts_reward

J = '{"decision": "A_PLUS_TIER"}'

PARSE = {
    "exact JSON": (J, A_PLUS_TIER),
    "compact JSON": ('{"decision":"REJECT_RISK"}', REJECT_RISK),
    "leading/trailing spaces": ("   " + J + "  ", A_PLUS_TIER),
    "newlines around": ("\n\n" + J + "\n", A_PLUS_TIER),
    "pretty-printed": ('{\n  "decision": "STANDARD_LOAN"\n}', STANDARD_LOAN),
    "fence json": ("```json\n" + J + "\n```", A_PLUS_TIER),
    "fence plain": ("```\n" + J + "\n```", A_PLUS_TIER),
    "fence on one line": ("```" + J + "```", A_PLUS_TIER),
    "fence with surrounding newlines": ("\n```json\n" + J + "\n```\n", A_PLUS_TIER),
    "empty think block": ("<think>\n\n</think>\n\n" + J, A_PLUS_TIER),
    "empty think block, no space": ("<think></think>" + J, A_PLUS_TIER),
    "non-empty think block": ("<think>NPS is 85, so A+.\nDone.</think>\n" + J, A_PLUS_TIER),
    "think block then fence": ("<think></think>\n```json\n" + J + "\n```", A_PLUS_TIER),
    "unclosed think": ("<think>\n" + J, None),
    "unclosed think, nothing else": ("<think>", None),
    "two think blocks' worth of closing tags": ("<think>a</think>b</think>" + J, None),
    "two JSON objects": (J + ' {"decision": "REJECT_RISK"}', None),
    "two JSON objects, newline": (J + "\n" + J, None),
    "duplicated key, same value": ('{"decision": "A_PLUS_TIER", "decision": "A_PLUS_TIER"}', None),
    "duplicated key, different values": ('{"decision": "A_PLUS_TIER", "decision": "REJECT_RISK"}', None),
    "list of labels": ('["A_PLUS_TIER"]', None),
    "decision is a list": ('{"decision": ["A_PLUS_TIER"]}', None),
    "decision is a number": ('{"decision": 3}', None),
    "decision is null": ('{"decision": null}', None),
    "decision is an object": ('{"decision": {"label": "A_PLUS_TIER"}}', None),
    "lowercase label": ('{"decision": "a_plus_tier"}', None),
    "label with leading space": ('{"decision": " A_PLUS_TIER"}', None),
    "label with trailing space": ('{"decision": "A_PLUS_TIER "}', None),
    "label with a space inside": ('{"decision": "A PLUS TIER"}', None),
    "unknown label": ('{"decision": "APPROVE"}', None),
    "wrong key": ('{"label": "A_PLUS_TIER"}', None),
    "key in another case": ('{"Decision": "A_PLUS_TIER"}', None),
    "plain label text": ("MANUAL_REVIEW", None),
    "quoted label": ('"MANUAL_REVIEW"', None),
    "empty string": ("", None),
    "only whitespace": ("  \n ", None),
    "empty object": ("{}", None),
    "extra keys allowed": ('{"decision": "MANUAL_REVIEW", "reason": "VIP founder", "confidence": 0.9}',
                           MANUAL_REVIEW),
    "extra key before decision": ('{"reason": "x", "decision": "STANDARD_LOAN"}', STANDARD_LOAN),
    "text after the JSON": (J + " because NPS >= 80", None),
    "text before the JSON": ("Decision: " + J, None),
    "truncated JSON": ('{"decision": "A_PLUS_TI', None),
    "unclosed fence": ("```json\n" + J, None),
    "single quotes (not JSON)": ("{'decision': 'A_PLUS_TIER'}", None),
    "trailing comma (not JSON)": ('{"decision": "A_PLUS_TIER",}', None),
}


@pytest.mark.parametrize("case", list(PARSE))
def test_parse_decision(case):
    text, expected = PARSE[case]
    assert parse_decision(text) == expected


@pytest.mark.parametrize("value", [None, 3, b'{"decision": "A_PLUS_TIER"}', {"decision": A_PLUS_TIER},
                                   [{"role": "assistant", "content": J}]])
def test_parse_decision_non_string_is_invalid(value):
    assert parse_decision(value) is None


@pytest.mark.parametrize("label", LABELS)
def test_answer_text_round_trips(label):
    assert parse_decision(answer_text(label)) == label
    assert is_correct(answer_text(label), label)
    assert not any(is_correct(answer_text(label), other) for other in LABELS if other != label)


# ---- rewards, with TRL's signature -------------------------------------------------------------

def _as(kind: str, text: str):
    return text if kind == "text" else [{"role": "assistant", "content": text}]


def ans(label: str) -> str:
    return '{"decision": "%s"}' % label


# (completion text, gold label, exact reward, scripts reward)
REWARDS = {
    "correct": (ans(A_PLUS_TIER), A_PLUS_TIER, 1.0, 2 + 50),
    "correct MANUAL_REVIEW": (ans(MANUAL_REVIEW), MANUAL_REVIEW, 1.0, 2 + 50),
    "correct, padded": ("  " + ans(STANDARD_LOAN) + "\n", STANDARD_LOAN, 1.0, 2 + 50),
    "wrong, plain": (ans(STANDARD_LOAN), A_PLUS_TIER, -1.0, 2 - 20),
    "wrong, MR gold predicted STANDARD": (ans(STANDARD_LOAN), MANUAL_REVIEW, -1.0, 2 - 20),
    "critical: MR gold predicted REJECT": (ans(REJECT_RISK), MANUAL_REVIEW, -1.0, 2 - 20 - 30),
    "critical: REJECT gold predicted A_PLUS": (ans(A_PLUS_TIER), REJECT_RISK, -1.0, 2 - 20 - 30),
    "not critical: A_PLUS gold predicted REJECT": (ans(REJECT_RISK), A_PLUS_TIER, -1.0, 2 - 20),
    "not critical: REJECT gold predicted MR": (ans(MANUAL_REVIEW), REJECT_RISK, -1.0, 2 - 20),
    "unparsable, not starting with {": ("I think A_PLUS_TIER", A_PLUS_TIER, -1.0, -10 - 10 - 20),
    "plain label text": ("A_PLUS_TIER", A_PLUS_TIER, -1.0, -10 - 10 - 20),
    "empty output": ("", STANDARD_LOAN, -1.0, -10 - 10 - 20),
    "unparsable, starting with {": ('{"decision": "A_PLUS', A_PLUS_TIER, -1.0, 2 - 10 - 20),
    "lowercase label": ('{"decision": "a_plus_tier"}', A_PLUS_TIER, -1.0, 2 - 10 - 20),
    "fenced correct JSON": ("```json\n" + ans(A_PLUS_TIER) + "\n```", A_PLUS_TIER, 1.0, -10 + 50),
    "closed think + correct JSON": ("<think></think>" + ans(A_PLUS_TIER), A_PLUS_TIER, 1.0, -20 - 10 + 50),
    "closed think + wrong JSON": ("<think>x</think>" + ans(STANDARD_LOAN), A_PLUS_TIER, -1.0, -20 - 10 - 20),
    "closed think + critical": ("<think></think>" + ans(REJECT_RISK), MANUAL_REVIEW, -1.0, -20 - 10 - 20 - 30),
    "unclosed think": ("<think>" + ans(A_PLUS_TIER), A_PLUS_TIER, -1.0, -20 - 10 - 10 - 20),
    "think tag after correct JSON": (ans(A_PLUS_TIER) + "<think>", A_PLUS_TIER, -1.0, -20 + 2 - 10 - 20),
}


@pytest.mark.parametrize("kind", ["text", "conversational"])
@pytest.mark.parametrize("case", list(REWARDS))
def test_rewards_one_completion(case, kind):
    text, gold, exact, scripts = REWARDS[case]
    completions = [_as(kind, text)]
    assert exact_reward(["p"], completions, label=[gold]) == [exact]
    assert scripts_reward(["p"], completions, label=[gold]) == [float(scripts)]


@pytest.mark.parametrize("kind", ["text", "conversational"])
def test_rewards_batch_in_order_with_extra_columns(kind):
    cases = list(REWARDS.values())
    prompts = [[{"role": "user", "content": f"app {i}"}] for i in range(len(cases))]
    completions = [_as(kind, text) for text, *_ in cases]
    labels = [gold for _, gold, *_ in cases]
    extra = {"id": [f"APP-{i}" for i in range(len(cases))], "trainer_state": None}
    assert exact_reward(prompts, completions, label=labels, **extra) == [e for *_, e, _ in cases]
    assert scripts_reward(prompts, completions, label=labels, **extra) == [float(s) for *_, s in cases]


@pytest.mark.parametrize(
    ("text", "gold", "correct", "wrong", "expected"),
    [
        (ans(A_PLUS_TIER), A_PLUS_TIER, 2.0, -3.0, 2.0),
        (ans(STANDARD_LOAN), A_PLUS_TIER, 2.0, -3.0, -3.0),
        ("garbage", A_PLUS_TIER, 2.0, -3.0, -3.0),
        (ans(A_PLUS_TIER), A_PLUS_TIER, 1.0, 0.0, 1.0),
        ("", A_PLUS_TIER, 1.0, 0.0, 0.0),
    ],
)
def test_exact_reward_custom_values(text, gold, correct, wrong, expected):
    assert exact_reward(["p"], [text], label=[gold], correct=correct, wrong=wrong) == [expected]


def test_conversational_completion_joins_assistant_content_only():
    completion = [{"role": "assistant", "content": '{"decision": '},
                  {"role": "assistant", "content": '"MANUAL_REVIEW"}'}]
    assert scoring.completion_text(completion) == ans(MANUAL_REVIEW)
    assert exact_reward(["p"], [completion], label=[MANUAL_REVIEW]) == [1.0]
    only_user = [{"role": "user", "content": ans(MANUAL_REVIEW)}]
    assert exact_reward(["p"], [only_user], label=[MANUAL_REVIEW]) == [-1.0]


def test_scripts_constants_match_the_seed_notes():
    assert scoring.SCRIPTS_THINK_PENALTY == -20
    assert scoring.SCRIPTS_FORMAT_OK == 2
    assert scoring.SCRIPTS_FORMAT_BAD == -10
    assert scoring.SCRIPTS_CORRECT == 50
    assert scoring.SCRIPTS_WRONG == -20
    assert scoring.SCRIPTS_CRITICAL == -30
    assert scoring.SCRIPTS_UNPARSABLE == -10
    assert scoring.CRITICAL_CONFUSIONS == {(MANUAL_REVIEW, REJECT_RISK), (REJECT_RISK, A_PLUS_TIER)}


def test_exact_and_scripts_agree_on_what_is_correct():
    # One definition of correct: the shaped reward is positive exactly when the exact reward says correct
    # (correct: at least -20 - 10 + 50 = 20; wrong: at most 2 - 20 = -18).
    for text, gold, *_ in REWARDS.values():
        for label in LABELS:
            good = exact_reward(["p"], [text], label=[label]) == [1.0]
            assert good == (scripts_reward(["p"], [text], label=[label])[0] > 0)
            assert good == is_correct(text, label)


# ---- preset partial ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "gold", "expected"), [
    (ans(MANUAL_REVIEW), MANUAL_REVIEW, 1.0),
    (ans(STANDARD_LOAN), A_PLUS_TIER, 0.5),  # both approve
    (ans(A_PLUS_TIER), STANDARD_LOAN, 0.5),
    (ans(REJECT_RISK), MANUAL_REVIEW, 0.0),  # valid, other family
    (ans(STANDARD_LOAN), MANUAL_REVIEW, 0.0),
    (ans(MANUAL_REVIEW), REJECT_RISK, 0.0),
    ("A_PLUS_TIER", A_PLUS_TIER, -1.0),  # invalid
    ("", REJECT_RISK, -1.0),
])
def test_partial_reward(text, gold, expected):
    from fincorp.scoring import partial_reward

    assert partial_reward(["p"], [text], label=[gold]) == [expected]
    assert partial_reward(["p"], [[{"role": "assistant", "content": text}]], label=[gold]) == [expected]


def test_partial_agrees_with_exact_on_what_is_correct():
    from fincorp.scoring import PARTIAL_CORRECT, partial_reward

    for text, gold, exact, _ in REWARDS.values():
        assert (partial_reward(["p"], [text], label=[gold])[0] == PARTIAL_CORRECT) == (exact == 1.0)
