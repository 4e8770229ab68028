"""``@guard.protect`` and ``check_output`` read an OpenAI Responses API reply.

A protected function returning ``client.responses.create(...)`` failed closed but
failed: its ``Response`` raised ``TypeError`` in ``reply_text`` (``check_output`` too),
and its stream was taken for a chat completion's (``'ResponseCreatedEvent' object has
no attribute 'choices'``). Now the reply is read and replaced as ``guard.wrap`` does
(``rails.responses``), and the stream is read by the Responses reader, chosen by its
first event. The real openai SDK over HTTP to the shipped fake server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from annotators.testing import FakeLLMServer

from .guard_helpers import Calibrated
from .responses_helpers import REFUSAL, refusing_guard, replying_server


@pytest.fixture(scope="module")
def cal() -> Calibrated:
    return refusing_guard()


@pytest.fixture(scope="module")
def server(cal: Calibrated) -> Iterator[FakeLLMServer]:
    with replying_server(cal) as srv:
        yield srv


def _deltas(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_a_protected_responses_reply_is_read_and_replaced(
    cal: Calibrated, server: FakeLLMServer
) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)

    @cal.guard.protect
    def chat(messages: list[dict[str, str]]) -> Any:
        return client.responses.create(model="m", input=messages[-1]["content"])

    clean = chat([{"role": "user", "content": "clean"}])
    assert clean.status == "completed" and cal.filler in clean.output_text
    bad = chat([{"role": "user", "content": "toxic"}])
    assert bad.output_text == REFUSAL and bad.status == "incomplete"
    assert bad.incomplete_details.reason == "content_filter"
    raw = client.responses.create(model="m", input="toxic")
    assert not cal.guard.check_output(None, raw).allowed
    assert cal.guard.check_output(None, clean).allowed


def test_a_protected_responses_stream_is_cut_before_the_harm(
    cal: Calibrated, server: FakeLLMServer
) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)

    @cal.guard.protect
    def chat(messages: list[dict[str, str]]) -> Any:
        return client.responses.create(model="m", input=messages[-1]["content"], stream=True)

    clean = list(chat([{"role": "user", "content": "clean"}]))
    assert clean[-1].type == "response.completed" and cal.filler in _deltas(clean)
    events = list(chat([{"role": "user", "content": "toxic"}]))
    shown = _deltas(events)
    assert cal.target not in shown and shown.endswith(REFUSAL)
    assert events[-1].type == "response.incomplete"
    seq = [e.sequence_number for e in events]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)


def test_an_async_protected_responses_stream_is_cut(cal: Calibrated, server: FakeLLMServer) -> None:
    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)

        @cal.guard.protect
        async def chat(messages: list[dict[str, str]]) -> Any:
            return await client.responses.create(
                model="m", input=messages[-1]["content"], stream=True
            )

        return [e async for e in await chat([{"role": "user", "content": "toxic"}])]

    events = asyncio.run(run())
    assert cal.target not in _deltas(events) and events[-1].type == "response.incomplete"
