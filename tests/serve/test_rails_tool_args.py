"""The output rail reads the arguments a model writes into tool calls (OpenAI
``tool_calls[i].function.arguments``, Anthropic ``tool_use`` input), whole and
streamed, served as canned bodies over real HTTP (pytest-httpserver) to the real SDKs.

Each test sends a harmless reply first (it must pass intact, its arguments byte for byte
the server's) and then a harmful one (refused, its tool calls gone): before the rail read
tool-call arguments, the second passed whole."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from pytest_httpserver import HTTPServer

from annotators.testing import anthropic_stream_body
from guardrail_dro.errors import GuardViolation
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

USER = [{"role": "user", "content": "email Bob for me"}]
TEXT = "I will send the email you asked for, right now."  # one checked sentence (>= 40)
#: Harmless arguments, spaced oddly so that a re-serialised copy would differ. Keys are
#: read too (``test_rails_leaks``): a model chooses a free-form object's keys.
CLEAN_ARGS = '{"to":  "bob@example.com", "body": "Lunch at noon?", "fork": [1, 2]}'
HARMFUL_ARGS = '{"to": "bob@example.com", "body": "Bring a knife tonight."}'


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


def _serve(httpserver: HTTPServer, path: str, *bodies: dict | str | bytes) -> None:
    """Answer the next requests to ``path`` with ``bodies`` in order (a str or bytes is
    an SSE stream, a dict JSON)."""
    for body in bodies:
        handler = httpserver.expect_ordered_request(path)
        if isinstance(body, str | bytes):
            handler.respond_with_data(body, content_type="text/event-stream")
        else:
            handler.respond_with_json(body)


def _sse(chunks: list[dict]) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def _oai(httpserver: HTTPServer, cls: type = openai.OpenAI) -> Any:
    return cls(api_key="k", base_url=httpserver.url_for("/v1"), max_retries=0)


def _ant(httpserver: HTTPServer, cls: type = anthropic.Anthropic) -> Any:
    return cls(api_key="k", base_url=httpserver.url_for("/"), max_retries=0)


def _call(arguments: str, index: int = 0) -> dict:
    return {
        "id": f"t{index}",
        "type": "function",
        "function": {"name": "send_email", "arguments": arguments},
    }


def _completion(content: str | None, *calls: dict) -> dict:
    message = {"role": "assistant", "content": content, "tool_calls": list(calls)}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
    }


def _assert_refused(reply: Any) -> None:
    choice = reply.choices[0]
    assert choice.message.content == "REFUSED" and choice.finish_reason == "content_filter"
    assert choice.message.tool_calls is None  # an agent loop has nothing to run


@pytest.mark.parametrize(
    "harmful",
    [
        _completion(None, _call(HARMFUL_ARGS)),
        _completion("Sending.", _call(CLEAN_ARGS), _call('{"p": {"q": ["a", "knife"]}}', 1)),
        _completion(None, _call('{"body": "Bring a knife')),  # not JSON: the raw string
        _completion(
            None,
            {"id": "t9", "type": "custom", "custom": {"name": "post", "input": "a knife for you"}},
        ),
    ],
    ids=["json", "nested-second-call", "invalid-json", "custom-tool"],
)
def test_openai_tool_call_arguments_are_checked(
    guard: Guard, httpserver: HTTPServer, harmful: dict
) -> None:
    _serve(httpserver, "/v1/chat/completions", _completion("Sending.", _call(CLEAN_ARGS)), harmful)
    client = guard.wrap(_oai(httpserver))
    clean = client.chat.completions.create(model="m", messages=USER)
    assert clean.choices[0].message.tool_calls[0].function.arguments == CLEAN_ARGS
    _assert_refused(client.chat.completions.create(model="m", messages=USER))


def test_a_raising_policy_raises_on_tool_call_arguments(
    guard: Guard, httpserver: HTTPServer
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _completion(None, _call(CLEAN_ARGS)),
        _completion(None, _call(HARMFUL_ARGS)),
    )
    client = guard.with_policy(Policy(raise_on_violation=True)).wrap(_oai(httpserver))
    client.chat.completions.create(model="m", messages=USER)
    with pytest.raises(GuardViolation) as caught:
        client.chat.completions.create(model="m", messages=USER)
    assert caught.value.rail == "output"


def test_protect_reads_a_message_dicts_tool_calls(guard: Guard) -> None:
    @guard.protect(input=False)
    def chat(messages: list[dict], arguments: str) -> dict:
        return {"role": "assistant", "content": None, "tool_calls": [_call(arguments)]}

    assert chat(USER, CLEAN_ARGS)["tool_calls"][0]["function"]["arguments"] == CLEAN_ARGS
    assert chat(USER, HARMFUL_ARGS) == {"role": "assistant", "content": "REFUSED"}


@pytest.mark.asyncio
async def test_check_output_reads_tool_call_arguments(guard: Guard) -> None:
    """``Guard.check_output`` (the rail a user calls by hand) reads what ``wrap`` reads:
    it scored only the message's content, so a harmful argument passed."""
    clean = {"role": "assistant", "content": None, "tool_calls": [_call(CLEAN_ARGS)]}
    harmful = {"role": "assistant", "content": None, "tool_calls": [_call(HARMFUL_ARGS)]}
    blocks = [{"type": "tool_use", "id": "t1", "name": "send", "input": json.loads(HARMFUL_ARGS)}]
    assert guard.check_output(USER, clean).allowed
    assert not guard.check_output(USER, harmful).allowed
    assert not guard.check_output(USER, blocks).allowed
    assert not (await guard.acheck_output(USER, harmful)).allowed


@pytest.mark.asyncio
async def test_async_openai_tool_call_arguments_are_checked(
    guard: Guard, httpserver: HTTPServer
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _completion(None, _call(CLEAN_ARGS)),
        _completion(None, _call(HARMFUL_ARGS)),
    )
    client = guard.wrap(_oai(httpserver, openai.AsyncOpenAI))
    clean = await client.chat.completions.create(model="m", messages=USER)
    assert clean.choices[0].message.tool_calls[0].function.arguments == CLEAN_ARGS
    _assert_refused(await client.chat.completions.create(model="m", messages=USER))


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _tool_chunks(*arguments: str) -> list[dict]:
    """A streamed reply: some text, then each call's arguments in 7-character fragments
    (the first fragment with the call's id and name, as the API sends them)."""
    chunks = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": TEXT})]
    for i, args in enumerate(arguments):
        chunks.append(_chunk({"tool_calls": [{**_call("", i), "index": i}]}))
        for k in range(0, len(args), 7):
            piece = {"index": i, "function": {"arguments": args[k : k + 7]}}
            chunks.append(_chunk({"tool_calls": [piece]}))
    chunks.append(_chunk({}, "tool_calls"))
    return chunks


def _streamed(chunks: list[Any]) -> tuple[str, dict[int, str], list[str | None]]:
    """(text, arguments by call index, finish reasons) of the chunks a caller got."""
    text, args, finish = "", {}, []
    for chunk in chunks:
        for c in chunk.choices:
            text += c.delta.content or ""
            for call in c.delta.tool_calls or []:
                args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
            finish.append(c.finish_reason)
    return text, args, finish


def _check_openai_streams(clean: list[Any], harmful: list[Any]) -> None:
    assert [c.to_dict() for c in clean] == _tool_chunks(CLEAN_ARGS, CLEAN_ARGS)  # as sent
    assert _streamed(clean)[1] == {0: CLEAN_ARGS, 1: CLEAN_ARGS}
    text, args, finish = _streamed(harmful)
    assert args == {}  # no fragment of either call: the first waits on the second
    assert text == TEXT + "REFUSED" and finish[-1] == "content_filter"  # the text passed


def test_openai_streamed_tool_call_arguments_are_checked(
    guard: Guard, httpserver: HTTPServer
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _sse(_tool_chunks(CLEAN_ARGS, CLEAN_ARGS)),
        _sse(_tool_chunks(CLEAN_ARGS, HARMFUL_ARGS)),
    )
    client = guard.wrap(_oai(httpserver))
    clean = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    harmful = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    _check_openai_streams(clean, harmful)


@pytest.mark.asyncio
async def test_async_openai_streamed_tool_call_arguments_are_checked(
    guard: Guard, httpserver: HTTPServer
) -> None:
    _serve(
        httpserver,
        "/v1/chat/completions",
        _sse(_tool_chunks(CLEAN_ARGS, CLEAN_ARGS)),
        _sse(_tool_chunks(CLEAN_ARGS, HARMFUL_ARGS)),
    )
    client = guard.wrap(_oai(httpserver, openai.AsyncOpenAI))
    streams = []
    for _ in range(2):
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        streams.append([chunk async for chunk in stream])
    _check_openai_streams(*streams)


def test_a_stream_cut_inside_a_tool_call_is_checked_on_what_came(
    guard: Guard, httpserver: HTTPServer
) -> None:
    cut = _tool_chunks(HARMFUL_ARGS[:-3])[:-1]  # no finish_reason, the JSON unfinished
    _serve(httpserver, "/v1/chat/completions", _sse(_tool_chunks(CLEAN_ARGS)[:-1]), _sse(cut))
    client = guard.wrap(_oai(httpserver))
    clean = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert _streamed(clean)[1] == {0: CLEAN_ARGS}
    text, args, finish = _streamed(
        client.chat.completions.create(model="m", messages=USER, stream=True)
    )
    assert args == {} and text == TEXT + "REFUSED" and finish[-1] == "content_filter"


CLEAN_INPUT = json.loads(CLEAN_ARGS)
HARMFUL_INPUT = {"to": "bob@example.com", "body": {"lines": ["Hi Bob,", "bring a knife."]}}


def _message(tool_input: dict, *, thinking: str | None = None) -> dict:
    content: list[dict] = [
        {"type": "text", "text": TEXT},
        {"type": "tool_use", "id": "toolu_1", "name": "send_email", "input": tool_input},
    ]
    if thinking is not None:  # not shown to users: not read
        content.insert(0, {"type": "thinking", "thinking": thinking, "signature": "s"})
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 9},
    }


def test_anthropic_tool_use_input_is_checked(guard: Guard, httpserver: HTTPServer) -> None:
    clean_msg = _message(CLEAN_INPUT, thinking="a knife is not in the email")
    _serve(httpserver, "/v1/messages", clean_msg, _message(HARMFUL_INPUT))
    client = guard.wrap(_ant(httpserver))
    clean = client.messages.create(model="claude-x", max_tokens=50, messages=USER)
    assert clean.to_dict()["content"] == clean_msg["content"]
    refused = client.messages.create(model="claude-x", max_tokens=50, messages=USER)
    assert refused.stop_reason == "refusal"
    assert [b.to_dict() for b in refused.content] == [{"type": "text", "text": "REFUSED"}]


def _blocks(events: list[Any]) -> tuple[dict[int, tuple[str, str]], str | None]:
    """The content blocks a caller reassembles (type, text or input JSON, by index) and
    the stop reason; every delta must fall in an open block, every block be closed."""
    blocks: dict[int, tuple[str, str]] = {}
    open_: set[int] = set()
    stop = None
    for ev in events:
        if ev.type == "content_block_start":
            assert ev.index not in blocks, "a block index started twice"
            blocks[ev.index] = (ev.content_block.type, "")
            open_.add(ev.index)
        elif ev.type == "content_block_delta":
            assert ev.index in open_, f"a delta outside an open block: {ev.index}"
            kind, got = blocks[ev.index]
            piece = {"text_delta": "text", "input_json_delta": "partial_json"}.get(ev.delta.type)
            blocks[ev.index] = (kind, got + (getattr(ev.delta, piece) if piece else ""))
        elif ev.type == "content_block_stop":
            open_.remove(ev.index)
        elif ev.type == "message_delta":
            stop = ev.delta.stop_reason
    assert not open_ and events[-1].type == "message_stop"
    return blocks, stop


def _sent_events(body: bytes) -> list[dict]:
    lines = body.decode().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


def _check_anthropic_streams(clean: list[Any], harmful: list[Any]) -> None:
    assert [ev.to_dict() for ev in clean] == _sent_events(
        anthropic_stream_body(_message(CLEAN_INPUT))
    )  # every event, as sent
    assert _blocks(clean) == (
        {0: ("text", TEXT), 1: ("tool_use", json.dumps(CLEAN_INPUT))},
        "tool_use",
    )
    # the text passed before the call began; the call never reached the caller, and the
    # refusal takes its place in a text block of its own
    assert _blocks(harmful) == ({0: ("text", TEXT), 1: ("text", "REFUSED")}, "refusal")


def test_anthropic_streamed_tool_use_input_is_checked(guard: Guard, httpserver: HTTPServer) -> None:
    _serve(
        httpserver,
        "/v1/messages",
        anthropic_stream_body(_message(CLEAN_INPUT)),
        anthropic_stream_body(_message(HARMFUL_INPUT)),
    )
    client = guard.wrap(_ant(httpserver))
    streams = [
        list(client.messages.create(model="claude-x", max_tokens=50, messages=USER, stream=True))
        for _ in range(2)
    ]
    _check_anthropic_streams(*streams)


@pytest.mark.asyncio
async def test_async_anthropic_streamed_tool_use_input_is_checked(
    guard: Guard, httpserver: HTTPServer
) -> None:
    _serve(
        httpserver,
        "/v1/messages",
        anthropic_stream_body(_message(CLEAN_INPUT)),
        anthropic_stream_body(_message(HARMFUL_INPUT)),
    )
    client = guard.wrap(_ant(httpserver, anthropic.AsyncAnthropic))
    streams = []
    for _ in range(2):
        stream = await client.messages.create(
            model="claude-x", max_tokens=50, messages=USER, stream=True
        )
        streams.append([ev async for ev in stream])
    _check_anthropic_streams(*streams)


def test_a_streamed_tool_calls_arguments_are_scored_once(httpserver: HTTPServer) -> None:
    """A call's arguments are checked whole when the call completes; the stream's final
    check scored them a second time (every window of them again)."""
    scored: list[str] = []

    def handler(text: str) -> dict[str, float]:
        scored.append(text)
        return {"toxic": 0.9} if "knife" in text.lower() else {}

    guard = Guard.from_scorer(FakeScorer(handler), policy=Policy(refusal="REFUSED"))
    _serve(httpserver, "/v1/chat/completions", _sse(_tool_chunks(CLEAN_ARGS)))
    client = guard.wrap(_oai(httpserver))
    list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert scored.count("to\nbob@example.com\nbody\nLunch at noon?\nfork") == 1, scored
