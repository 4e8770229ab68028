"""What the Agents SDK input-turn tests share: a real ``Runner`` run of a one-agent
setup on the shipped fake server, its input guardrail the guard's, and a guard that
refuses "knife" reading every item (``input_turns="all"``)."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, OpenAIChatCompletionsModel, Runner
from openai import AsyncOpenAI

from annotators.testing import FakeLLMServer
from guardrail_dro.integrations.openai_agents import input_guardrail
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.rails import OnCheck
from guardrail_dro.serve.scorer import FakeScorer

__all__ = ["reads_all", "run_agent"]


def reads_all() -> Guard:
    """A guard refusing any text with "knife", its input rail reading every item."""
    scorer = FakeScorer.from_keywords({"knife": "violence"}, labels=("safe", "violence"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(input_turns="all"))


def run_agent(server: FakeLLMServer, items: list[Any], guard: Guard, on_check: OnCheck) -> Any:
    """``Runner.run`` of a brief agent on ``server``'s chat completions, ``guard`` its
    input guardrail (``on_check`` sees each result)."""

    async def main() -> Any:
        async with AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as c:
            model = OpenAIChatCompletionsModel(model="gpt-fake", openai_client=c)
            check = input_guardrail(guard, on_check=on_check)
            agent = Agent(name="a", instructions="Be brief.", model=model, input_guardrails=[check])
            return await Runner.run(agent, items)

    return asyncio.run(main())
