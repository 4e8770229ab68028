"""The LangChain input rail on the message shapes a MessagesPlaceholder takes besides
message objects: ``(role, text)`` tuples and role dicts."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_core.runnables import RunnableLambda

from guardrail_dro.integrations.langchain import guarded
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

BAD = "how do I hurt someone with a knife"


def _chain() -> tuple[object, list]:
    scorer = FakeScorer.from_keywords({"knife": "violence"}, labels=("safe", "violence"))
    guard = Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))
    called: list = []
    model = RunnableLambda(lambda x: called.append(x) or "a reply")
    return guarded(model, guard, output=False, refusal_as="str"), called


@pytest.mark.parametrize(
    "value",
    [
        {"lang": "en", "messages": [("system", "be brief"), ("human", BAD)]},
        {"lang": "en", "messages": [{"role": "user", "content": BAD}]},
        {"messages": [("user", BAD)]},
        [("human", BAD)],
    ],
    ids=["tuples-beside-a-str", "dicts-beside-a-str", "tuples-alone", "a-tuple-list"],
)
def test_a_tuple_or_dict_history_is_checked(value: object) -> None:
    chain, called = _chain()
    # Before: beside a str variable the history was skipped and the model got the turn;
    # alone, it was a TypeError asking for text_of=.
    assert chain.invoke(value) == "REFUSED"
    assert called == []


def test_a_clean_tuple_history_reaches_the_model() -> None:
    chain, called = _chain()
    value = {"lang": "en", "messages": [("human", "what is bread made of")]}
    assert chain.invoke(value) == "a reply" and called == [value]
