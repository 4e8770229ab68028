"""``@guard.protect`` around callables that return the SDKs' own streams: the real
openai / anthropic SDKs against ``annotators.testing.FakeLLMServer``. A protected
callable that returns ``create(stream=True)`` must be checked as it streams, never
passed through unchecked; a stream of anything the rail cannot read fails closed.
The guard runs on the shipped fake scorer (``guard_helpers.keyword_guard``)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator

import anthropic
import openai
import pytest

from annotators.testing import FakeLLMServer

from .guard_helpers import Calibrated, keyword_guard, run_of

REFUSAL = "Sorry, I can't continue with that."


@pytest.fixture(scope="module")
def cal() -> Calibrated:
    return keyword_guard(refusal=REFUSAL)


@pytest.fixture(scope="module")
def replies(cal: Calibrated) -> dict[str, str]:
    filler = " ".join([cal.filler + "."] * 10)
    return {"clean": filler, "toxic": f"{filler} {run_of(cal.target)}. {filler}"}


@pytest.fixture(scope="module")
def server(replies: dict[str, str]) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: replies.get(text, "ok.")) as srv:
        yield srv


def ask(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def _openai_text(chunks) -> tuple[str, str | None]:
    text, finish = "", None
    for c in chunks:
        for ch in c.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    return text, finish


def _anthropic_text(events) -> tuple[str, str | None]:
    text, stop = "", None
    for ev in events:
        if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
            text += ev.delta.text
        elif ev.type == "message_delta":
            stop = ev.delta.stop_reason
    return text, stop


def _stopped(text: str, reply: str) -> bool:
    released = text.removesuffix(REFUSAL)
    return text.endswith(REFUSAL) and reply.startswith(released) and len(released) < len(reply)


def test_openai_stream_returned_by_a_protected_callable_is_checked(
    cal: Calibrated, server: FakeLLMServer, replies
) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)

    @cal.guard.protect()
    def chat(messages: list[dict]):
        return client.chat.completions.create(model="m", messages=messages, stream=True)

    text, finish = _openai_text(chat(ask("toxic")))
    assert finish == "content_filter" and _stopped(text, replies["toxic"])
    assert _openai_text(chat(ask("clean"))) == (replies["clean"], "stop")


def test_anthropic_stream_returned_by_a_protected_callable_is_checked(
    cal: Calibrated, server: FakeLLMServer, replies
) -> None:
    client = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0)

    @cal.guard.protect()
    def chat(messages: list[dict]):
        return client.messages.create(model="m", max_tokens=100, messages=messages, stream=True)

    text, stop = _anthropic_text(chat(ask("toxic")))
    assert stop == "refusal" and _stopped(text, replies["toxic"])
    assert _anthropic_text(chat(ask("clean"))) == (replies["clean"], "end_turn")


@pytest.mark.asyncio
async def test_async_sdk_streams_returned_by_a_protected_callable_are_checked(
    cal: Calibrated, server: FakeLLMServer, replies
) -> None:
    oai = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    ant = anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0)

    @cal.guard.protect()
    async def chat_openai(messages: list[dict]):
        return await oai.chat.completions.create(model="m", messages=messages, stream=True)

    @cal.guard.protect()
    async def chat_anthropic(messages: list[dict]):
        return await ant.messages.create(model="m", max_tokens=100, messages=messages, stream=True)

    text, finish = _openai_text([c async for c in await chat_openai(ask("toxic"))])
    assert finish == "content_filter" and _stopped(text, replies["toxic"])
    text, stop = _anthropic_text([e async for e in await chat_anthropic(ask("toxic"))])
    assert stop == "refusal" and _stopped(text, replies["toxic"])
    text, stop = _anthropic_text([e async for e in await chat_anthropic(ask("clean"))])
    assert (text, stop) == (replies["clean"], "end_turn")
    await oai.close()
    await ant.close()


@pytest.mark.asyncio
async def test_async_generator_function_stays_one_and_is_stopped(
    cal: Calibrated, server: FakeLLMServer, replies
) -> None:
    client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    server.reset_counts()

    @cal.guard.protect()
    async def chat(messages: list[dict]) -> AsyncIterator[str]:
        stream = await client.chat.completions.create(model="m", messages=messages, stream=True)
        async for chunk in stream:
            yield chunk.choices[0].delta.content or ""

    assert inspect.isasyncgenfunction(chat)  # the async branch: the input rail is awaited
    out = [piece async for piece in chat(ask("toxic"))]
    assert out[-1] == REFUSAL and _stopped("".join(out), replies["toxic"])
    blocked = [piece async for piece in chat(ask(run_of(cal.target)))]
    assert blocked == [REFUSAL]
    assert sum(server.calls.values()) == 1  # the blocked prompt never reached the model
    await client.close()


class Chunk:
    def __init__(self, text: str) -> None:
        self.text = text


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.asyncio
async def test_unreadable_stream_items_fail_closed(cal: Calibrated, is_async: bool) -> None:
    @cal.guard.protect(input=False)
    def chat(messages: list[dict]):
        return iter([Chunk("hello.")])

    @cal.guard.protect(input=False)
    async def achat(messages: list[dict]) -> AsyncIterator[Chunk]:
        yield Chunk("hello.")

    with pytest.raises(TypeError, match="test_guard_protect_sdk.Chunk"):
        if is_async:
            [c async for c in achat(ask("x"))]
        else:
            list(chat(ask("x")))


@pytest.mark.asyncio
async def test_sync_sdk_stream_from_an_async_callable_is_checked(
    cal: Calibrated, server: FakeLLMServer, replies
) -> None:
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)

    @cal.guard.protect()
    async def chat(messages: list[dict]):
        return client.chat.completions.create(model="m", messages=messages, stream=True)

    text, finish = _openai_text(await chat(ask("toxic")))
    assert finish == "content_filter" and _stopped(text, replies["toxic"])
