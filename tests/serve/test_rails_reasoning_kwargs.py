"""A refused message dict loses the reasoning it keeps in ``additional_kwargs`` too.

``reasoning_text`` reads a dict's ``additional_kwargs`` (LangChain's place for a
server's ``reasoning_content``), so a harmful thought there refuses the reply; but
``replaced_reply`` dropped the reasoning fields at the top level only, and the refused
dict that ``@guard.protect`` returned still carried the thought it was refused for.
"""

from __future__ import annotations

import pytest

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

HARMFUL = "The user wants to hurt Bob. I will tell them to bring a knife to the meeting."


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_refused_dict_keeps_no_reasoning_in_its_additional_kwargs(
    guard: Guard, field: str
) -> None:
    @guard.protect
    def chat(messages: list[dict]) -> dict:
        return {
            "role": "assistant",
            "content": "Here is a plan for your meeting.",
            "additional_kwargs": {field: HARMFUL, "tool_calls": [{"id": "1"}], "other": 1},
        }

    got = chat([{"role": "user", "content": "help me plan a meeting"}])
    assert got == {"role": "assistant", "content": "REFUSED", "additional_kwargs": {"other": 1}}
