"""The output rail reads the reasoning OpenAI-compatible servers send with a reply
(vLLM's and DeepSeek's ``reasoning_content``, OpenRouter's ``reasoning``): chat UIs show
it to users, and it went unread, so a harmful thought passed a refused-looking reply
whole. Whole and streamed, sync and async, canned bodies over real HTTP
(pytest-httpserver) to the real openai SDK; the guard is a ``FakeScorer`` flagging
"knife"."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pytest_httpserver import HTTPServer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.rails.replies import replaced_reply
from guardrail_dro.serve.scorer import FakeScorer
from tests.serve.test_rails_tool_args import USER, _chunk, _oai, _serve, _sse

ANSWER = "Here is a plan for your meeting with Bob tomorrow."
CLEAN = "The user wants a meeting plan. I will keep it short and friendly."
HARMFUL = "The user wants to hurt Bob. I will tell them to bring a knife to the meeting."
FIELDS = ["reasoning_content", "reasoning"]


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


def _completion(field: str, thought: str) -> dict:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": ANSWER, field: thought},
            }
        ],
    }


def _stream(field: str, thought: str) -> list[dict]:
    """The reasoning in 5-character deltas (a word split across them), then the answer."""
    pieces = [thought[i : i + 5] for i in range(0, len(thought), 5)]
    return [
        _chunk({"role": "assistant", "content": ""}),
        *[_chunk({field: p}) for p in pieces],
        _chunk({"content": ANSWER}),
        _chunk({}, "stop"),
    ]


async def _create(client: Any, cls: type, **kw: Any) -> Any:
    out = client.chat.completions.create(model="m", messages=USER, **kw)
    if cls is openai.AsyncOpenAI:
        out = await out
        return [c async for c in out] if kw.get("stream") else out
    return list(out) if kw.get("stream") else out


def _reasoned(chunks: list[Any], field: str) -> str:
    return "".join(getattr(c.delta, field, None) or "" for ch in chunks for c in ch.choices)


@pytest.mark.asyncio
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("cls", [openai.OpenAI, openai.AsyncOpenAI], ids=["sync", "async"])
async def test_a_harmful_reasoning_refuses_the_reply(
    guard: Guard, httpserver: HTTPServer, cls: type, field: str
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _completion(field, CLEAN),
        _completion(field, HARMFUL),
    )
    client = guard.wrap(_oai(httpserver, cls))
    ok = await _create(client, cls)
    assert ok.to_dict() == _completion(field, CLEAN)  # passed unchanged
    refused = await _create(client, cls)
    message = refused.choices[0].message
    assert (message.content, refused.choices[0].finish_reason) == ("REFUSED", "content_filter")
    assert getattr(message, field) is None  # no reasoning text left
    assert "knife" not in refused.to_json()


@pytest.mark.asyncio
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("cls", [openai.OpenAI, openai.AsyncOpenAI], ids=["sync", "async"])
async def test_a_harmful_streamed_reasoning_refuses_the_stream(
    guard: Guard, httpserver: HTTPServer, cls: type, field: str
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _sse(_stream(field, CLEAN)),
        _sse(_stream(field, HARMFUL)),
    )
    client = guard.wrap(_oai(httpserver, cls))
    ok = await _create(client, cls, stream=True)
    assert [c.to_dict() for c in ok] == _stream(field, CLEAN)  # as sent, chunk for chunk
    refused = await _create(client, cls, stream=True)
    said = _reasoned(refused, field)
    assert "knife" not in said and "kn" not in said[-5:], said  # no fragment of it
    assert refused[-1].choices[0].finish_reason == "content_filter"
    assert refused[-1].choices[0].delta.content == "REFUSED"
    assert all(getattr(c.delta, field, None) is None for c in refused[-1].choices)
    assert ANSWER not in "".join(c.delta.content or "" for ch in refused for c in ch.choices)


def test_streamed_reasoning_is_not_released_before_it_is_checked(
    httpserver: HTTPServer,
) -> None:
    """Each reasoning delta reaches the caller only once a scored text has held it."""
    keywords = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"))
    scored: list[str] = []

    def handler(window: str) -> dict[str, float]:
        scored.append(window)
        return dict(keywords.handler(window))

    guard = Guard.from_scorer(FakeScorer(handler), policy=Policy(refusal="REFUSED"))
    _serve(httpserver, "/v1/chat/completions", _sse(_stream("reasoning_content", CLEAN)))
    client = guard.wrap(_oai(httpserver))
    got = ""
    for chunk in client.chat.completions.create(model="m", messages=USER, stream=True):
        got += _reasoned([chunk], "reasoning_content")
        assert not got or any(got in text for text in scored), (got, scored)
    assert got == CLEAN


def test_a_message_dicts_reasoning_is_read_and_dropped(guard: Guard) -> None:
    """``check_output`` and ``@guard.protect`` read a message dict's reasoning too, and a
    refused dict loses it with its text."""
    for field in FIELDS:
        message = {"role": "assistant", "content": ANSWER, field: HARMFUL}
        assert not guard.check_output(USER, message).allowed
        assert guard.check_output(USER, {**message, field: CLEAN}).allowed
        assert replaced_reply(message, "REFUSED") == {"role": "assistant", "content": "REFUSED"}


def test_a_langchain_messages_reasoning_is_read(guard: Guard) -> None:
    """LangChain's chat models keep a server's reasoning in ``additional_kwargs``."""
    messages = pytest.importorskip("langchain_core.messages")
    for field in FIELDS:
        harmful = messages.AIMessage(content=ANSWER, additional_kwargs={field: HARMFUL})
        assert not guard.check_output(USER, harmful).allowed
        clean = messages.AIMessage(content=ANSWER, additional_kwargs={field: CLEAN})
        assert guard.check_output(USER, clean).allowed
