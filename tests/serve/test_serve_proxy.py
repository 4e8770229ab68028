"""The guarding chat-completions proxy, for real: the moderation server on uvicorn in a
thread with ``upstream`` pointing at the shipped fake OpenAI server (or canned bodies on
pytest-httpserver, for tool calls and upstream errors the fake does not make), called
with the real ``openai`` SDK, sync and streamed. Its answers must equal what
``guard.wrap`` makes in process of the same upstream."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from annotators.testing import FakeLLMServer
from annotators.testing.rules import Fault
from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.proxy import Upstream, upstream_from_env
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

KEY = "proxy-key-0123"
UPSTREAM_KEY = "sk-upstream-SECRET-4567"
CLEAN_REPLY = "Bread needs flour, water, salt and yeast; knead it well."
HARMFUL_REPLY = "Take a knife."  # short: only the stream's final check sees it
CLEAN = [{"role": "user", "content": "how do I bake bread?"}]
ASKS_HARM = [{"role": "user", "content": "how do I hide a knife?"}]
WANTS_HARM = [{"role": "user", "content": "tell me something dark"}]  # the reply is harmful


def _reply(text: str) -> str:
    return HARMFUL_REPLY if "dark" in text else CLEAN_REPLY


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(_reply) as srv:
        yield srv


def _upstream(url: str, timeout_s: float = 30.0) -> Upstream:
    return Upstream(url=url, api_key=SecretStr(UPSTREAM_KEY), timeout_s=timeout_s)


@pytest.fixture(scope="module")
def proxy(guard: Guard, fake: FakeLLMServer) -> Iterator[str]:
    config = ServeConfig(api_keys=(SecretStr(KEY),), max_body_bytes=20_000)
    app = create_app(guard, config, upstream=_upstream(fake.openai_base_url))
    with BackgroundServer(app) as url:
        yield url


def _client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _texts(fake: FakeLLMServer) -> list[str]:
    return [r["text"] for r in fake.requests]


def _stream(client: Any, messages: list[dict], **kw: Any) -> list[Any]:
    return list(
        client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}, **kw
        )
    )


def _content(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_clean_prompt_round_trips(proxy: str, fake: FakeLLMServer) -> None:
    reply = _client(proxy).chat.completions.create(model="m", messages=CLEAN, temperature=0.2)
    assert reply.choices[0].message.content == CLEAN_REPLY
    assert reply.choices[0].finish_reason == "stop" and reply.usage is not None
    sent = fake.requests[-1]["body"]
    assert sent["temperature"] == 0.2 and sent["messages"] == CLEAN  # passed through
    assert fake.received[-1]["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_clean_stream_round_trips_with_its_usage(proxy: str, fake: FakeLLMServer) -> None:
    chunks = _stream(_client(proxy), CLEAN)
    assert _content(chunks) == CLEAN_REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0  # the usage chunk


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_harmful_prompt_never_reaches_the_upstream(
    proxy: str, fake: FakeLLMServer, guard: Guard, stream: bool
) -> None:
    before = len(fake.requests)
    client = _client(proxy)
    if stream:
        chunks = _stream(client, ASKS_HARM)
        assert _content(chunks) == "REFUSED"
        assert chunks[-1].choices[0].finish_reason == "content_filter"
    else:
        reply = client.chat.completions.create(model="m", messages=ASKS_HARM)
        local = guard.wrap(openai.OpenAI(base_url=fake.openai_base_url, api_key="k"))
        same = local.chat.completions.create(model="m", messages=ASKS_HARM)
        assert reply.choices[0].message == same.choices[0].message  # wrap's refusal
        assert reply.choices[0].finish_reason == "content_filter"
    assert len(fake.requests) == before and "knife" not in " ".join(_texts(fake))


def test_a_harmful_reply_is_replaced(proxy: str, fake: FakeLLMServer, guard: Guard) -> None:
    reply = _client(proxy).chat.completions.create(model="m", messages=WANTS_HARM)
    local = guard.wrap(openai.OpenAI(base_url=fake.openai_base_url, api_key="k", max_retries=0))
    same = local.chat.completions.create(model="m", messages=WANTS_HARM)
    assert reply.choices[0].message.content == same.choices[0].message.content == "REFUSED"
    assert reply.choices[0].finish_reason == "content_filter"
    assert fake.requests[-1]["text"] == "tell me something dark"  # it was asked


def test_a_harmful_stream_ends_with_the_refusal_then_the_usage(proxy: str) -> None:
    chunks = _stream(_client(proxy), WANTS_HARM)
    assert HARMFUL_REPLY not in _content(chunks) and _content(chunks) == "REFUSED"
    (ended,) = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert ended.choices[0].finish_reason == "content_filter"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # kept after it


def _tool_completion(arguments: str) -> dict:
    call = {"id": "t0", "type": "function", "function": {"name": "send", "arguments": arguments}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
    }


def _tool_chunks(arguments: str) -> str:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    start = {"index": 0, "id": "t0", "type": "function", "function": {"name": "send"}}
    deltas = [{"role": "assistant", "tool_calls": [{**start, "function": {"name": "send"}}]}]
    deltas += [
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 5]}}]}
        for i in range(0, len(arguments), 5)
    ]
    chunks = [{**base, "choices": [{"index": 0, "delta": d}]} for d in deltas]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


@pytest.fixture()
def canned(guard: Guard, httpserver: HTTPServer) -> Iterator[str]:
    """The proxy in front of pytest-httpserver (no API key of its own)."""
    app = create_app(guard, upstream=_upstream(httpserver.url_for("/v1"), timeout_s=5))
    with BackgroundServer(app) as url:
        yield url


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_call_arguments_are_checked(canned: str, httpserver: HTTPServer, stream: bool) -> None:
    clean, harmful = '{"to": "bob", "body": "lunch?"}', '{"to": "bob", "body": "a knife"}'
    for args in (clean, harmful):
        handler = httpserver.expect_ordered_request("/v1/chat/completions")
        if stream:
            handler.respond_with_data(_tool_chunks(args), content_type="text/event-stream")
        else:
            handler.respond_with_json(_tool_completion(args))
    client = _client(canned, "any")

    def ask() -> tuple[str, Any, str | None]:
        if not stream:
            choice = client.chat.completions.create(model="m", messages=CLEAN).choices[0]
            calls = choice.message.tool_calls
            args = calls[0].function.arguments if calls else None
            return choice.message.content or "", args, choice.finish_reason
        chunks = list(client.chat.completions.create(model="m", messages=CLEAN, stream=True))
        args = "".join(
            tc.function.arguments or ""
            for c in chunks
            for tc in (c.choices[0].delta.tool_calls or [])
        )
        return _content(chunks), args or None, chunks[-1].choices[0].finish_reason

    assert ask() == ("", clean, "tool_calls")
    assert ask() == ("REFUSED", None, "content_filter")


def test_an_upstream_4xx_passes_through(proxy: str, fake: FakeLLMServer) -> None:
    fake.add_fault(Fault(kind="content_filter", match="pass me"))
    msgs = [{"role": "user", "content": "pass me through"}]
    with pytest.raises(openai.BadRequestError) as exc:
        _client(proxy).chat.completions.create(model="m", messages=msgs)
    assert exc.value.status_code == 400 and exc.value.code == "content_filter"


def test_an_upstream_past_its_timeout_is_a_504(guard: Guard, fake: FakeLLMServer) -> None:
    fake.add_fault(Fault(kind="slow", match="slowly", delay=2.0))
    app = create_app(guard, upstream=_upstream(fake.openai_base_url, timeout_s=0.3))
    with BackgroundServer(app) as url:
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "slowly"}]},
        )
    assert resp.status_code == 504
    assert resp.json()["error"]["code"] == "upstream_timeout"
    assert fake.openai_base_url in resp.json()["error"]["message"]


def test_an_unreachable_upstream_is_a_502_naming_it(
    guard: Guard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    down = "http://127.0.0.1:9/v1"  # discard: nothing listens
    with BackgroundServer(create_app(guard, upstream=_upstream(down))) as url:
        with pytest.raises(openai.InternalServerError) as exc:
            _client(url).chat.completions.create(model="m", messages=CLEAN)
        raw = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": CLEAN})
        streamed = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "m", "messages": CLEAN, "stream": True}
        )
    assert exc.value.status_code == 502 and down in str(exc.value)
    assert raw.json()["error"]["code"] == "upstream_unreachable"
    assert streamed.status_code == 502  # before any event: a status, not a broken stream
    for text in (raw.text, streamed.text, caplog.text):
        assert UPSTREAM_KEY not in text


def test_the_upstream_key_never_reaches_the_caller(canned: str, httpserver: HTTPServer) -> None:
    echo = f"Incorrect API key provided: {UPSTREAM_KEY}"  # as real APIs echo (part of) it
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": echo, "type": "invalid_request_error", "code": "invalid_api_key"}},
        status=401,
    )
    first = httpx.post(f"{canned}/v1/chat/completions", json={"model": "m", "messages": CLEAN})
    assert first.status_code == 502 and first.json()["error"]["code"] == "upstream_auth"
    assert "--upstream-key-env" in first.json()["error"]["message"]
    httpserver.clear()
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": echo, "type": "invalid_request_error"}}, status=404
    )
    second = httpx.post(f"{canned}/v1/chat/completions", json={"model": "m", "messages": CLEAN})
    assert second.status_code == 404
    for resp in (first, second):
        assert UPSTREAM_KEY not in resp.text


def test_auth_applies_and_the_upstream_is_not_called(proxy: str, fake: FakeLLMServer) -> None:
    before = len(fake.requests)
    with pytest.raises(openai.AuthenticationError):
        _client(proxy, "wrong").chat.completions.create(model="m", messages=CLEAN)
    bare = httpx.post(f"{proxy}/v1/chat/completions", json={"model": "m", "messages": CLEAN})
    assert bare.status_code == 401 and len(fake.requests) == before


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages"),
        ({"messages": CLEAN}, "model"),
        ({"model": "m", "messages": CLEAN, "stream": "yes"}, "stream"),
    ],
    ids=["messages-str", "messages-of-str", "no-model", "stream-str"],
)
def test_bad_requests_are_400_naming_the_field(
    proxy: str, fake: FakeLLMServer, body: dict, param: str
) -> None:
    before = len(fake.requests)
    resp = httpx.post(
        f"{proxy}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    assert len(fake.requests) == before


def test_a_body_over_the_bound_is_413(proxy: str) -> None:
    big = [{"role": "user", "content": "x" * 30_000}]
    resp = httpx.post(
        f"{proxy}/v1/chat/completions",
        json={"model": "m", "messages": big},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert resp.status_code == 413


def test_without_an_upstream_the_route_says_the_proxy_is_off(guard: Guard) -> None:
    with BackgroundServer(create_app(guard)) as url:
        resp = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": CLEAN})
    assert resp.status_code == 404 and "--upstream" in resp.json()["error"]["message"]


def test_metrics_count_the_route_and_refusals_by_rail(proxy: str) -> None:
    client = _client(proxy)
    client.chat.completions.create(model="m", messages=ASKS_HARM)
    client.chat.completions.create(model="m", messages=WANTS_HARM)
    text = httpx.get(f"{proxy}/metrics").text
    assert 'guardrail_requests_total{path="/v1/chat/completions",status="200"}' in text
    assert 'guardrail_rail_refusals_total{path="/v1/chat/completions",rail="input"}' in text
    assert 'guardrail_rail_refusals_total{path="/v1/chat/completions",rail="output"}' in text


def test_upstream_from_env_reads_the_key_and_names_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UP_KEY", UPSTREAM_KEY)
    up = upstream_from_env("https://user:pw@api.example.com/v1/", "UP_KEY")
    assert up.url == "https://user:pw@api.example.com/v1"  # the key-free name for errors:
    assert up.name == "https://api.example.com/v1"
    assert UPSTREAM_KEY not in repr(up)
    with pytest.raises(ConfigError, match="--upstream-key-env"):
        upstream_from_env("https://api.example.com/v1", None)
    with pytest.raises(ConfigError, match="--upstream-key-env NOPE"):
        upstream_from_env("https://api.example.com/v1", "NOPE")
    with pytest.raises(ConfigError, match="--upstream must be an http"):
        upstream_from_env("api.example.com", "UP_KEY")


class _SlowStream(BaseHTTPRequestHandler):
    """An upstream that streams a long clean reply slowly, noting how far it got."""

    protocol_version = "HTTP/1.1"
    chunks = 100
    sent: list[int] = []  # noqa: RUF012  (set per test)
    ended: threading.Event = threading.Event()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        try:
            for i in range(self.chunks):
                delta = {"content": f"Bread is good, part {i}. "}
                chunk = {**base, "choices": [{"index": 0, "delta": delta}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                self.sent.append(i)
                time.sleep(0.05)
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.ended.set()


def test_a_client_that_leaves_mid_stream_closes_the_upstream(guard: Guard) -> None:
    _SlowStream.sent, _SlowStream.ended = [], threading.Event()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _SlowStream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
        with BackgroundServer(create_app(guard, upstream=_upstream(base))) as url:
            body = {"model": "m", "messages": CLEAN, "stream": True}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as resp:
                lines = resp.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
            # Left after the first event: the upstream must stop long before its end.
            assert _SlowStream.ended.wait(30)
        assert len(_SlowStream.sent) < _SlowStream.chunks
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_a_raising_policy_still_answers_the_refusal(fake: FakeLLMServer) -> None:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    raising = Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED", raise_on_violation=True))
    with BackgroundServer(create_app(raising, upstream=_upstream(fake.openai_base_url))) as url:
        client = _client(url)
        reply = client.chat.completions.create(model="m", messages=ASKS_HARM)
        chunks = list(client.chat.completions.create(model="m", messages=WANTS_HARM, stream=True))
    assert reply.choices[0].message.content == "REFUSED"
    assert reply.choices[0].finish_reason == "content_filter"
    assert _content(chunks) == "REFUSED" and HARMFUL_REPLY not in _content(chunks)
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def _unnumbered(item: Any) -> dict[str, Any]:
    """A reply or chunk without what the fake numbers or times."""
    return {k: v for k, v in item.to_dict(mode="json").items() if k not in ("id", "created")}


def test_a_raising_policy_answers_as_a_replacing_one_its_usage_kept(
    guard: Guard, fake: FakeLLMServer
) -> None:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    raising = Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED", raise_on_violation=True))
    answers = []
    for served in (raising, guard):
        with BackgroundServer(create_app(served, upstream=_upstream(fake.openai_base_url))) as url:
            client = _client(url)
            reply = client.chat.completions.create(model="m", messages=WANTS_HARM)
            answers.append([_unnumbered(c) for c in [reply, *_stream(client, WANTS_HARM)]])
    raised, replaced = answers
    # The upstream had finished: the refused stream ends with its usage chunk, as sent.
    assert raised[-1]["choices"] == [] and raised[-1]["usage"]["total_tokens"] > 0
    assert raised[0]["usage"]["total_tokens"] > 0  # the JSON reply keeps its usage too
    assert raised == replaced
