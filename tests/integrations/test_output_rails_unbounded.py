"""``Policy.max_input_turns`` bounds the input rail only: an output (or tool) rail of
the LangChain and OpenAI Agents SDK integrations whose ``text_of`` gives more texts
than that scores them all, as before the bound (it was refused under
``on_error="closed"``, its error naming ``max_input_turns`` and ``input_turns=last``).
Real runnables and guardrail objects, a guard on the shipped fake scorer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("agents")

from guardrail_dro.errors import GuardViolation
from guardrail_dro.integrations.langchain import output_rail
from guardrail_dro.integrations.openai_agents import output_guardrail
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import GuardResult, Policy
from guardrail_dro.serve.scorer import FakeScorer

#: A reply read as one text a sentence, more sentences than the bound of 4.
SENTENCES = ["Mix the flour.", "Add water.", "Knead it.", "Let it rise.", "Bake it."]


def make_guard(**policy: Any) -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "violence"}, labels=("safe", "violence"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(max_input_turns=4, **policy))


def _sentences(value: Any) -> list[str]:
    return [s + "." for s in str(value).split(".") if s.strip()]


def test_a_langchain_output_rail_scores_every_text_its_text_of_gives() -> None:
    reply = " ".join(SENTENCES)
    seen: list[tuple[str, GuardResult]] = []
    rail = output_rail(make_guard(), text_of=_sentences, on_check=lambda *a: seen.append(a))
    assert rail.invoke(reply) == reply
    assert asyncio.run(rail.ainvoke(reply)) == reply
    assert [(name, r.allowed, r.degraded) for name, r in seen] == [("output", True, False)] * 2
    with pytest.raises(GuardViolation) as info:  # still scored: the harmful one decides
        output_rail(make_guard(raise_on_violation=True), text_of=_sentences).invoke(
            reply + " Then the knife."
        )
    assert not info.value.result.degraded and info.value.result.label == "violence"


def test_an_agents_output_guardrail_scores_every_text_its_text_of_gives() -> None:
    seen: list[tuple[str, GuardResult]] = []
    check = output_guardrail(
        make_guard(), text_of=lambda out: list(out), on_check=lambda *a: seen.append(a)
    )
    out = asyncio.run(check.guardrail_function(None, None, SENTENCES))  # type: ignore[arg-type]
    assert not out.tripwire_triggered
    assert [(name, r.allowed, r.degraded) for name, r in seen] == [("output", True, False)]
