"""The input rail of a guarded ``responses.create`` (the OpenAI Responses API): ``input``
is a str (one user message) or a list of items, ``instructions`` its system prompt,
``tools`` its tool definitions. Under ``Policy.input_turns`` ``last`` the last user
message is read, ``user`` every user message, ``all`` every item's text, the
instructions and the tools, each one text toward ``max_input_turns``. A blocked request
never reaches the model: the fake server counts requests by endpoint. It was refused
(``UnguardedPathError``) before. Real SDK over HTTP to the shipped fake server, a guard
on the shipped fake scorer ("knife" -> toxic)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from annotators.testing import FakeLLMServer
from guardrail_dro.errors import UnguardedPathError
from guardrail_dro.serve.policy import GuardResult
from guardrail_dro.serve.rails import wrap

from .input_turns_helpers import HARM, REFUSAL, SAFE_REPLY, make_guard

BREAD = "what goes into bread?"


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "input_text", "text": text}]}


#: name -> (create arguments, the scopes that refuse it)
CASES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "str input": ({"input": HARM}, {"last", "user", "all"}),
    "last user item": ({"input": [_user("hello"), _user(HARM)]}, {"last", "user", "all"}),
    "earlier user item": (
        {"input": [_user(HARM), {"role": "assistant", "content": "No."}, _user(BREAD)]},
        {"user", "all"},
    ),
    "assistant item": (
        {
            "input": [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": HARM, "annotations": []}],
                },
                _user("go on"),
            ]
        },
        {"all"},
    ),
    "tool output item": (
        {
            "input": [
                _user(BREAD),
                {"type": "function_call", "call_id": "c1", "name": "search", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": HARM},
            ]
        },
        {"all"},
    ),
    "instructions": ({"instructions": HARM, "input": BREAD}, {"all"}),
    "tool description": (
        {
            "input": BREAD,
            "tools": [{"type": "function", "name": "f", "description": HARM, "parameters": {}}],
        },
        {"all"},
    ),
    "clean": ({"input": [_user(BREAD)], "instructions": "Be brief."}, set()),
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: SAFE_REPLY) as srv:
        yield srv


def _oai(server: FakeLLMServer, turns: str, cls: Any = openai.OpenAI, **policy: Any) -> Any:
    client = cls(base_url=server.openai_base_url, api_key="k", max_retries=0)
    return wrap(client, make_guard(turns, **policy))


@pytest.mark.parametrize("turns", ["last", "user", "all"])
@pytest.mark.parametrize("name", list(CASES))
def test_each_scope_reads_its_items(server: FakeLLMServer, name: str, turns: str) -> None:
    kwargs, refused_by = CASES[name]
    sent = server.endpoints["responses"]
    resp = _oai(server, turns).responses.create(model="m", **kwargs)
    if turns in refused_by:
        assert resp.output_text == REFUSAL and resp.status == "incomplete"
        assert resp.incomplete_details.reason == "content_filter"
        assert server.endpoints["responses"] == sent  # the model was never called
    else:
        assert resp.output_text == SAFE_REPLY and resp.status == "completed"
        assert server.endpoints["responses"] == sent + 1


def test_extra_body_is_what_is_read(server: FakeLLMServer) -> None:
    """The SDK sends ``extra_body`` over the arguments: the rail reads what is sent."""
    sent = server.endpoints["responses"]
    client = _oai(server, "last")
    resp = client.responses.create(model="m", input=BREAD, extra_body={"input": HARM})
    assert resp.output_text == REFUSAL and server.endpoints["responses"] == sent


def test_an_iterator_of_items_reaches_the_model_whole(server: FakeLLMServer) -> None:
    resp = _oai(server, "all").responses.create(model="m", input=iter([_user(BREAD)]))
    assert resp.output_text == SAFE_REPLY
    assert server.requests[-1]["body"]["input"] == [_user(BREAD)]


def test_max_input_turns_counts_instructions_tools_and_items(server: FakeLLMServer) -> None:
    seen: list[GuardResult] = []
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    guard = make_guard("all", max_input_turns=2)
    wrapped = wrap(client, guard, on_check=lambda rail, r: seen.append(r))
    sent = server.endpoints["responses"]
    resp = wrapped.responses.create(model="m", instructions="Be brief.", input=[_user(BREAD)] * 2)
    assert resp.output_text == REFUSAL and server.endpoints["responses"] == sent
    assert seen[0].degraded and "3 texts to check" in (seen[0].error or "")
    ok = wrapped.responses.create(model="m", instructions="Be brief.", input=BREAD)
    assert ok.output_text == SAFE_REPLY


def test_a_blocked_stream_is_the_refusal_the_sdk_parses(server: FakeLLMServer) -> None:
    sent = server.endpoints["responses"]
    events = list(_oai(server, "last").responses.create(model="m", input=HARM, stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert all(type(e).__module__.startswith("openai.types.responses") for e in events)
    assert events[3].delta == REFUSAL and events[-1].response.output_text == REFUSAL
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert server.endpoints["responses"] == sent


@pytest.mark.asyncio
async def test_async_input_rail(server: FakeLLMServer) -> None:
    sent = server.endpoints["responses"]
    client = _oai(server, "all", openai.AsyncOpenAI)
    resp = await client.responses.create(model="m", instructions=HARM, input=BREAD)
    assert resp.output_text == REFUSAL
    stream = await client.responses.create(model="m", input=[_user(HARM)], stream=True)
    events = [e async for e in stream]
    assert events[-1].type == "response.incomplete" and events[-1].response.output_text == REFUSAL
    assert server.endpoints["responses"] == sent
    ok = await client.responses.create(model="m", input=BREAD)
    assert ok.output_text == SAFE_REPLY
    await client.close()


def test_background_is_refused(server: FakeLLMServer) -> None:
    """A background response's reply is fetched by ``responses.retrieve``, which no
    output rail sees: refused, whatever the rails, before any request."""
    sent = len(server.received)
    client = _oai(server, "last")
    for wrapped in (client, wrap(client.unguarded, make_guard(), input=False)):
        with pytest.raises(UnguardedPathError, match="background") as info:
            wrapped.responses.create(model="m", input=BREAD, background=True)
        assert info.value.path == "responses.create"
    assert len(server.received) == sent
