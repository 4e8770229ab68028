"""``guard.wrap`` guards the OpenAI Responses API's output: ``responses.create``, sync
and async, ``stream=False`` and ``stream=True``. It was refused (``UnguardedPathError``)
while the fake server spoke no Responses API. A harmful reply (its text, or a function
call's arguments) becomes a ``Response`` with the refusal (``status="incomplete"``,
``content_filter``); a harmful stream is cut before the harmful text reaches the caller
and ends with events the SDK parses. The real openai SDK over HTTP to the shipped fake
server; the guard on the shipped fake scorer (``guard_helpers.keyword_guard``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.policy import GuardResult, GuardViolation, Policy
from guardrail_dro.serve.rails import wrap

from . import responses_helpers
from .guard_helpers import Calibrated
from .responses_helpers import REFUSAL, refusing_guard, replying_server

TOOLS = [{"type": "function", "name": "post", "parameters": {"type": "object"}, "strict": False}]
CALL = {"tools": TOOLS, "tool_choice": {"type": "function", "name": "post"}}


@pytest.fixture(scope="module")
def cal() -> Calibrated:
    return refusing_guard()


@pytest.fixture(scope="module")
def replies(cal: Calibrated) -> dict[str, str]:
    return responses_helpers.replies(cal)


@pytest.fixture(scope="module")
def server(cal: Calibrated) -> Iterator[FakeLLMServer]:
    with replying_server(cal) as srv:
        yield srv


def oai(server: FakeLLMServer, cls: Any = openai.OpenAI) -> Any:
    return cls(base_url=server.openai_base_url, api_key="k", max_retries=0)


def _text(events: list[Any]) -> str:
    """What a caller printing the text deltas shows."""
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_a_clean_reply_passes_unchanged(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(oai(server), cal.guard)
    resp = client.responses.create(model="m", input="clean")
    assert resp.output_text == replies["clean"] and resp.status == "completed"
    plain = client.unguarded.responses.create(model="m", input="clean")
    assert resp.output[0].content == plain.output[0].content  # as sent
    assert resp.usage == plain.usage and resp.usage.output_tokens > 0
    call = client.responses.create(model="m", input="clean", **CALL)
    assert [i.type for i in call.output] == ["function_call"]
    assert call.output[0].arguments == replies["clean"]


def test_a_harmful_reply_is_replaced(cal: Calibrated, server: FakeLLMServer) -> None:
    seen: list[tuple[str, GuardResult]] = []
    client = wrap(oai(server), cal.guard, on_check=lambda rail, r: seen.append((rail, r)))
    resp = client.responses.create(model="m", input="toxic")
    assert resp.output_text == REFUSAL and resp.status == "incomplete"
    assert resp.incomplete_details.reason == "content_filter"
    assert [i.type for i in resp.output] == ["message"]
    assert resp.usage.output_tokens > 0  # the upstream's usage is kept
    assert [rail for rail, _ in seen] == ["input", "output"] and not seen[1][1].allowed


def test_a_harmful_function_call_is_replaced(cal: Calibrated, server: FakeLLMServer) -> None:
    client = wrap(oai(server), cal.guard)
    resp = client.responses.create(model="m", input="toxic", **CALL)
    assert resp.output_text == REFUSAL and [i.type for i in resp.output] == ["message"]


def test_a_harmful_stream_is_cut_before_the_harm(
    cal: Calibrated, server: FakeLLMServer, replies
) -> None:
    client = wrap(oai(server), cal.guard)
    with client.responses.create(model="m", input="toxic", stream=True) as stream:
        events = list(stream)
    text = _text(events)
    assert text.endswith(REFUSAL)
    released = text.removesuffix(REFUSAL)
    assert replies["toxic"].startswith(released) and cal.target not in released
    end = events[-1]
    assert end.type == "response.incomplete" and end.response.output_text == text
    assert end.response.incomplete_details.reason == "content_filter"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert "response.completed" not in kinds and kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]


def test_a_harmful_function_call_stream_sends_none_of_it(
    cal: Calibrated, server: FakeLLMServer
) -> None:
    client = wrap(oai(server), cal.guard)
    events = list(client.responses.create(model="m", input="toxic", stream=True, **CALL))
    kinds = [e.type for e in events]
    assert not any("function_call" in k for k in kinds)
    assert not any(getattr(getattr(e, "item", None), "type", "") == "function_call" for e in events)
    assert _text(events) == REFUSAL and events[-1].response.output_text == REFUSAL


def test_a_clean_stream_passes_whole(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(oai(server), cal.guard)
    for extra in ({}, CALL):
        kw = {"model": "m", "input": "clean", "stream": True, **extra}
        guarded = list(client.responses.create(**kw))
        plain = list(client.unguarded.responses.create(**kw))
        assert [(e.type, getattr(e, "delta", None)) for e in guarded] == [
            (e.type, getattr(e, "delta", None)) for e in plain
        ]
        assert guarded[-1].type == "response.completed"
        assert guarded[-1].response.usage == plain[-1].response.usage
    assert _text(guarded) == "" and _text(plain) == ""  # the call's stream: arguments only
    assert (
        _text(list(client.responses.create(model="m", input="clean", stream=True)))
        == (replies["clean"])
    )


def test_a_stream_can_raise(cal: Calibrated, server: FakeLLMServer) -> None:
    g = cal.guard.with_policy(
        Policy(toxic_threshold=cal.threshold, raise_on_violation=True, refusal=REFUSAL)
    )
    stream = wrap(oai(server), g).responses.create(model="m", input="toxic", stream=True)
    with pytest.raises(GuardViolation) as info:
        list(stream)
    assert info.value.rail == "output"


@pytest.mark.asyncio
async def test_async(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(oai(server, openai.AsyncOpenAI), cal.guard)
    stream = await client.responses.create(model="m", input="toxic", stream=True)
    events = [e async for e in stream]
    text = _text(events)
    assert text.endswith(REFUSAL) and cal.target not in text
    assert events[-1].type == "response.incomplete"
    bad = await client.responses.create(model="m", input="toxic", **CALL)
    assert bad.output_text == REFUSAL and bad.status == "incomplete"
    ok = await client.responses.create(model="m", input="clean")
    assert ok.output_text == replies["clean"] and ok.status == "completed"
    await client.close()
