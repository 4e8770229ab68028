"""Edge inputs of the OpenAI Agents SDK integration, on real runs of the SDK's
``Runner`` under its own scripted model (``agents.testing.ScriptedModel``), with a guard
on the shipped fake scorer ("knife" in a text -> violence 0.9)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("agents")

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from guardrail_dro.integrations.openai_agents import output_text, tool_output_guardrail
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer


@pytest.fixture(scope="module", autouse=True)
def _no_tracing() -> None:
    set_tracing_disabled(True)  # the SDK exports traces to api.openai.com by default


def make_guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "violence"}, labels=("safe", "violence"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="no"))


def test_a_tool_that_returns_nothing_passes_its_output_guardrail() -> None:
    # A tool run for its effect (README's send_email) returns None: there is no text to
    # check. The guardrail's TypeError made the SDK fail the whole run with a UserError.
    sent: list[str] = []

    @function_tool(tool_output_guardrails=[tool_output_guardrail(make_guard())])
    def send_email(to: str) -> None:
        """Send an email."""
        sent.append(to)

    model = ScriptedModel(
        [[function_call("send_email", {"to": "a@b.c"}, call_id="c1")], [assistant_message("sent")]]
    )
    agent = Agent(name="mailer", model=model, tools=[send_email])
    assert asyncio.run(Runner.run(agent, "mail a@b.c")).final_output == "sent"
    assert sent == ["a@b.c"]
    assert output_text(None) == ""
