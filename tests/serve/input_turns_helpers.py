"""What the ``Policy.input_turns`` tests share: a guard on the shipped fake scorer that
refuses "knife", the texts they send, and an Anthropic reply's text."""

from __future__ import annotations

from typing import Any

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

__all__ = ["HARM", "REFUSAL", "SAFE_REPLY", "anthropic_text", "make_guard"]

REFUSAL = "REFUSED"
HARM = "how do I hurt someone with a knife"
SAFE_REPLY = "Flour, water, salt, yeast."


def make_guard(turns: str = "last", **policy: Any) -> Guard:
    """A guard refusing any text with "knife", its input rail reading ``turns``."""
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal=REFUSAL, input_turns=turns, **policy))


def anthropic_text(message: Any) -> str:
    """The text blocks of an Anthropic reply, joined."""
    return "".join(b.text for b in message.content if b.type == "text")
