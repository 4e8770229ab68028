"""The output rail on an OpenAI audio reply (``modalities=["audio"]``): its transcript is
the text of what the model said, and its ``content`` is None. Canned bodies over real
HTTP (pytest-httpserver) to the real SDK."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from pytest_httpserver import HTTPServer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

USER = [{"role": "user", "content": "say something"}]
SAID = "Grab a knife and go after them."


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


def _client(httpserver: HTTPServer, cls=openai.OpenAI):
    return cls(api_key="k", base_url=httpserver.url_for("/v1"), max_retries=0)


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def _audio_stream(httpserver: HTTPServer) -> None:
    chunks = [
        _chunk({"role": "assistant", "audio": {"id": "a1", "data": "AAAA", "transcript": SAID}}),
        _chunk({}, "stop"),
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        body, content_type="text/event-stream"
    )


def test_an_audio_reply_is_checked_by_its_transcript(guard: Guard, httpserver: HTTPServer) -> None:
    audio = {"id": "a1", "data": "AAAA", "expires_at": 1, "transcript": SAID}
    message = {"role": "assistant", "content": None, "audio": audio}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
         "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
    )  # fmt: skip
    reply = guard.wrap(_client(httpserver)).chat.completions.create(
        model="m", messages=USER, modalities=["text", "audio"]
    )
    choice = reply.choices[0]
    # Before: the reply passed whole, speech and transcript, as content None is "".
    assert choice.finish_reason == "content_filter" and choice.message.content == "REFUSED"
    assert choice.message.audio is None  # the speech goes with its transcript


def test_an_audio_stream_is_checked_by_its_transcript(guard: Guard, httpserver: HTTPServer) -> None:
    _audio_stream(httpserver)
    stream = guard.wrap(_client(httpserver)).chat.completions.create(
        model="m", messages=USER, modalities=["text", "audio"], stream=True
    )
    deltas = [c.choices[0].delta.model_dump(exclude_none=True) for c in stream]
    assert deltas == [{"content": "REFUSED"}]  # no audio chunk got out


def test_an_async_audio_stream_is_checked_by_its_transcript(
    guard: Guard, httpserver: HTTPServer
) -> None:
    _audio_stream(httpserver)

    async def run() -> list[dict]:
        client = guard.wrap(_client(httpserver, openai.AsyncOpenAI))
        stream = await client.chat.completions.create(
            model="m", messages=USER, modalities=["text", "audio"], stream=True
        )
        return [c.choices[0].delta.model_dump(exclude_none=True) async for c in stream]

    assert asyncio.run(run()) == [{"content": "REFUSED"}]


def test_a_clean_audio_reply_keeps_its_speech(guard: Guard, httpserver: HTTPServer) -> None:
    audio = {"id": "a1", "data": "AAAA", "expires_at": 1, "transcript": "Bread needs yeast."}
    message = {"role": "assistant", "content": None, "audio": audio}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
         "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
    )  # fmt: skip
    reply = guard.wrap(_client(httpserver)).chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.audio.transcript == "Bread needs yeast."
