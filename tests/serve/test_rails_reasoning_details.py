"""The output rail reads OpenRouter's structured reasoning, ``reasoning_details`` (a list
of ``reasoning.text`` / ``reasoning.summary`` / ``reasoning.encrypted`` entries, on the
message and on stream deltas, beside ``reasoning``), as it reads ``reasoning``: its text
parts were unread, so a harmful thought there passed, and a reply refused for the
``reasoning`` beside it still carried the thought in ``reasoning_details``. Whole and
streamed, sync and async, canned bodies over real HTTP (pytest-httpserver) to the real
openai SDK; message dicts and LangChain messages; the guard is a ``FakeScorer`` flagging
"knife"."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pytest_httpserver import HTTPServer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.rails.messages import reasoning_text
from guardrail_dro.serve.rails.replies import replaced_reply
from guardrail_dro.serve.scorer import FakeScorer
from tests.serve.test_rails_reasoning import ANSWER, CLEAN, HARMFUL, _create
from tests.serve.test_rails_tool_args import USER, _chunk, _oai, _serve, _sse

SECRET = "gAAAAB-encrypted-reasoning-blob"  # reasoning.encrypted's data: not text to read
#: How a reply carries its thought: OpenRouter's two kinds of text entry, alone, and a
#: ``reasoning.text`` entry beside the same text in ``reasoning`` (what OpenRouter sends).
SHAPES = ["text", "summary", "beside"]


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


def _detail(shape: str, thought: str) -> dict:
    if shape == "summary":
        return {"type": "reasoning.summary", "summary": thought, "format": "openai-responses-v1"}
    return {"type": "reasoning.text", "text": thought, "format": "anthropic-claude-v1"}


def _fields(shape: str, thought: str, *more: dict) -> dict:
    """The reasoning fields of a message (or delta) carrying ``thought`` in ``shape``."""
    beside = {"reasoning": thought} if shape == "beside" else {}
    return {**beside, "reasoning_details": [_detail(shape, thought), *more]}


def _completion(shape: str, thought: str) -> dict:
    encrypted = {"type": "reasoning.encrypted", "data": SECRET, "format": "openai-responses-v1"}
    message = {"role": "assistant", "content": ANSWER, **_fields(shape, thought, encrypted)}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
    }


def _stream(shape: str, thought: str) -> list[dict]:
    """The thought in 5-character deltas (a word split across them), then the encrypted
    entry OpenRouter closes the reasoning with, then the answer."""
    pieces = [thought[i : i + 5] for i in range(0, len(thought), 5)]
    encrypted = {"type": "reasoning.encrypted", "data": SECRET}
    return [
        _chunk({"role": "assistant", "content": ""}),
        *[_chunk(_fields(shape, p)) for p in pieces],
        _chunk({"reasoning_details": [encrypted]}),
        _chunk({"content": ANSWER}),
        _chunk({}, "stop"),
    ]


def _details(chunks: list[Any]) -> list[dict]:
    return [
        d
        for ch in chunks
        for c in ch.choices
        for d in getattr(c.delta, "reasoning_details", None) or []
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", [openai.OpenAI, openai.AsyncOpenAI], ids=["sync", "async"])
async def test_harmful_reasoning_details_refuse_the_reply_and_leave_with_it(
    guard: Guard, httpserver: HTTPServer, cls: type, shape: str
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _completion(shape, CLEAN),
        _completion(shape, HARMFUL),
    )
    client = guard.wrap(_oai(httpserver, cls))
    ok = await _create(client, cls)
    assert ok.to_dict() == _completion(shape, CLEAN)  # passed unchanged, encrypted entry too
    refused = await _create(client, cls)
    message = refused.choices[0].message
    assert (message.content, refused.choices[0].finish_reason) == ("REFUSED", "content_filter")
    assert message.reasoning_details is None and getattr(message, "reasoning", None) is None
    assert "knife" not in refused.to_json() and SECRET not in refused.to_json()


@pytest.mark.asyncio
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", [openai.OpenAI, openai.AsyncOpenAI], ids=["sync", "async"])
async def test_harmful_streamed_reasoning_details_refuse_the_stream(
    guard: Guard, httpserver: HTTPServer, cls: type, shape: str
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _sse(_stream(shape, CLEAN)),
        _sse(_stream(shape, HARMFUL)),
    )
    client = guard.wrap(_oai(httpserver, cls))
    ok = await _create(client, cls, stream=True)
    assert [c.to_dict() for c in ok] == _stream(shape, CLEAN)  # as sent, chunk for chunk
    refused = await _create(client, cls, stream=True)
    said = "".join(d.get("text") or d.get("summary") or "" for d in _details(refused))
    assert "knife" not in said and "kn" not in said[-5:], said  # no fragment of it
    assert SECRET not in str(_details(refused))  # the closing entry came after the thought
    last = refused[-1].choices
    assert (last[0].finish_reason, last[0].delta.content) == ("content_filter", "REFUSED")
    assert all(getattr(c.delta, "reasoning_details", None) is None for c in last)
    assert ANSWER not in "".join(c.delta.content or "" for ch in refused for c in ch.choices)


def test_streamed_reasoning_details_are_not_released_before_they_are_checked(
    httpserver: HTTPServer,
) -> None:
    """Each ``reasoning_details`` delta reaches the caller only once a scored text has
    held its text."""
    keywords = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"))
    scored: list[str] = []

    def handler(window: str) -> dict[str, float]:
        scored.append(window)
        return dict(keywords.handler(window))

    guard = Guard.from_scorer(FakeScorer(handler), policy=Policy(refusal="REFUSED"))
    _serve(httpserver, "/v1/chat/completions", _sse(_stream("text", CLEAN)))
    client = guard.wrap(_oai(httpserver))
    got = ""
    for chunk in client.chat.completions.create(model="m", messages=USER, stream=True):
        got += "".join(d.get("text") or "" for d in _details([chunk]))
        assert not got or any(got in text for text in scored), (got, scored)
    assert got == CLEAN


@pytest.mark.parametrize("shape", SHAPES)
def test_a_message_dicts_reasoning_details_are_read_and_dropped(guard: Guard, shape: str) -> None:
    """``check_output`` and ``@guard.protect`` read a message dict's
    ``reasoning_details`` too, and a refused dict loses them with its text."""
    message = {"role": "assistant", "content": ANSWER, **_fields(shape, HARMFUL)}
    assert not guard.check_output(USER, message).allowed
    assert guard.check_output(USER, {**message, **_fields(shape, CLEAN)}).allowed
    assert replaced_reply(message, "REFUSED") == {"role": "assistant", "content": "REFUSED"}


def test_a_refused_dict_keeps_no_reasoning_details_in_its_additional_kwargs(
    guard: Guard,
) -> None:
    @guard.protect
    def chat(messages: list[dict]) -> dict:
        return {
            "role": "assistant",
            "content": "Here is a plan for your meeting.",
            "additional_kwargs": {**_fields("summary", HARMFUL), "other": 1},
        }

    got = chat([{"role": "user", "content": "help me plan a meeting"}])
    assert got == {"role": "assistant", "content": "REFUSED", "additional_kwargs": {"other": 1}}


def test_a_langchain_messages_reasoning_details_are_read(guard: Guard) -> None:
    messages = pytest.importorskip("langchain_core.messages")
    for shape in SHAPES:
        harmful = messages.AIMessage(content=ANSWER, additional_kwargs=_fields(shape, HARMFUL))
        assert not guard.check_output(USER, harmful).allowed
        clean = messages.AIMessage(content=ANSWER, additional_kwargs=_fields(shape, CLEAN))
        assert guard.check_output(USER, clean).allowed


def test_what_is_read_of_reasoning_details() -> None:
    encrypted = {"type": "reasoning.encrypted", "data": SECRET}
    # beside ``reasoning`` (OpenRouter's shape) the same thought is read once
    assert reasoning_text(_fields("beside", CLEAN, encrypted)) == CLEAN
    # every text entry, in order; the encrypted data is not text anyone is shown
    details = [_detail("summary", "First."), encrypted, _detail("text", "Second.")]
    assert reasoning_text({"reasoning_details": details}) == "First.\nSecond."
    assert reasoning_text({"reasoning_details": [encrypted]}) == ""
    assert reasoning_text({"reasoning_details": None}) == ""
