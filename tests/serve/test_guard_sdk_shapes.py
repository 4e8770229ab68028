"""Reply and message shapes the fake LLM server does not produce, served as canned
bodies over real HTTP (pytest-httpserver) to the real SDKs: tool calls on a refused
reply, OpenAI ``n > 1`` streams, messages given as an iterator, SDK subclasses."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from pytest_httpserver import HTTPServer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


def _client(httpserver: HTTPServer, cls=openai.OpenAI):
    return cls(api_key="k", base_url=httpserver.url_for("/v1"), max_retries=0)


def _completion(message: dict, finish: str = "stop") -> dict:
    return {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": finish, "message": message}]}


def _sse(chunks: list[dict]) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def _chunk(index: int, text: str, finish: str | None = None) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": {"content": text}, "finish_reason": finish}]}


USER = [{"role": "user", "content": "hi"}]
TOOL_CALL = {"id": "t1", "type": "function",
             "function": {"name": "lookup_address", "arguments": '{"name": "them"}'}}


def test_a_refused_reply_loses_its_tool_calls(guard: Guard, httpserver: HTTPServer) -> None:
    message = {"role": "assistant", "content": "Grab a knife, I'll find their address.",
               "tool_calls": [TOOL_CALL]}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        _completion(message, "tool_calls"))
    reply = guard.wrap(_client(httpserver)).chat.completions.create(model="m", messages=USER)
    choice = reply.choices[0]
    assert choice.message.content == "REFUSED" and choice.finish_reason == "content_filter"
    assert choice.message.tool_calls is None  # an agent loop must not run them

    @guard.protect(input=False)
    def chat(messages: list[dict]) -> dict:
        return message

    assert chat(USER) == {"role": "assistant", "content": "REFUSED"}


def test_a_clean_reply_keeps_its_tool_calls(guard: Guard, httpserver: HTTPServer) -> None:
    message = {"role": "assistant", "content": "Looking it up.", "tool_calls": [TOOL_CALL]}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        _completion(message, "tool_calls"))
    reply = guard.wrap(_client(httpserver)).chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.tool_calls[0].function.name == "lookup_address"


def _interleaved() -> list[dict]:
    # n=2: the API interleaves the choices' chunks; "kni" + "fe" are one choice's word
    return [_chunk(0, "Take the kni"), _chunk(1, "Bread is "), _chunk(0, "fe and go"),
            _chunk(1, "nice"), _chunk(0, "", "stop"), _chunk(1, "", "stop")]


def _texts(chunks: Iterator) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks:
        for c in chunk.choices:
            out[c.index] = out.get(c.index, "") + (c.delta.content or "")
    return out


def test_each_choice_of_an_n2_stream_is_checked_alone(
    guard: Guard, httpserver: HTTPServer
) -> None:
    assert not guard.check("Take the knife and go").allowed
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        _sse(_interleaved()), content_type="text/event-stream")
    stream = guard.wrap(_client(httpserver)).chat.completions.create(
        model="m", messages=USER, n=2, stream=True)
    out = _texts(stream)
    assert "knife" not in out.get(0, "") + out.get(1, "")
    assert out[0].endswith("REFUSED") and out[1].endswith("REFUSED")  # both choices end


def test_a_clean_n2_stream_passes_whole(guard: Guard, httpserver: HTTPServer) -> None:
    chunks = [_chunk(0, "Take the bre"), _chunk(1, "Bread is "), _chunk(0, "ad and go"),
              _chunk(1, "nice"), _chunk(0, "", "stop"), _chunk(1, "", "stop")]
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        _sse(chunks), content_type="text/event-stream")
    stream = guard.wrap(_client(httpserver)).chat.completions.create(
        model="m", messages=USER, n=2, stream=True)
    assert _texts(stream) == {0: "Take the bread and go", 1: "Bread is nice"}


def test_messages_given_as_an_iterator_reach_the_model(
    guard: Guard, httpserver: HTTPServer
) -> None:
    message = {"role": "assistant", "content": "Bread needs flour."}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(_completion(message))
    client = guard.wrap(_client(httpserver))
    client.chat.completions.create(model="m", messages=iter(USER))
    sent = json.loads(httpserver.log[-1][0].get_data())["messages"]
    assert sent == USER  # the input rail read them without using them up

    seen = []

    @guard.protect(output=False)
    def chat(messages: list[dict]) -> str:
        seen.append(list(messages))
        return "ok"

    assert chat(iter(USER)) == "ok" and seen == [USER]


@pytest.mark.asyncio
async def test_a_subclass_of_the_async_client_is_awaited(
    guard: Guard, httpserver: HTTPServer
) -> None:
    class MyAsyncOpenAI(openai.AsyncOpenAI):
        pass

    message = {"role": "assistant", "content": "Bread needs flour."}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(_completion(message))
    client = guard.wrap(_client(httpserver, MyAsyncOpenAI))
    reply = await client.chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "Bread needs flour."


def test_protect_blocked_input_in_the_callers_shape(guard: Guard) -> None:
    from guardrail_dro.serve.rails import anthropic_refusal, openai_refusal

    attack = [{"role": "user", "content": "sell me a knife"}]
    called = []

    @guard.protect(blocked=openai_refusal)
    def chat(messages: list[dict]) -> object:
        called.append(1)
        raise AssertionError("a blocked input never reaches the model")

    reply = chat(attack)
    assert reply.choices[0].message.content == "REFUSED" and not called
    assert reply.choices[0].finish_reason == "content_filter"

    @guard.protect(blocked=lambda r: anthropic_refusal(r, model="claude-x", stream=True))
    def chat_stream(messages: list[dict]) -> object:
        raise AssertionError("a blocked input never reaches the model")

    events = list(chat_stream(attack))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert events[0].message.model == "claude-x"

    @guard.protect
    def words(messages: list[dict]) -> Iterator[str]:  # a generator: iterated by its caller
        yield from ["never", "sent"]

    assert list(words(attack)) == ["REFUSED"]  # once, not character by character
    assert list(words(USER)) == ["never", "sent"]


def test_protect_on_a_method_reads_the_messages_after_self(guard: Guard) -> None:
    class Bot:
        @guard.protect(output=False)
        def chat(self, messages: list[dict]) -> str:
            return "hi"

    assert Bot().chat(USER) == "hi"
    assert Bot().chat([{"role": "user", "content": "a knife"}]) == "REFUSED"


@pytest.mark.parametrize(
    "messages",
    [
        [("system", "be nice"), ("human", "give me a knife plan")],  # LangChain tuples
        [{"role": "user", "parts": [{"text": "give me a knife plan"}]}],  # Gemini parts
        [{"role": "USER", "message": "give me a knife plan"}],  # Cohere v1
    ],
    ids=["langchain-tuples", "gemini-parts", "cohere-user"],
)
def test_the_input_rail_reads_other_chat_shapes(guard: Guard, messages: list) -> None:
    @guard.protect(output=False)
    def chat(messages: list) -> str:
        return "the model was called"

    assert chat(messages) == "REFUSED"


def test_a_message_the_input_rail_cannot_read_is_an_error(guard: Guard) -> None:
    @guard.protect(output=False)
    def chat(messages: list) -> str:
        return "the model was called"

    with pytest.raises(TypeError, match="cannot read chat message 1: .* no role"):
        chat([{"role": "system", "content": "x"}, object()])
    with pytest.raises(TypeError, match="cannot read chat message 0: a 'user' turn with no"):
        chat([{"role": "user", "text": "a knife"}])


def test_a_blocked_stream_says_why_it_has_no_response(
    guard: Guard, httpserver: HTTPServer
) -> None:
    client = guard.wrap(_client(httpserver))
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a knife"}], stream=True)
    with pytest.raises(AttributeError, match="the input rail refused the request"):
        stream.response  # noqa: B018
    assert _texts(stream) == {0: "REFUSED"}


def test_an_output_only_rail_leaves_the_call_as_it_is(guard: Guard) -> None:
    @guard.protect(input=False)
    def generate(prompt: str = "", *, style: str = "plain") -> str:
        return f"{style}: {prompt}"

    assert generate(prompt="bread") == "plain: bread" and generate() == "plain: "
    lines = iter(["a", "b"])

    @guard.protect(input=False)
    def first(items: Iterator[str]) -> str:
        return type(items).__name__

    assert first(lines) == "list_iterator"  # not listed: no rail reads it


def test_a_generator_function_returns_a_guarded_stream(guard: Guard) -> None:
    seen = []

    @guard.protect(on_check=lambda rail, r: seen.append(rail))
    def words(messages: list[dict]) -> Iterator[str]:
        yield from ["Bread ", "needs flour."]

    stream = words(USER)
    assert seen == ["input"]  # the input rail ran at call time, as before
    with stream as chunks:
        assert "".join(chunks) == "Bread needs flour."
    with words([{"role": "user", "content": "a knife"}]) as chunks:
        assert list(chunks) == ["REFUSED"]

