"""Trying to break the output rail's reading of tool-call arguments (``rails/tool_args``):
streams whose text and tool calls interleave, choices of an ``n=2`` stream that differ,
parallel calls, a keyword split across fragments, the usage chunk, Anthropic streams
that mix text, tool-use, server tool-use and thinking blocks, very large and very deep
arguments, and non-streamed shapes. Every reply is canned JSON or SSE served over real
HTTP to the real SDKs; the guard is a ``FakeScorer`` flagging "knife".

A harmless reply must reach the caller unchanged (every chunk, in order, as sent); a
harmful one must reach it with no fragment of any tool call it makes."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from pytest_httpserver import HTTPServer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer
from tests.serve.test_rails_tool_args import TEXT, USER, _ant, _blocks, _oai, _serve, _sse

CLEAN = '{"to": "bob@example.com", "body": "Lunch at noon?"}'
HARMFUL = '{"to": "bob@example.com", "body": "Bring a knife tonight."}'


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


# -- OpenAI streams ------------------------------------------------------------------


def _chunk(*choices: dict, usage: dict | None = None) -> dict:
    out = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": list(choices),
    }
    if usage is not None:
        out["usage"] = usage
    return out


def _choice(delta: dict, index: int = 0, finish: str | None = None) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish}


def _call_start(i: int, name: str = "send_email") -> dict:
    """The first fragment of call ``i``: its id and name, no arguments yet."""
    return {
        "index": i,
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }


def _call_part(i: int, piece: str) -> dict:
    return {"index": i, "function": {"arguments": piece}}


def _pieces(text: str, size: int = 5) -> list[str]:
    return [text[k : k + size] for k in range(0, len(text), size)]


def _call_chunks(i: int, arguments: list[str], choice: int = 0) -> list[dict]:
    """Call ``i`` of choice ``choice``: id and name first, then each argument fragment."""
    return [_chunk(_choice({"tool_calls": [_call_start(i)]}, choice))] + [
        _chunk(_choice({"tool_calls": [_call_part(i, p)]}, choice)) for p in arguments
    ]


def _got(chunks: list[Any]) -> dict[int, tuple[str, dict[int, str], list[str | None]]]:
    """By choice: (text, arguments by call, finish reasons) of what the caller got."""
    out: dict[int, tuple[str, dict[int, str], list[str | None]]] = {}
    for chunk in chunks:
        for c in chunk.choices:
            text, args, finish = out.setdefault(c.index, ("", {}, []))
            for call in c.delta.tool_calls or []:
                args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
            finish.append(c.finish_reason)
            out[c.index] = (text + (c.delta.content or ""), args, finish)
    return out


def _interleaved(arguments: list[str]) -> list[dict]:
    """Text, then a tool call, then more text, in one choice (a model may narrate)."""
    return [
        _chunk(_choice({"role": "assistant", "content": ""})),
        _chunk(_choice({"content": TEXT})),
        *_call_chunks(0, arguments),
        _chunk(_choice({"content": " Then I will tell you what Bob said."})),
        _chunk(_choice({"content": " That is all."})),
        _chunk(_choice({}, finish="tool_calls")),
    ]


def _two_choices(arguments: list[str]) -> list[dict]:
    """``n=2``: choice 0 calls a tool, choice 1 writes text; their chunks interleave."""
    calls = _call_chunks(0, arguments, choice=0)
    words = [_chunk(_choice({"content": w}, 1)) for w in (TEXT + " Bye for now.").split(" ")]
    mixed = [c for pair in zip(calls, words, strict=False) for c in pair]
    mixed += calls[len(words) :] + words[len(calls) :]
    return [
        _chunk(_choice({"role": "assistant", "content": ""}, 0)),
        _chunk(_choice({"role": "assistant", "content": ""}, 1)),
        *mixed,
        _chunk(_choice({}, 1, "stop")),
        _chunk(_choice({}, 0, "tool_calls")),
    ]


def _parallel(first: list[str], second: list[str]) -> list[dict]:
    """Two calls in one choice, their fragments interleaved by call index."""
    a, b = _call_chunks(0, first), _call_chunks(1, second)
    return [
        _chunk(_choice({"role": "assistant", "content": None})),
        *[c for pair in zip(a, b, strict=False) for c in pair],
        *a[len(b) :],
        *b[len(a) :],
        _chunk(_choice({}, finish="tool_calls")),
    ]


SPLIT = ['{"body": "Bring a kn', 'ife tonight."}']  # the keyword across two fragments

OPENAI_STREAMS = {
    # name: (clean chunks, harmful chunks)
    "interleaved-text": (_interleaved(_pieces(CLEAN)), _interleaved(SPLIT)),
    "n2-tool-and-text": (_two_choices(_pieces(CLEAN)), _two_choices(_pieces(HARMFUL))),
    "parallel-harmful-second": (
        _parallel(_pieces(CLEAN), _pieces(CLEAN, 3)),
        _parallel(_pieces(CLEAN), SPLIT),
    ),
}


def _check_openai(sent: list[dict], clean: list[Any], harmful: list[Any]) -> None:
    """The clean stream as sent, chunk for chunk; the harmful one with no fragment of
    any call, every choice ended by the refusal."""
    assert [c.to_dict() for c in clean] == sent
    got = _got(harmful)
    assert all(args == {} for _, args, _ in got.values()), got
    assert all(finish[-1] == "content_filter" for _, _, finish in got.values())
    assert "REFUSED" in got[0][0]


@pytest.mark.parametrize("name", list(OPENAI_STREAMS))
def test_openai_stream_shapes(guard: Guard, httpserver: HTTPServer, name: str) -> None:
    clean, harmful = OPENAI_STREAMS[name]
    _serve(httpserver, "/v1/chat/completions", _sse(clean), _sse(harmful))
    client = guard.wrap(_oai(httpserver))
    got = [list(client.chat.completions.create(model="m", messages=USER, stream=True))]
    got.append(list(client.chat.completions.create(model="m", messages=USER, stream=True)))
    _check_openai(clean, *got)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["interleaved-text", "n2-tool-and-text"])
async def test_async_openai_stream_shapes(guard: Guard, httpserver: HTTPServer, name: str) -> None:
    clean, harmful = OPENAI_STREAMS[name]
    _serve(httpserver, "/v1/chat/completions", _sse(clean), _sse(harmful))
    client = guard.wrap(_oai(httpserver, openai.AsyncOpenAI))
    got = []
    for _ in range(2):
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        got.append([c async for c in stream])
    _check_openai(clean, *got)


def test_the_usage_chunk_after_a_tool_call_reaches_the_caller(
    guard: Guard, httpserver: HTTPServer
) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
    sent = [
        _chunk(_choice({"role": "assistant", "content": None})),
        *_call_chunks(0, _pieces(CLEAN)),
        _chunk(_choice({}, finish="tool_calls")),
        _chunk(usage=usage),  # choices empty
    ]
    _serve(httpserver, "/v1/chat/completions", _sse(sent))
    client = guard.wrap(_oai(httpserver))
    got = list(
        client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert [c.to_dict() for c in got] == sent
    assert got[-1].usage is not None and got[-1].usage.total_tokens == 14


# -- Anthropic streams ---------------------------------------------------------------


def _events_sse(events: list[dict]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def _start() -> dict:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    return {"type": "message_start", "message": message}


def _block(index: int, block: dict, deltas: list[dict]) -> list[dict]:
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *[{"type": "content_block_delta", "index": index, "delta": d} for d in deltas],
        {"type": "content_block_stop", "index": index},
    ]


def _text(index: int, text: str | list[str]) -> list[dict]:
    pieces = _pieces(text, 11) if isinstance(text, str) else text
    deltas = [{"type": "text_delta", "text": p} for p in pieces]
    return _block(index, {"type": "text", "text": ""}, deltas)


def _tool(index: int, fragments: list[str], kind: str = "tool_use", seed: Any = None) -> list[dict]:
    block = {"type": kind, "id": f"toolu_{index}", "name": "send_email", "input": seed or {}}
    if kind == "server_tool_use":
        block["name"] = "web_search"
    deltas = [{"type": "input_json_delta", "partial_json": p} for p in fragments]
    return _block(index, block, deltas)


def _thinking(index: int, thought: str) -> list[dict]:
    deltas = [
        {"type": "thinking_delta", "thinking": thought},
        {"type": "signature_delta", "signature": "sig"},
    ]
    return _block(index, {"type": "thinking", "thinking": "", "signature": ""}, deltas)


def _message(*blocks: list[dict], stop: str = "tool_use") -> list[dict]:
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": 9},
    }
    return [_start(), *[e for b in blocks for e in b], end, {"type": "message_stop"}]


TAIL = "Bob will have it soon, and I will tell you his answer."
ANTHROPIC_STREAMS = {
    # name: (clean events, harmful events, the blocks a caller gets of the harmful one)
    "text-tool-text": (
        _message(_text(0, TEXT), _tool(1, _pieces(CLEAN)), _text(2, TAIL)),
        _message(_text(0, TEXT), _tool(1, SPLIT), _text(2, TAIL)),
        {0: ("text", TEXT), 1: ("text", "REFUSED")},
    ),
    # the text block's last words are unchecked when the call starts: its stop is held
    # with them, so the refusal goes into that block, still open for the caller
    "text-open-before-tool": (
        _message(_text(0, [TEXT, " Ok"]), _tool(1, _pieces(CLEAN))),
        _message(_text(0, [TEXT, " Ok"]), _tool(1, _pieces(HARMFUL))),
        {0: ("text", TEXT + "REFUSED")},
    ),
    "server-tool-use": (
        _message(_tool(0, ['{"query": "bread', ' recipes"}'], "server_tool_use"), _text(1, TAIL)),
        _message(_tool(0, ['{"query": "kn', 'ife fights"}'], "server_tool_use"), _text(1, TAIL)),
        {0: ("text", "REFUSED")},
    ),
    "input-in-start-no-deltas": (
        _message(_text(0, TEXT), _tool(1, [], seed=json.loads(CLEAN))),
        _message(_text(0, TEXT), _tool(1, [], seed=json.loads(HARMFUL))),
        {0: ("text", TEXT), 1: ("text", "REFUSED")},
    ),
    "thinking-not-read": (
        _message(_thinking(0, "a knife is not needed"), _text(1, TEXT), _tool(2, _pieces(CLEAN))),
        _message(_thinking(0, "no need"), _text(1, TEXT), _tool(2, _pieces(HARMFUL))),
        {0: ("thinking", ""), 1: ("text", TEXT), 2: ("text", "REFUSED")},
    ),
    "parallel-harmful-second": (
        _message(_text(0, TEXT), _tool(1, _pieces(CLEAN)), _tool(2, _pieces(CLEAN))),
        _message(_text(0, TEXT), _tool(1, _pieces(CLEAN)), _tool(2, SPLIT)),
        {0: ("text", TEXT), 1: ("text", "REFUSED")},
    ),
}


def _check_anthropic(name: str, clean: list[Any], harmful: list[Any]) -> None:
    sent, _, refused = ANTHROPIC_STREAMS[name]
    assert [ev.to_dict() for ev in clean] == sent  # every event, as sent
    assert _blocks(harmful) == (refused, "refusal")


@pytest.mark.parametrize("name", list(ANTHROPIC_STREAMS))
def test_anthropic_stream_shapes(guard: Guard, httpserver: HTTPServer, name: str) -> None:
    clean, harmful, _ = ANTHROPIC_STREAMS[name]
    _serve(httpserver, "/v1/messages", _events_sse(clean), _events_sse(harmful))
    client = guard.wrap(_ant(httpserver))
    got = [
        list(client.messages.create(model="claude-x", max_tokens=50, messages=USER, stream=True))
        for _ in range(2)
    ]
    _check_anthropic(name, *got)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["text-tool-text", "parallel-harmful-second"])
async def test_async_anthropic_stream_shapes(
    guard: Guard, httpserver: HTTPServer, name: str
) -> None:
    clean, harmful, _ = ANTHROPIC_STREAMS[name]
    _serve(httpserver, "/v1/messages", _events_sse(clean), _events_sse(harmful))
    client = guard.wrap(_ant(httpserver, anthropic.AsyncAnthropic))
    got = []
    for _ in range(2):
        stream = await client.messages.create(
            model="claude-x", max_tokens=50, messages=USER, stream=True
        )
        got.append([ev async for ev in stream])
    _check_anthropic(name, *got)


# -- very large and very deep arguments ----------------------------------------------


def _counting_guard(policy: Policy) -> tuple[Guard, list[int]]:
    """A guard whose scorer records the length of every window it scores."""
    keywords = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"))
    seen: list[int] = []

    def handler(window: str) -> dict[str, float]:
        seen.append(len(window))
        return dict(keywords.handler(window))

    return Guard.from_scorer(FakeScorer(handler), policy=policy), seen


#: ~200 KB of harmless JSON arguments (about 520 windows of the fake's 512 characters).
BIG = json.dumps({"rows": [{"id": i, "note": "lunch at noon with Bob"} for i in range(4500)]})


def _big_stream() -> list[dict]:
    return [
        _chunk(_choice({"role": "assistant", "content": None})),
        *_call_chunks(0, _pieces(BIG, 400)),
        _chunk(_choice({}, finish="tool_calls")),
    ]


def test_large_streamed_arguments_cost_what_the_policy_bounds(httpserver: HTTPServer) -> None:
    """A 200 KB argument is checked under ``Policy.max_chars`` / ``max_windows`` like a
    200 KB text: fail closed (the default), it is refused as unscored, and no window of
    it is scored; fail open, it reaches the caller intact after a bounded number of
    windows (24 a text by default), not the ~520 the whole would cost."""
    assert len(BIG) > 200_000
    sent = _big_stream()
    _serve(httpserver, "/v1/chat/completions", _sse(sent), _sse(sent))
    closed, seen_closed = _counting_guard(Policy(refusal="REFUSED", max_chars=None))
    refused = list(
        closed.wrap(_oai(httpserver)).chat.completions.create(model="m", messages=USER, stream=True)
    )
    assert _got(refused)[0][1] == {} and _got(refused)[0][2][-1] == "content_filter"
    opened, seen_open = _counting_guard(Policy(on_error="open", max_chars=None))
    got = list(
        opened.wrap(_oai(httpserver)).chat.completions.create(model="m", messages=USER, stream=True)
    )
    assert [c.to_dict() for c in got] == sent
    for seen in (seen_closed, seen_open):
        assert 0 < len(seen) <= 3 * 24 and max(seen) <= 512


@pytest.mark.parametrize("depth", [600, 2000], ids=["deeper-than-recursion", "deeper-than-json"])
def test_deeply_nested_arguments_are_decided_not_raised(
    guard: Guard, httpserver: HTTPServer, depth: int
) -> None:
    """Arguments nested deeper than Python's recursion limit: they were a RecursionError
    out of ``create`` (from ``json.loads``, or from walking the parsed values) instead of
    a decision; the words in them are checked like any others."""
    args = "[" * depth + '"a knife"' + "]" * depth
    clean = "[" * depth + '"a fork"' + "]" * depth
    message = {"role": "assistant", "content": None, "tool_calls": [_call_start(0)]}
    assert guard.check_output(USER, message).allowed
    message["tool_calls"][0]["function"]["arguments"] = args
    assert not guard.check_output(USER, message).allowed
    sent = [
        _chunk(_choice({"role": "assistant", "content": None})),
        *_call_chunks(0, _pieces(clean, 997)),
        _chunk(_choice({}, finish="tool_calls")),
    ]
    harmful = [*sent[:1], *_call_chunks(0, _pieces(args, 997)), sent[-1]]
    _serve(httpserver, "/v1/chat/completions", _sse(sent), _sse(harmful))
    client = guard.wrap(_oai(httpserver))
    got = [list(client.chat.completions.create(model="m", messages=USER, stream=True))]
    got.append(list(client.chat.completions.create(model="m", messages=USER, stream=True)))
    _check_openai(sent, *got)


# -- whole replies -------------------------------------------------------------------


def _completion(content: str | None, *arguments: Any) -> dict:
    calls = [
        {**_call_start(i), "function": {"name": "f", "arguments": a}}
        for i, a in enumerate(arguments)
    ]
    message = {"role": "assistant", "content": content, "tool_calls": calls}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
    }


@pytest.mark.parametrize(
    ("clean", "harmful"),
    [
        (
            _completion(None, '{"body": "a \\u0066ork"}'),
            _completion(None, '{"body": "a \\u006bnife"}'),
        ),
        (
            _completion(None, '{"p": [["a", ["b", {"q": ["fork"]}]]]}'),
            _completion(None, '{"p": [["a", ["b", {"q": ["kn\\u0069fe"]}]]]}'),
        ),
        (_completion(TEXT, "", None), _completion("Bring a knife.", "", None)),
    ],
    ids=["escaped-unicode", "nested-lists", "empty-and-null-arguments"],
)
def test_openai_whole_reply_shapes(
    guard: Guard, httpserver: HTTPServer, clean: dict, harmful: dict
) -> None:
    _serve(httpserver, "/v1/chat/completions", clean, harmful)
    client = guard.wrap(_oai(httpserver))
    got = client.chat.completions.create(model="m", messages=USER)
    assert got.to_dict() == clean
    refused = client.chat.completions.create(model="m", messages=USER)
    assert refused.choices[0].message.content == "REFUSED"
    assert refused.choices[0].message.tool_calls is None


def _anthropic_message(*blocks: dict) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": list(blocks),
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 9},
    }


def _use(tool_input: dict) -> dict:
    return {"type": "tool_use", "id": "toolu_1", "name": "send_email", "input": tool_input}


def test_anthropic_whole_reply_reads_tool_use_not_thinking(
    guard: Guard, httpserver: HTTPServer
) -> None:
    thinking = {
        "type": "thinking",
        "thinking": "Bob asked about a knife; not here.",
        "signature": "s",
    }
    clean = _anthropic_message(
        thinking,
        {"type": "redacted_thinking", "data": "knife"},
        {"type": "text", "text": TEXT},
        _use(json.loads(CLEAN)),
    )
    harmful = _anthropic_message(
        {**thinking, "thinking": "fine"}, {"type": "text", "text": TEXT}, _use(json.loads(HARMFUL))
    )
    _serve(httpserver, "/v1/messages", clean, harmful)
    client = guard.wrap(_ant(httpserver))
    got = client.messages.create(model="claude-x", max_tokens=50, messages=USER)
    assert got.to_dict() == clean
    refused = client.messages.create(model="claude-x", max_tokens=50, messages=USER)
    assert [b.to_dict() for b in refused.content] == [{"type": "text", "text": "REFUSED"}]


# -- @guard.protect ------------------------------------------------------------------


def test_protect_reads_tool_calls_of_an_sdk_stream_it_returns(
    guard: Guard, httpserver: HTTPServer
) -> None:
    clean, harmful = OPENAI_STREAMS["parallel-harmful-second"]
    _serve(httpserver, "/v1/chat/completions", _sse(clean), _sse(harmful))
    raw = _oai(httpserver)

    @guard.protect
    def chat(messages: list[dict]) -> Any:
        return raw.chat.completions.create(model="m", messages=messages, stream=True)

    _check_openai(clean, list(chat(USER)), list(chat(USER)))


def test_protect_refuses_a_generator_of_sdk_chunks_it_cannot_read(
    guard: Guard, httpserver: HTTPServer
) -> None:
    """A generator re-yielding an SDK stream's chunks is not an SDK stream: its items are
    not str, so the rail fails closed (TypeError) before any chunk, tool call included,
    reaches the caller."""
    _serve(httpserver, "/v1/chat/completions", _sse(OPENAI_STREAMS["interleaved-text"][0]))
    raw = _oai(httpserver)

    @guard.protect
    def chat(messages: list[dict]) -> Any:
        yield from raw.chat.completions.create(model="m", messages=messages, stream=True)

    stream = chat(USER)
    with pytest.raises(TypeError, match="str chunks"):
        next(iter(stream))


def test_a_tool_input_that_contains_itself_is_read_once(guard: Guard) -> None:
    """A caller's own dict handed to ``check_output`` may hold a cycle: it was a
    RecursionError; each container is now read once."""
    tool_input: dict[str, Any] = {"body": "bring a knife"}
    tool_input["again"] = [tool_input]
    block = {"type": "tool_use", "id": "t", "name": "f", "input": tool_input}
    assert not guard.check_output(USER, [block]).allowed
    tool_input["body"] = "bring a fork"
    assert guard.check_output(USER, [block]).allowed


def test_every_typed_value_of_a_tool_input_is_read(guard: Guard) -> None:
    """Typed (pydantic) values are read through their dumps, each one: the third of
    three models is read too, though each dump is freed once read."""
    from pydantic import BaseModel

    class Line(BaseModel):
        text: str

    block = {"type": "tool_use", "id": "t", "name": "f", "input": {"lines": [Line(text="hi")]}}
    assert guard.check_output(USER, [block]).allowed
    block["input"] = {"lines": [Line(text="hi"), Line(text="Bob"), Line(text="a knife")]}
    assert not guard.check_output(USER, [block]).allowed
