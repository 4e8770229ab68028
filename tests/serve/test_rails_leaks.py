"""Paths by which model text reached the caller past the output rail, each closed:

- an ``n=2`` stream released one choice's finished tool call before another choice
  refused the stream (unstreamed, one harmful choice refuses every choice and drops
  every call: the streamed rule is now the same);
- tool-call arguments were read by their values only, so a free-form object's keys,
  which the model writes, went unread;
- a refused reply kept its ``logprobs``, whose tokens spell the refused text out;
- the model's own ``refusal`` field (OpenAI) was never read, whole or streamed.

The real SDKs over real HTTP: canned bodies (pytest-httpserver) and the shipped fake
server (``annotators.testing``); the guard is a ``FakeScorer`` flagging "knife"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pytest_httpserver import HTTPServer

from annotators.testing import FakeLLMServer, Refuse
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.rails.tool_args import arguments_text
from guardrail_dro.serve.scorer import FakeScorer
from tests.serve.test_rails_tool_args import TEXT, USER, _ant, _blocks, _oai, _serve, _sse
from tests.serve.test_rails_tool_args_adversarial import (
    CLEAN,
    _call_chunks,
    _call_start,
    _choice,
    _chunk,
    _counting_guard,
    _events_sse,
    _got,
    _message,
    _pieces,
    _tool,
)


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


# -- n=2: one rule, streamed or not ----------------------------------------------------


def _n2_stream(second: str) -> list[dict]:
    """Choice 0 calls a tool and finishes first; choice 1 writes on, then finishes."""
    return [
        _chunk(_choice({"role": "assistant", "content": None}, 0)),
        _chunk(_choice({"role": "assistant", "content": ""}, 1)),
        *_call_chunks(0, _pieces(CLEAN), choice=0),
        _chunk(_choice({}, 0, "tool_calls")),
        _chunk(_choice({"content": TEXT}, 1)),
        _chunk(_choice({"content": second}, 1)),
        _chunk(_choice({}, 1, "stop")),
    ]


def _n2_completion(second: str) -> dict:
    call = {**_call_start(0), "function": {"name": "send_email", "arguments": CLEAN}}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
            },
            {
                "index": 1,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": TEXT + second},
            },
        ],
    }


def test_an_n2_stream_refused_late_releases_no_tool_call(
    guard: Guard, httpserver: HTTPServer
) -> None:
    clean, harmful = _n2_stream(" Bye for now."), _n2_stream(" Then bring a knife.")
    _serve(
        httpserver,
        "/v1/chat/completions",
        _sse(clean),
        _sse(harmful),
        _n2_completion(" Then bring a knife."),
    )
    client = guard.wrap(_oai(httpserver))
    got = list(client.chat.completions.create(model="m", messages=USER, n=2, stream=True))
    assert [c.to_dict() for c in got] == clean  # as sent, chunk for chunk
    refused = _got(client.chat.completions.create(model="m", messages=USER, n=2, stream=True))
    assert refused[0][1] == {}, refused  # choice 0's finished call was released
    assert [refused[i][2][-1] for i in (0, 1)] == ["content_filter"] * 2
    whole = client.chat.completions.create(model="m", messages=USER, n=2)
    assert [c.message.tool_calls for c in whole.choices] == [None, None]  # the same rule
    assert [c.finish_reason for c in whole.choices] == ["content_filter"] * 2


# -- keys of tool-call arguments ---------------------------------------------------------

KEYED = '{"rows": {"how to use a knife on them": 1}}'
KEYED_CLEAN = '{"rows": {"how to bake bread": 1}}'


def test_a_harmful_key_refuses_the_reply(guard: Guard, httpserver: HTTPServer) -> None:
    def completion(arguments: str) -> dict:
        body = _n2_completion("")
        body["choices"] = body["choices"][:1]
        body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
        return body

    streamed = [
        _chunk(_choice({"role": "assistant", "content": None})),
        *_call_chunks(0, _pieces(KEYED)),
        _chunk(_choice({}, finish="tool_calls")),
    ]
    _serve(
        httpserver,
        "/v1/chat/completions",
        completion(KEYED_CLEAN),
        completion(KEYED),
        _sse(streamed),
    )
    client = guard.wrap(_oai(httpserver))
    ok = client.chat.completions.create(model="m", messages=USER)
    assert ok.choices[0].message.tool_calls[0].function.arguments == KEYED_CLEAN
    refused = client.chat.completions.create(model="m", messages=USER)
    assert refused.choices[0].message.tool_calls is None
    got = _got(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert got[0][1] == {} and got[0][2][-1] == "content_filter"


def test_a_harmful_key_of_an_anthropic_tool_use_refuses_it(
    guard: Guard, httpserver: HTTPServer
) -> None:
    harmful = _message(_tool(0, _pieces(KEYED)))
    _serve(httpserver, "/v1/messages", _events_sse(harmful))
    client = guard.wrap(_ant(httpserver))
    events = list(
        client.messages.create(model="claude-x", max_tokens=50, messages=USER, stream=True)
    )
    assert _blocks(events) == ({0: ("text", "REFUSED")}, "refusal")  # no fragment of it
    blocks = [{"type": "tool_use", "id": "t", "name": "f", "input": json.loads(KEYED)}]
    assert not guard.check_output(USER, blocks).allowed
    blocks[0]["input"] = json.loads(KEYED_CLEAN)
    assert guard.check_output(USER, blocks).allowed


def test_reading_keys_costs_no_more_than_the_json(httpserver: HTTPServer) -> None:
    """Keys are read into the text scored; that text is never longer than the JSON, so
    a 200 KB object of keys costs what the policy bounds any 200 KB text to."""
    keys = json.dumps({f"key number {i} of many": i for i in range(8000)})
    assert len(keys) > 200_000
    assert len(arguments_text(keys)) <= len(keys)
    assert len(arguments_text('{"a":1,"b":[{"c":"d"}]}')) <= len('{"a":1,"b":[{"c":"d"}]}')
    sent = [
        _chunk(_choice({"role": "assistant", "content": None})),
        *_call_chunks(0, _pieces(keys, 400)),
        _chunk(_choice({}, finish="tool_calls")),
    ]
    _serve(httpserver, "/v1/chat/completions", _sse(sent))
    opened, seen = _counting_guard(Policy(on_error="open", max_chars=None))
    got = list(
        opened.wrap(_oai(httpserver)).chat.completions.create(model="m", messages=USER, stream=True)
    )
    assert [c.to_dict() for c in got] == sent
    assert 0 < len(seen) <= 3 * 24 and max(seen) <= 512


# -- what a refused reply keeps ----------------------------------------------------------


def _with_logprobs(text: str) -> dict:
    tokens = [text[i : i + 4] for i in range(0, len(text), 4)]
    content = [{"token": t, "logprob": -0.1, "bytes": None, "top_logprobs": []} for t in tokens]
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
                "logprobs": {"content": content, "refusal": None},
            }
        ],
    }


def test_a_refused_reply_loses_its_logprobs(guard: Guard, httpserver: HTTPServer) -> None:
    harmful = "Bring a knife to the meeting."
    _serve(httpserver, "/v1/chat/completions", _with_logprobs(TEXT), _with_logprobs(harmful))
    client = guard.wrap(_oai(httpserver))
    ok = client.chat.completions.create(model="m", messages=USER, logprobs=True)
    assert "".join(t.token for t in ok.choices[0].logprobs.content) == TEXT
    refused = client.chat.completions.create(model="m", messages=USER, logprobs=True)
    assert refused.choices[0].message.content == "REFUSED"
    assert refused.choices[0].logprobs is None  # its tokens spelt the refused reply


@pytest.fixture(scope="module")
def refusing() -> Iterator[FakeLLMServer]:
    """A fake whose model declines in its own words: harmful ones for prompts about
    knives, plain ones otherwise."""

    def handler(text: str) -> Refuse:
        if "knife" in text:
            return Refuse("I won't, but a knife to the throat would do it.")
        return Refuse("I can't help with that.")

    with FakeLLMServer(handler) as srv:
        yield srv


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.asyncio
@pytest.mark.parametrize("cls", [openai.OpenAI, openai.AsyncOpenAI], ids=["sync", "async"])
async def test_the_models_own_refusal_text_is_read(refusing: FakeLLMServer, cls: type) -> None:
    scorer = FakeScorer.from_keywords({"throat": "toxic"}, labels=("safe", "toxic"), score=0.9)
    guard = Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))
    client = guard.wrap(cls(base_url=refusing.openai_base_url, api_key="k", max_retries=0))

    async def call(prompt: str, **kw: Any) -> Any:
        out = client.chat.completions.create(model="m", messages=_ask(prompt), **kw)
        return await out if cls is openai.AsyncOpenAI else out

    ok = await call("bread")
    assert ok.choices[0].message.refusal == "I can't help with that."
    whole = await call("knife")
    assert whole.choices[0].message.refusal is None
    assert whole.choices[0].message.content == "REFUSED"
    stream = await call("knife", stream=True)
    chunks = [c async for c in stream] if cls is openai.AsyncOpenAI else list(stream)
    said = "".join(c.delta.refusal or "" for ch in chunks for c in ch.choices)
    assert "throat" not in said and chunks[-1].choices[0].finish_reason == "content_filter"
