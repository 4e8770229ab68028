"""Review mends for the guarded ``responses.create``: the input rail reads an MCP tool's
``server_description``, a namespace's tools and a ``prompt`` template's variables (they
reached the model unchecked), and a stream's items whose text is not in the text deltas
(an MCP call's output, code interpreter code) are held and checked whole at their
``output_item.done`` (they reached the caller unchecked, while the non-stream reply
read them). Input: the real openai SDK over HTTP to the fake server; streams: the
SDK's own event types through ``guard_stream`` (the fake server sends no such items)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types import responses as types
from pydantic import TypeAdapter

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.rails import wrap
from guardrail_dro.serve.rails.responses import ResponsesEvents
from guardrail_dro.serve.rails.streams import guard_stream

from .input_turns_helpers import HARM, REFUSAL, SAFE_REPLY, make_guard

BREAD = "how do I bake bread"
MCP = {"type": "mcp", "server_label": "s", "server_url": "https://s.example"}
FUNCTION = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: SAFE_REPLY) as srv:
        yield srv


def _oai(server: FakeLLMServer, turns: str) -> Any:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    return wrap(client, make_guard(turns))


@pytest.mark.parametrize(
    "tool",
    [
        {**MCP, "server_description": HARM},
        {"type": "namespace", "name": "n", "description": "d", "tools": [
            {**FUNCTION, "description": HARM}]},
        {"type": "namespace", "name": "n", "description": "d", "tools": [
            {**FUNCTION, "parameters": {"type": "object", "description": HARM}}]},
    ],
)  # fmt: skip
def test_responses_tools_are_read_under_all(server: FakeLLMServer, tool: dict) -> None:
    sent = server.endpoints["responses"]
    resp = _oai(server, "all").responses.create(model="m", input=BREAD, tools=[tool])
    assert resp.output_text == REFUSAL and server.endpoints["responses"] == sent
    clean = {**MCP, "server_description": "Recipes."}
    ok = _oai(server, "all").responses.create(model="m", input=BREAD, tools=[clean])
    assert ok.output_text == SAFE_REPLY


@pytest.mark.parametrize("turns", ["last", "user", "all"])
@pytest.mark.parametrize("value", [HARM, {"type": "input_text", "text": HARM}])
def test_prompt_variables_are_read(server: FakeLLMServer, turns: str, value: Any) -> None:
    """A template's variables are the caller's words: read under every scope."""
    sent = server.endpoints["responses"]
    client = _oai(server, turns)
    prompt = {"id": "pmpt_1", "variables": {"q": value}}
    resp = client.responses.create(model="m", input=BREAD, prompt=prompt)
    assert resp.output_text == REFUSAL and server.endpoints["responses"] == sent
    clean = {"id": "pmpt_1", "variables": {"q": BREAD}}
    assert client.responses.create(model="m", prompt=clean).output_text == SAFE_REPLY
    with pytest.raises(TypeError, match="variables"):
        client.responses.create(model="m", prompt={"id": "p", "variables": [HARM]})


def _stream(*item_events: dict[str, Any]) -> list[Any]:
    """A stream's events as the SDK parses them: created, ``item_events``, a clean
    message, completed."""
    base = {"id": "resp_1", "object": "response", "created_at": 0, "model": "m", "output": [],
            "status": "in_progress", "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": []}  # fmt: skip
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": SAFE_REPLY, "annotations": []}]}  # fmt: skip
    at = {"item_id": "msg_1", "output_index": 1, "content_index": 0, "logprobs": []}
    events = [
        {"type": "response.created", "response": base},
        *item_events,
        {"type": "response.output_item.added", "output_index": 1, "item": {**msg, "content": []}},
        {"type": "response.output_text.delta", **at, "delta": SAFE_REPLY},
        {"type": "response.output_item.done", "output_index": 1, "item": msg},
        {"type": "response.completed", "response": {**base, "status": "completed"}},
    ]
    return [
        TypeAdapter(types.ResponseStreamEvent).validate_python({**e, "sequence_number": n})
        for n, e in enumerate(events)
    ]


def _item(item: dict[str, Any], *between: dict[str, Any]) -> list[dict[str, Any]]:
    added = {**item, **{k: None for k in ("output", "code") if k in item}}
    return [
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        *between,
        {"type": "response.output_item.done", "output_index": 0, "item": item},
    ]


MCP_CALL = {"id": "mcp_1", "type": "mcp_call", "server_label": "s", "name": "lookup",
            "arguments": "{}", "output": HARM, "status": "completed"}  # fmt: skip
CODE = {"id": "ci_1", "type": "code_interpreter_call", "container_id": "c", "code": HARM,
        "outputs": None, "status": "completed"}  # fmt: skip
CODE_DELTA = {"type": "response.code_interpreter_call_code.delta", "item_id": "ci_1",
              "output_index": 0, "delta": HARM}  # fmt: skip


@pytest.mark.parametrize(
    "items", [_item(MCP_CALL), _item(CODE, CODE_DELTA)], ids=["mcp_output", "code_delta"]
)
def test_a_stream_item_outside_the_text_deltas_is_checked(items: list[dict]) -> None:
    guard = make_guard("last")
    out = list(guard_stream(guard, _stream(*items), ResponsesEvents(), None, lambda: None))
    shown = [e.model_dump_json() for e in out]
    assert not any("knife" in s for s in shown)
    assert out[-1].type == "response.incomplete" and out[-1].response.output_text == REFUSAL
    seqs = [e.sequence_number for e in out]
    assert seqs == sorted(set(seqs))
    clean = [{**e, "item": {**e["item"], "output": "Flour."}} for e in _item(MCP_CALL)]
    ok = list(guard_stream(guard, _stream(*clean), ResponsesEvents(), None, lambda: None))
    assert ok[-1].type == "response.completed" and len(ok) == 7


def test_a_held_item_the_stream_ends_in_is_checked_on_what_came() -> None:
    """An upstream that ends mid-item (no ``output_item.done``, no ``completed``): the
    code deltas that came are checked, not released unread."""
    events = _stream(*_item(CODE, CODE_DELTA))[:3]  # created, added, the code delta
    guard = make_guard("last")
    out = list(guard_stream(guard, events, ResponsesEvents(), None, lambda: None))
    assert not any("knife" in e.model_dump_json() for e in out)
    assert out[-1].type == "response.incomplete"


def test_stream_in_extra_body_is_refused(server: FakeLLMServer) -> None:
    """``extra_body={"stream": True}`` made the server stream while the SDK, told no
    stream, returned the raw SSE text: a chat reply reached the caller unchecked, a
    Responses one crashed the output rail. Refused before any request."""
    sent = len(server.received)
    client = _oai(server, "last")
    chat = {"messages": [{"role": "user", "content": BREAD}]}
    calls = [(client.chat.completions.create, chat), (client.responses.create, {"input": BREAD})]
    for create, kwargs in calls:
        for stream, extra in ((False, True), (True, False)):
            with pytest.raises(TypeError, match="extra_body"):
                create(model="m", stream=stream, extra_body={"stream": extra}, **kwargs)
        ok = create(model="m", stream=False, extra_body={"stream": False}, **kwargs)
        assert ok is not None
    assert len(server.received) == sent + 2
