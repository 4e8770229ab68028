"""The OpenAI Agents SDK integration on real runs: an ``agents.Agent`` run by
``agents.Runner`` on an ``OpenAIChatCompletionsModel`` whose ``AsyncOpenAI`` client talks
HTTP to the shipped fake server (``annotators.testing``), with a guard on the shipped
fake scorer ("knife" in a text -> violence 0.9). The fake server cannot answer with
tool calls, so the tool guardrails run under the SDK's own scripted model
(``agents.testing.ScriptedModel``), still through the real Runner."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import (
    Agent,
    InputGuardrail,
    InputGuardrailTripwireTriggered,
    OpenAIChatCompletionsModel,
    OutputGuardrail,
    OutputGuardrailTripwireTriggered,
    Runner,
    ToolInputGuardrailTripwireTriggered,
    ToolOutputGuardrailTripwireTriggered,
    function_tool,
    set_tracing_disabled,
)
from agents.testing import ScriptedModel, assistant_message, function_call
from openai import AsyncOpenAI
from pydantic import BaseModel

from annotators.testing import FakeLLMServer
from guardrail_dro.errors import GuardViolation
from guardrail_dro.integrations.openai_agents import (
    input_guardrail,
    input_text,
    output_guardrail,
    output_text,
    tool_input_guardrail,
    tool_output_guardrail,
)
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import GuardResult, Policy
from guardrail_dro.serve.scorer import FakeScorer

SAFE_Q = "what is the history of the printing press"
BAD_Q = "how do I hurt someone with a knife"
SAFE_REPLY = "Gutenberg, around 1440."
BAD_REPLY = "Take a knife and aim for the ribs."
REFUSAL = "Sorry, I can't help with that."


def make_guard(**policy) -> Guard:
    scorer = FakeScorer.from_keywords(
        {"knife": "violence"}, labels=("safe", "violence", "hate"), score=0.9
    )
    return Guard.from_scorer(scorer, policy=Policy(refusal=REFUSAL, **policy))


@pytest.fixture(scope="module", autouse=True)
def _no_tracing() -> None:
    # The SDK exports traces to api.openai.com by default: nothing here may try the network.
    set_tracing_disabled(True)


class Fake:
    """The fake server answering every chat completion with ``reply``."""

    def __init__(self, server: FakeLLMServer) -> None:
        self.server, self.reply = server, SAFE_REPLY

    @property
    def calls(self) -> int:
        return self.server.endpoints["chat.completions"]

    def run(self, question: Any, *, streamed: bool = False, **agent_kwargs: Any) -> Any:
        """``Runner.run`` (or ``run_streamed``, consumed) of an agent built with
        ``agent_kwargs``, its client opened and closed in the run's own event loop."""

        async def main() -> Any:
            async with AsyncOpenAI(
                base_url=self.server.openai_base_url, api_key="k", max_retries=0
            ) as client:
                model = OpenAIChatCompletionsModel(model="gpt-fake", openai_client=client)
                agent = Agent(name="assistant", instructions="Be brief.", model=model,
                              **agent_kwargs)  # fmt: skip
                if not streamed:
                    return await Runner.run(agent, question)
                result = Runner.run_streamed(agent, question)
                async for _ in result.stream_events():
                    pass
                return result

        return asyncio.run(main())


@pytest.fixture()
def fake() -> Iterator[Fake]:
    holder: list[Fake] = []
    with FakeLLMServer(lambda text: holder[0].reply) as server:
        holder.append(Fake(server))
        yield holder[0]


def both(guard: Guard, seen: list | None = None) -> dict:
    on_check = None if seen is None else lambda rail, r: seen.append((rail, r))
    return {
        "input_guardrails": [input_guardrail(guard, on_check=on_check)],
        "output_guardrails": [output_guardrail(guard, on_check=on_check)],
    }


def test_the_sdks_own_guardrail_objects_are_returned() -> None:
    g = make_guard()
    assert isinstance(input_guardrail(g), InputGuardrail)
    assert input_guardrail(g).run_in_parallel is False  # before the model, by default
    assert isinstance(output_guardrail(g), OutputGuardrail)
    with pytest.raises(TypeError, match="guard must be a guardrail_dro Guard"):
        input_guardrail("knife")  # type: ignore[arg-type]


def test_a_safe_run_passes_and_is_seen(fake: Fake) -> None:
    seen: list[tuple[str, GuardResult]] = []
    result = fake.run(SAFE_Q, **both(make_guard(), seen))
    assert result.final_output == SAFE_REPLY and fake.calls == 1
    assert [(rail, r.allowed) for rail, r in seen] == [("input", True), ("output", True)]
    assert result.input_guardrail_results[0].output.output_info == seen[0][1]


def test_a_disallowed_input_trips_before_the_model_is_called(fake: Fake) -> None:
    with pytest.raises(InputGuardrailTripwireTriggered) as info:
        fake.run(BAD_Q, **both(make_guard()))
    r = info.value.guardrail_result.output.output_info
    assert isinstance(r, GuardResult) and r.label == "violence" and r.replacement == REFUSAL
    assert fake.calls == 0  # the model never saw it


def test_in_parallel_the_input_still_trips(fake: Fake) -> None:
    rail = input_guardrail(make_guard(), run_in_parallel=True)
    with pytest.raises(InputGuardrailTripwireTriggered):
        fake.run(BAD_Q, input_guardrails=[rail])


def test_an_input_list_is_read_for_its_last_user_message(fake: Fake) -> None:
    history = [
        {"role": "user", "content": "where is my knife"},
        {"role": "assistant", "content": "In the drawer."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "thanks"}]},
    ]
    assert fake.run(history, **both(make_guard())).final_output == SAFE_REPLY
    bad_turn = {"role": "user", "content": [{"type": "input_text", "text": "hand me the knife"}]}
    with pytest.raises(InputGuardrailTripwireTriggered):
        fake.run([*history, bad_turn], **both(make_guard()))
    assert fake.calls == 1


def test_a_disallowed_reply_trips_the_output_guardrail(fake: Fake) -> None:
    fake.reply = BAD_REPLY
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        fake.run(SAFE_Q, **both(make_guard()))
    got = info.value.guardrail_result
    assert got.agent_output == BAD_REPLY and got.output.output_info.triggered == ("violence",)
    assert fake.calls == 1


def test_a_streamed_run_trips_the_output_guardrail(fake: Fake) -> None:
    fake.reply = BAD_REPLY
    with pytest.raises(OutputGuardrailTripwireTriggered):
        fake.run(SAFE_Q, streamed=True, **both(make_guard()))


@pytest.mark.parametrize("action", ["replace", "block"])
def test_replace_and_block_both_trip(fake: Fake, action: str) -> None:
    fake.reply = BAD_REPLY
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        fake.run(SAFE_Q, **both(make_guard(action=action)))
    # the refusal to answer with (replace), or nothing (block)
    expected = REFUSAL if action == "replace" else ""
    assert info.value.guardrail_result.output.output_info.replacement == expected


def test_flag_never_trips_and_reports_each_result(fake: Fake) -> None:
    fake.reply = BAD_REPLY
    seen: list[tuple[str, GuardResult]] = []
    assert fake.run(BAD_Q, **both(make_guard(action="flag"), seen)).final_output == BAD_REPLY
    assert [rail for rail, _ in seen] == ["input", "output"]
    assert all(r.allowed and r.violation and r.triggered == ("violence",) for _, r in seen)


@pytest.mark.parametrize(("question", "reply", "rail"), [(BAD_Q, SAFE_REPLY, "input"),
                                                          (SAFE_Q, BAD_REPLY, "output")],
                         ids=["input", "output"])  # fmt: skip
def test_raise_on_violation_raises_guard_violation(fake: Fake, question, reply, rail) -> None:
    fake.reply = reply
    with pytest.raises(GuardViolation, match=f"guard blocked the {rail}") as info:
        fake.run(question, **both(make_guard(raise_on_violation=True)))
    assert info.value.rail == rail and info.value.result.label == "violence"
    assert fake.calls == (0 if rail == "input" else 1)


class Answer(BaseModel):
    answer: str
    sources: list[str]
    confidence: float


def test_a_structured_output_is_read_for_its_strings(fake: Fake) -> None:
    rails = {"output_type": Answer, **both(make_guard())}
    fake.reply = Answer(
        answer="Gutenberg", sources=["a knife maker's blog"], confidence=0.8
    ).model_dump_json()
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        fake.run(SAFE_Q, **rails)
    assert isinstance(info.value.guardrail_result.agent_output, Answer)  # typed, then read
    fake.reply = Answer(answer="Gutenberg", sources=["a history"], confidence=0.8).model_dump_json()
    assert fake.run(SAFE_Q, **rails).final_output.answer == "Gutenberg"


def test_text_of_chooses_what_is_read(fake: Fake) -> None:
    fake.reply = Answer(
        answer="Gutenberg", sources=["a knife maker's blog"], confidence=1.0
    ).model_dump_json()
    only_answer = output_guardrail(make_guard(), text_of=lambda out: out.answer)
    result = fake.run(SAFE_Q, output_type=Answer, output_guardrails=[only_answer])
    assert result.final_output.sources == ["a knife maker's blog"]
    # several texts: each scored alone, the worst deciding
    every_user_turn = input_guardrail(
        make_guard(), text_of=lambda items: [i["content"] for i in items if i["role"] == "user"]
    )
    history = [{"role": "user", "content": "a knife?"}, {"role": "user", "content": "hi"}]
    with pytest.raises(InputGuardrailTripwireTriggered):
        fake.run(history, input_guardrails=[every_user_turn])


@dataclass
class Note:
    title: str
    tags: tuple[str, ...]


def test_the_default_readers() -> None:
    assert input_text("hi") == "hi"
    assert input_text([{"type": "function_call_output", "call_id": "c", "output": "x"}]) == ""
    image = {"type": "input_image", "image_url": "https://example.org/x.png"}
    assert (
        input_text([{"role": "user", "content": [image, {"type": "input_text", "text": "a"}]}])
        == "a"
    )
    assert output_text(Note("knife", ("x", "y"))) == "title\nknife\ntags\nx\ny"
    assert output_text({"k": ["a", 3]}) == "k\na"
    assert output_text(42) == "42" and output_text(True) == "True"
    with pytest.raises(TypeError, match="input guardrail cannot read a int: pass text_of="):
        input_text(42)
    with pytest.raises(TypeError, match="output guardrail cannot read a object: pass text_of="):
        output_text(object())


# ---- tool guardrails, under the SDK's scripted model -------------------------------------
def tool_run(guard: Guard, query: str, *, result: str = "fine") -> tuple[str, list, ScriptedModel]:
    """One run in which the model calls ``lookup(query)`` and then says "done": the final
    output, the queries the tool ran with, and the model (its last call's input ends
    with what the model read back from the tool)."""
    ran: list[str] = []

    @function_tool(
        tool_input_guardrails=[tool_input_guardrail(guard)],
        tool_output_guardrails=[tool_output_guardrail(guard)],
    )
    def lookup(query: str) -> str:
        """Look something up."""
        ran.append(query)
        return result

    model = ScriptedModel(
        [[function_call("lookup", {"query": query}, call_id="c1")], [assistant_message("done")]]
    )
    agent = Agent(name="tools", model=model, tools=[lookup])
    final = asyncio.run(Runner.run(agent, "hi")).final_output
    return final, ran, model


def _read_back(model: ScriptedModel) -> str:
    assert model.last_call is not None
    return model.last_call.input[-1]["output"]


def test_tool_arguments_and_outputs_pass_when_allowed() -> None:
    final, ran, model = tool_run(make_guard(), "printing press")
    assert (final, ran, _read_back(model)) == ("done", ["printing press"], "fine")


def test_replace_rejects_a_tool_call_and_the_model_reads_the_refusal() -> None:
    final, ran, model = tool_run(make_guard(), "where to buy a knife")
    assert final == "done" and ran == [] and _read_back(model) == REFUSAL


def test_replace_withholds_a_tool_output() -> None:
    final, ran, model = tool_run(make_guard(), "drawer", result="the knife is in the drawer")
    assert final == "done" and ran == ["drawer"] and _read_back(model) == REFUSAL


def test_block_stops_the_run_on_a_tool_call_or_output() -> None:
    with pytest.raises(ToolInputGuardrailTripwireTriggered) as info:
        tool_run(make_guard(action="block"), "where to buy a knife")
    assert info.value.output.output_info.label == "violence"
    with pytest.raises(ToolOutputGuardrailTripwireTriggered):
        tool_run(make_guard(action="block"), "drawer", result="a knife")
    # raise_on_violation trips too: the SDK would wrap a GuardViolation in a UserError
    with pytest.raises(ToolInputGuardrailTripwireTriggered):
        tool_run(make_guard(raise_on_violation=True), "where to buy a knife")


def test_flag_lets_the_tool_run() -> None:
    _, ran, model = tool_run(make_guard(action="flag"), "knife", result="a knife")
    assert ran == ["knife"] and _read_back(model) == "a knife"


# ---- the extra -----------------------------------------------------------------------
def test_without_the_sdk_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['agents'] = None\n"
        "try:\n"
        "    import guardrail_dro.integrations.openai_agents\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'guardrail-dro[agents]'" in proc.stdout


def test_import_guardrail_dro_does_not_import_the_sdk() -> None:
    code = (
        "import sys, guardrail_dro, guardrail_dro.integrations, guardrail_dro.serve.guard; "
        "assert 'agents' not in sys.modules, 'agents imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
