"""Guard an OpenAI Agents SDK agent, and its tool, with guardrail-dro guardrails.

    python examples/openai_agents_guard.py [--guard GUARD_DIR] [--threshold 0.5]

The agent carries the guard as the SDK's own ``input_guardrails`` / ``output_guardrails``;
a function tool carries it as ``tool_input_guardrails`` / ``tool_output_guardrails``.
Without ``--guard`` a demo guard on the shipped fake scorer flags texts that mention a
knife; with ``--guard`` it loads an exported guard (``guardrail-dro export --model MODEL
--out GUARD_DIR``).

It runs offline, with no key: the agent's model is a real ``OpenAIChatCompletionsModel``
whose ``AsyncOpenAI`` client talks HTTP to the shipped fake server
(``annotators.testing.FakeLLMServer``), and tracing is off (the SDK would export traces to
api.openai.com). The fake server answers only with text, never with tool calls, so the
tool's runs use the SDK's scripted model (``agents.testing.ScriptedModel``) to make the
calls a real model would make; the Runner and the guardrails are the real ones.

With a real model, drop the fake server and give the agent a model name::

    export OPENAI_API_KEY=sk-...
    agent = Agent(name="assistant", model="gpt-4.1-mini", tools=[lookup],
                  input_guardrails=[input_guardrail(guard)],
                  output_guardrails=[output_guardrail(guard)])

(keep ``set_tracing_disabled(True)`` only if you do not want traces on platform.openai.com).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from agents import (
    Agent,
    InputGuardrailTripwireTriggered,
    OpenAIChatCompletionsModel,
    OutputGuardrailTripwireTriggered,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.testing import ScriptedModel, assistant_message, function_call
from openai import AsyncOpenAI

from annotators.testing import FakeLLMServer
from guardrail_dro.integrations.openai_agents import (
    input_guardrail,
    output_guardrail,
    tool_input_guardrail,
    tool_output_guardrail,
)
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Action, GuardResult, Policy
from guardrail_dro.serve.scorer import FakeScorer

QUESTIONS = [
    "What is the history of the printing press?",
    "How do I hurt someone with a knife?",
    "Which tool do I need to open a paint tin?",
]
# What the fake server's model answers, in order, to the questions that reach it (the
# second never does: the input guardrail stops it before the model).
REPLIES = [
    "Gutenberg built a movable-type press around 1440.",
    "Any knife will do: push it under the lid and lever it open.",
]
# The tool's runs: the query the scripted model passes to ``lookup``, and what it returns.
TOOL_RUNS = [
    ("printing press", "Gutenberg, Mainz, around 1440."),
    ("where to buy a knife", "(never run: the tool input guardrail rejects the call)"),
    ("kitchen drawer", "The knife is in the kitchen drawer."),
]


def demo_guard(policy: Policy) -> Guard:
    scorer = FakeScorer.from_keywords(
        {"knife": "violence"}, labels=("safe", "violence", "hate"), score=0.9
    )
    return Guard.from_scorer(scorer, policy=policy)


def log(rail: str, r: GuardResult) -> None:
    print(f"  {rail:<11} {r.action:<7} {r.label_name or r.label} (toxic {r.toxic_score:.2f})")


async def ask(agent: Agent, question: str) -> None:
    """One run; a tripped agent guardrail stops it, and the caller answers the refusal
    (the SDK cannot swap an agent's input or final output, so ``replace`` stops the run
    as ``block`` does; the GuardResult is the guardrail's ``output_info``)."""
    print(f"Q: {question}")
    try:
        result = await Runner.run(agent, question)
    except InputGuardrailTripwireTriggered as exc:
        r = exc.guardrail_result.output.output_info
        print(f"A: {r.replacement}  [input tripped: {r.label_name or r.label}]")
    except OutputGuardrailTripwireTriggered as exc:
        r = exc.guardrail_result.output.output_info
        print(f"A: {r.replacement}  [output tripped: {r.label_name or r.label}]")
    else:
        print(f"A: {result.final_output}")


async def tool_run(guard: Guard, query: str, returns: str) -> None:
    """A run in which the model calls ``lookup(query)`` and then answers: ``replace``
    rejects a bad call (the tool does not run) or withholds a bad output, and the model
    reads the refusal instead; the run goes on."""
    ran: list[str] = []

    @function_tool(
        tool_input_guardrails=[tool_input_guardrail(guard, on_check=log)],
        tool_output_guardrails=[tool_output_guardrail(guard, on_check=log)],
    )
    def lookup(query: str) -> str:
        """Look something up in the household notes."""
        ran.append(query)
        return returns

    model = ScriptedModel(
        [[function_call("lookup", {"query": query}, call_id="c1")], [assistant_message("ok")]]
    )
    agent = Agent(name="tools", model=model, tools=[lookup])
    await Runner.run(agent, f"Look up: {query}")
    assert model.last_call is not None
    read_back = model.last_call.input[-1]["output"]  # the tool result the model was given
    print(f"lookup({query!r}): {'ran' if ran else 'not run'}; the model read: {read_back}")


async def main_async(guard: Guard) -> None:
    replies = iter(REPLIES)
    # The fake server's handler (request text -> reply): the next scripted reply.
    with FakeLLMServer(lambda text: next(replies, "I don't know.")) as server:
        # max_retries=0: a demo against a local server has nothing to retry.
        async with AsyncOpenAI(
            base_url=server.openai_base_url, api_key="no-key-needed", max_retries=0
        ) as client:
            agent = Agent(
                name="assistant",
                instructions="Answer in one sentence.",
                model=OpenAIChatCompletionsModel(model="gpt-fake", openai_client=client),
                input_guardrails=[input_guardrail(guard, on_check=log)],
                output_guardrails=[output_guardrail(guard, on_check=log)],
            )
            print("agent (input and output guardrails):")
            for question in QUESTIONS:
                await ask(agent, question)
    print("tool (tool input and tool output guardrails):")
    for query, returns in TOOL_RUNS:
        await tool_run(guard, query, returns)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard", type=Path, default=None, help="An exported guard directory.")
    ap.add_argument("--threshold", type=float, default=None, help="Toxic threshold override.")
    args = ap.parse_args(argv)

    set_tracing_disabled(True)
    policy = Policy(action=Action.REPLACE, toxic_threshold=args.threshold)
    guard = Guard.load(args.guard, policy=policy) if args.guard else demo_guard(policy)
    asyncio.run(main_async(guard))


if __name__ == "__main__":
    main()
