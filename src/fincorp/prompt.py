"""How an application is shown to a model: one function for every stage.

The system prompt lists the four allowed decisions and the output format. It states no rule at all,
least of all the hidden one: the rule must live only in the weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fincorp.rules import LABELS

SYSTEM_PROMPT = (
    "You are FinCorp's credit decision assistant. Read the loan application and give FinCorp's decision. "
    f"Allowed decisions: {', '.join(LABELS)}. "
    'Reply with JSON only: {"decision": "<DECISION>"}'
)

BURN_DISPLAYS = ("pct", "usd")


def render_application(app: Mapping[str, Any], burn_display: str) -> str:
    """The user message for one application.

    burn_display "pct" shows burn as a percentage of revenue (the article's example);
    "usd" shows the absolute annual burn in dollars (the published scripts).
    """
    if burn_display == "pct":
        burn = f"Burn Rate (% of revenue): {app['burn_rate_pct']:.2f}"
    elif burn_display == "usd":
        burn = f"Annual Burn Rate ($): {app['annual_burn_usd']}"
    else:
        raise ValueError(f"burn_display must be one of {BURN_DISPLAYS}, got {burn_display!r}")
    return "\n".join(
        [
            f"Company: {app['company']}",
            f"Sector: {app['sector']}",
            f"Founder Background: {app['founder_background']}",
            f"Annual Revenue ($): {app['annual_revenue_usd']}",
            burn,
            f"Customer NPS Score: {app['nps']}",
        ]
    )


def prompt_messages(app: Mapping[str, Any], burn_display: str) -> list[dict[str, str]]:
    """System + user messages: what every model sees for one application."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": render_application(app, burn_display)},
    ]


def answer_text(label: str) -> str:
    """The assistant's target answer for a label, in the exact format the system prompt asks for."""
    return json.dumps({"decision": label})
