"""A refused stream still hands the caller the call's usage when the upstream sent it:
OpenAI's usage chunk (``stream_options={"include_usage": True}``: ``choices`` [] and
``usage``) and Anthropic's ``message_delta`` usage, which token accounting and billing
read. The refusal dropped them with the reply's text, so the call vanished from the
caller's books (Anthropic's even reported 0 output tokens).

The rule (``streams.guard_stream``): after a refusal the rail reads on only while the
upstream sends no more model output, then closes it. A refusal once the model has
finished (the final check, a tool call checked at its finish) keeps the usage; one
mid-reply closes the upstream at its next output, so as not to pay for the rest, and has
no usage to keep. The real SDKs over real HTTP: the shipped fake server
(``annotators.testing``), whose ``billed`` is what the provider charged, and canned
streams (pytest-httpserver) for shapes it does not make."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from pytest_httpserver import HTTPServer

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer
from tests.serve.test_rails_tool_args import TEXT, USER, _ant, _oai, _serve, _sse
from tests.serve.test_rails_tool_args_adversarial import (
    CLEAN,
    HARMFUL,
    _call_chunks,
    _choice,
    _chunk,
    _events_sse,
    _message,
    _pieces,
    _text,
    _tool,
)

#: Short enough (under the 40 characters a sentence check waits for) that only the
#: stream's final check, after the upstream ended, sees it.
SHORT_HARMFUL = "Take a knife."
USAGE = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: SHORT_HARMFUL) as srv:  # every reply: the short one
        yield srv


async def _collect(stream: Any) -> list[Any]:
    return [item async for item in stream] if hasattr(stream, "__aiter__") else list(stream)


def _openai_seen(chunks: list[Any]) -> Any:
    """What the SDK's own accumulator makes of the chunks (it validates their shape)."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    return state.current_completion_snapshot


@pytest.mark.asyncio
@pytest.mark.parametrize("cls", [openai.OpenAI, openai.AsyncOpenAI], ids=["sync", "async"])
async def test_openai_usage_follows_a_refusal_at_the_final_check(
    guard: Guard, server: FakeLLMServer, cls: type
) -> None:
    client = guard.wrap(cls(base_url=server.openai_base_url, api_key="k", max_retries=0))
    stream = client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = await _collect(await stream if cls is openai.AsyncOpenAI else stream)
    seen = _openai_seen(chunks)
    assert seen.choices[0].message.content == "REFUSED"
    assert seen.choices[0].finish_reason == "content_filter"
    assert chunks[-1].choices == [] and seen.usage is not None  # the usage chunk, last
    billed = server.billed[-1]
    assert (seen.usage.prompt_tokens, seen.usage.completion_tokens) == (
        billed["input_tokens"],
        billed["output_tokens"],
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "cls", [anthropic.Anthropic, anthropic.AsyncAnthropic], ids=["sync", "async"]
)
async def test_anthropic_usage_follows_a_refusal_at_the_final_check(
    guard: Guard, server: FakeLLMServer, cls: type
) -> None:
    client = guard.wrap(cls(base_url=server.anthropic_base_url, api_key="k", max_retries=0))
    stream = client.messages.create(model="m", max_tokens=50, messages=USER, stream=True)
    events = await _collect(await stream if cls is anthropic.AsyncAnthropic else stream)
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    (end,) = [e for e in events if e.type == "message_delta"]
    assert text == "REFUSED" and end.delta.stop_reason == "refusal"
    assert end.usage.output_tokens == server.billed[-1]["output_tokens"]  # it was 0
    assert events[-1].type == "message_stop"


def _tool_then_usage(arguments: str) -> list[dict]:
    """A tool call, its choice's finish, then the usage chunk."""
    return [
        _chunk(_choice({"role": "assistant", "content": None})),
        *_call_chunks(0, _pieces(arguments)),
        _chunk(_choice({}, finish="tool_calls")),
        _chunk(usage=USAGE),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("cls", [openai.OpenAI, openai.AsyncOpenAI], ids=["sync", "async"])
async def test_openai_usage_follows_a_tool_call_refused_at_its_finish(
    guard: Guard, httpserver: HTTPServer, cls: type
) -> None:
    """The model has finished when its tool call is checked: the usage chunk after the
    finish costs nothing to read, and the rail reads it before closing."""
    _serve(httpserver, "/v1/chat/completions", _sse(_tool_then_usage(HARMFUL)))
    client = guard.wrap(_oai(httpserver, cls))
    stream = client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = await _collect(await stream if cls is openai.AsyncOpenAI else stream)
    seen = _openai_seen(chunks)
    assert seen.choices[0].message.tool_calls is None
    assert seen.choices[0].message.content == "REFUSED"
    assert seen.usage is not None and seen.usage.to_dict() == USAGE


def test_a_refusal_mid_reply_closes_at_the_next_output(
    guard: Guard, httpserver: HTTPServer
) -> None:
    """Refused while the model still writes: the rail reads one more chunk, finds text,
    and closes; the usage chunk, sent after text no one will see, is never read (that
    text would have been paid for to read it)."""
    words = [f"{TEXT} Now take a knife to them."] + ["And more words follow here."] * 20
    sent = [
        _chunk(_choice({"role": "assistant", "content": ""})),
        *[_chunk(_choice({"content": w + " "})) for w in words],
        _chunk(_choice({}, finish="stop")),
        _chunk(usage=USAGE),
    ]
    _serve(httpserver, "/v1/chat/completions", _sse(sent))
    client = guard.wrap(_oai(httpserver))
    stream = client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    seen = _openai_seen(chunks)
    assert seen.choices[0].finish_reason == "content_filter" and seen.usage is None
    assert "knife" not in (seen.choices[0].message.content or "")
    assert stream.response.is_closed


def test_anthropic_usage_follows_a_tool_use_refused_at_its_stop(
    guard: Guard, httpserver: HTTPServer
) -> None:
    """A tool-use block is checked at its stop; the ``message_delta`` that follows (no
    model output) is read, and its usage ends the refused message."""
    sent = _message(_text(0, TEXT), _tool(1, _pieces(HARMFUL)))
    clean = _message(_text(0, TEXT), _tool(1, _pieces(CLEAN)))
    _serve(httpserver, "/v1/messages", _events_sse(clean), _events_sse(sent))
    client = guard.wrap(_ant(httpserver))
    got = [
        list(client.messages.create(model="claude-x", max_tokens=50, messages=USER, stream=True))
        for _ in range(2)
    ]
    assert [e.to_dict() for e in got[0]] == clean
    (end,) = [e for e in got[1] if e.type == "message_delta"]
    assert end.delta.stop_reason == "refusal" and end.usage.output_tokens == 9
    assert json.dumps(HARMFUL) not in json.dumps([e.to_dict() for e in got[1]])
