"""The one definition of "correct": the answer parser, the scorer, and the GRPO rewards built on them.

parse_decision(text) -> label or None. The model must produce exactly one JSON object whose
"decision" is exactly one of the four labels. Decisions on awkward outputs:
  - surrounding whitespace             stripped
  - a markdown code fence around it    removed (```json ... ``` or ``` ... ```)
  - a leading <think>...</think> block removed whether empty or not (Qwen3 emits an empty one with
                                       thinking off); an unclosed <think> is invalid
  - several JSON objects, or text      invalid (no guessing which one the model meant)
    around the object
  - a duplicated key                   invalid (which value would count is ambiguous)
  - other keys beside "decision"       allowed: the decision is still exactly one label
  - a list of labels, a non-string     invalid
  - a lowercase or padded label        invalid (exact match: " A_PLUS_TIER" and "a_plus_tier" are wrong)
  - plain text, empty output           invalid
Invalid counts as wrong everywhere (eval and rewards).

Reward presets (grpo.reward): exact (+1/-1), scripts (the published scripts' shaped reward), partial
(credit for the right decision family and for a valid label; see FAMILY below).
Rewards use TRL's signature `f(prompts, completions, label, **kwargs) -> list[float]`, the gold label
arriving as a dataset column, and are importable by dotted path (fincorp.scoring.exact_reward).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fincorp.rules import A_PLUS_TIER, LABELS, MANUAL_REVIEW, REJECT_RISK, STANDARD_LOAN

INVALID = "INVALID"  # how an output that is not exactly one valid decision is counted and shown

_FENCE = re.compile(r"\A```[A-Za-z]*\s*\n?(.*?)\n?\s*```\Z", re.DOTALL)
_THINK = re.compile(r"\A<think>.*?</think>", re.DOTALL)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def parse_decision(text: str) -> str | None:
    """The label the model decided, or None if the output is not exactly one valid decision."""
    if not isinstance(text, str):
        return None
    s = text.strip()
    if s.startswith("<think>"):
        m = _THINK.match(s)
        if m is None:
            return None
        s = s[m.end():].strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    if not s.startswith("{"):
        return None
    try:
        obj = json.loads(s, object_pairs_hook=_no_duplicates)
    except ValueError:  # JSONDecodeError, trailing data (several objects), duplicate keys
        return None
    if not isinstance(obj, dict):
        return None
    decision = obj.get("decision")
    return decision if isinstance(decision, str) and decision in LABELS else None


def is_correct(text: str, label: str) -> bool:
    return parse_decision(text) == label


def completion_text(completion: Any) -> str:
    """TRL hands completions as text, or (conversational) as a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")


def exact_reward(prompts: list, completions: list, label: list[str], correct: float = 1.0,
                 wrong: float = -1.0, **kwargs: Any) -> list[float]:
    """Preset `exact`: `correct` if the parsed decision equals the gold label, else `wrong` (invalid too)."""
    return [correct if is_correct(completion_text(c), gold) else wrong for c, gold in zip(completions, label)]


# The published scripts' shaped reward (../shared/SEED-NOTES.md), component by component.
SCRIPTS_THINK_PENALTY = -20.0  # "<think>" anywhere in the output
SCRIPTS_FORMAT_OK = 2.0  # output starts with "{"
SCRIPTS_FORMAT_BAD = -10.0  # it does not
SCRIPTS_CORRECT = 50.0
SCRIPTS_WRONG = -20.0  # wrong or invalid
SCRIPTS_CRITICAL = -30.0  # extra, for MANUAL_REVIEW->REJECT_RISK and REJECT_RISK->A_PLUS_TIER
SCRIPTS_UNPARSABLE = -10.0  # extra, when the output is not a parsable decision
CRITICAL_CONFUSIONS = {(MANUAL_REVIEW, REJECT_RISK), (REJECT_RISK, A_PLUS_TIER)}  # (gold, predicted)


def scripts_reward_one(text: str, gold: str) -> float:
    s = text.strip()
    pred = parse_decision(text)
    reward = SCRIPTS_THINK_PENALTY if "<think>" in text else 0.0
    reward += SCRIPTS_FORMAT_OK if s.startswith("{") else SCRIPTS_FORMAT_BAD
    if pred is None:
        reward += SCRIPTS_UNPARSABLE
    reward += SCRIPTS_CORRECT if pred == gold else SCRIPTS_WRONG
    if (gold, pred) in CRITICAL_CONFUSIONS:
        reward += SCRIPTS_CRITICAL
    return reward


def scripts_reward(prompts: list, completions: list, label: list[str], **kwargs: Any) -> list[float]:
    """Preset `scripts`: the published scripts' shaped reward (format, correctness, critical confusions)."""
    return [scripts_reward_one(completion_text(c), gold) for c, gold in zip(completions, label)]


# Preset `partial`: partial credit, so that a group of all-wrong answers can still differ in reward.
# Families: what the decision does with the application (approve it, decline it, or escalate it).
FAMILY = {A_PLUS_TIER: "approve", STANDARD_LOAN: "approve", REJECT_RISK: "decline", MANUAL_REVIEW: "escalate"}
PARTIAL_CORRECT = 1.0  # the right label
PARTIAL_FAMILY = 0.5  # a valid decision from the right family (A_PLUS_TIER for STANDARD_LOAN, and back)
PARTIAL_VALID = 0.0  # any other valid decision: the format is right
PARTIAL_INVALID = -1.0  # not exactly one valid decision


def partial_reward_one(text: str, gold: str) -> float:
    pred = parse_decision(text)
    if pred is None:
        return PARTIAL_INVALID
    if pred == gold:
        return PARTIAL_CORRECT
    return PARTIAL_FAMILY if FAMILY[pred] == FAMILY[gold] else PARTIAL_VALID


def partial_reward(prompts: list, completions: list, label: list[str], **kwargs: Any) -> list[float]:
    """Preset `partial`: 1 right label, 0.5 right family, 0 other valid label, -1 invalid output."""
    return [partial_reward_one(completion_text(c), gold) for c, gold in zip(completions, label)]
