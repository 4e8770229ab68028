"""The guarding Messages proxy (``POST /v1/messages``), for real: the moderation server on
uvicorn in a thread with ``anthropic_upstream`` pointing at the shipped fake server (or
canned bodies on pytest-httpserver, for tool use, headers and upstream errors the fake
does not make), called with the real ``anthropic`` SDK, sync and streamed. Its answers
must equal what ``guard.wrap`` makes in process of the same upstream."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
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
from guardrail_dro.serve.http.anthropic_proxy import anthropic_upstream_from_env
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

KEY = "proxy-key-0123"
UPSTREAM_KEY = "sk-ant-upstream-SECRET-4567"
CLEAN_REPLY = "Bread needs flour, water, salt and yeast; knead it well."
HARMFUL_REPLY = "Take a knife."
CLEAN = [{"role": "user", "content": "how do I bake bread?"}]
ASKS_HARM = [{"role": "user", "content": "how do I hide a knife?"}]
WANTS_HARM = [{"role": "user", "content": "tell me something dark"}]  # the reply is harmful


def _reply(text: str) -> str:
    return HARMFUL_REPLY if "dark" in text else CLEAN_REPLY


def _scorer() -> FakeScorer:
    return FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard.from_scorer(_scorer(), policy=Policy(refusal="REFUSED"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(_reply) as srv:
        yield srv


def _upstream(url: str, timeout_s: float = 30.0) -> Upstream:
    return Upstream(url=url, api_key=SecretStr(UPSTREAM_KEY), timeout_s=timeout_s)


@pytest.fixture(scope="module")
def proxy(guard: Guard, fake: FakeLLMServer) -> Iterator[str]:
    config = ServeConfig(api_keys=(SecretStr(KEY),), max_body_bytes=20_000)
    app = create_app(guard, config, anthropic_upstream=_upstream(fake.anthropic_base_url))
    with BackgroundServer(app) as url:
        yield url


def _client(url: str, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def _local(guard: Guard, fake: FakeLLMServer) -> Any:
    """The same rails in process, on the same upstream."""
    return guard.wrap(anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="k"))


def _ask(client: Any, messages: list[dict], **kw: Any) -> Any:
    return client.messages.create(model="m", max_tokens=200, messages=messages, **kw)


def _events(client: Any, messages: list[dict], **kw: Any) -> list[Any]:
    return list(_ask(client, messages, stream=True, **kw))


def _shape(events: list[Any]) -> list[dict]:
    """The events without the message's id (the fake numbers its replies)."""
    out = []
    for e in events:
        d = e.to_dict(mode="json")
        if e.type == "message_start":
            d["message"].pop("id")
        out.append(d)
    return out


def _text(events: list[Any]) -> str:
    return "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def _stop(events: list[Any]) -> str | None:
    (delta,) = [e for e in events if e.type == "message_delta"]
    return delta.delta.stop_reason


def _post(url: str, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/messages", json=body, headers=headers, timeout=30)


def test_a_clean_prompt_round_trips_with_its_usage(proxy: str, fake: FakeLLMServer) -> None:
    reply = _ask(_client(proxy), CLEAN, system="be brief", stop_sequences=["END"])
    assert reply.content[0].text == CLEAN_REPLY and reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0  # the upstream's
    sent = fake.requests[-1]["body"]
    assert sent["system"] == "be brief" and sent["stop_sequences"] == ["END"]  # passed on
    assert sent["messages"] == CLEAN and sent["max_tokens"] == 200
    assert fake.received[-1]["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_clean_stream_round_trips_as_in_process(
    proxy: str, fake: FakeLLMServer, guard: Guard
) -> None:
    events = _events(_client(proxy), CLEAN)
    assert _text(events) == CLEAN_REPLY and _stop(events) == "end_turn"
    assert events[0].message.usage.input_tokens > 0
    assert events[-2].usage.output_tokens > 0  # message_delta's usage, kept
    assert _shape(events) == _shape(_events(_local(guard, fake), CLEAN))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_harmful_prompt_never_reaches_the_upstream(
    proxy: str, fake: FakeLLMServer, guard: Guard, stream: bool
) -> None:
    before = len(fake.requests)
    if stream:
        events = _events(_client(proxy), ASKS_HARM)
        assert _text(events) == "REFUSED" and _stop(events) == "refusal"
        assert _shape(events) == _shape(_events(_local(guard, fake), ASKS_HARM))
    else:
        reply = _ask(_client(proxy), ASKS_HARM)
        same = _ask(_local(guard, fake), ASKS_HARM)
        assert reply.to_dict() == same.to_dict()  # wrap's anthropic_refusal
        assert reply.content[0].text == "REFUSED" and reply.stop_reason == "refusal"
    assert len(fake.requests) == before and "knife" not in str(fake.requests)


def test_a_harmful_reply_is_replaced(proxy: str, fake: FakeLLMServer, guard: Guard) -> None:
    reply = _ask(_client(proxy), WANTS_HARM)
    same = _ask(_local(guard, fake), WANTS_HARM)
    assert reply.content[0].text == same.content[0].text == "REFUSED"
    assert reply.stop_reason == same.stop_reason == "refusal"
    assert reply.usage == same.usage  # the upstream's usage kept
    assert fake.requests[-1]["text"] == "tell me something dark"  # it was asked


def test_a_harmful_stream_ends_as_the_rail_ends_it(
    proxy: str, fake: FakeLLMServer, guard: Guard
) -> None:
    events = _events(_client(proxy), WANTS_HARM)
    assert HARMFUL_REPLY not in _text(events) and _text(events) == "REFUSED"
    assert _stop(events) == "refusal" and events[-1].type == "message_stop"
    assert _shape(events) == _shape(_events(_local(guard, fake), WANTS_HARM))


def _tool_message(tool_input: dict) -> dict:
    block = {"type": "tool_use", "id": "toolu_0", "name": "send", "input": tool_input}
    return {
        "id": "msg_0",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [block],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }


def _tool_events(tool_input: dict) -> str:
    args = json.dumps(tool_input)
    start = {**_tool_message({}), "stop_reason": None}
    block = {"type": "tool_use", "id": "toolu_0", "name": "send", "input": {}}
    events = [{"type": "message_start", "message": start}]
    events.append({"type": "content_block_start", "index": 0, "content_block": block})
    events += [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": args[i : i + 5]},
        }
        for i in range(0, len(args), 5)
    ]
    events.append({"type": "content_block_stop", "index": 0})
    delta = {"stop_reason": "tool_use", "stop_sequence": None}
    events.append({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 7}})
    events.append({"type": "message_stop"})
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


@pytest.fixture()
def canned(guard: Guard, httpserver: HTTPServer) -> Iterator[str]:
    """The proxy in front of pytest-httpserver (no API key of its own)."""
    up = _upstream(httpserver.url_for("/").rstrip("/"), timeout_s=5)
    with BackgroundServer(create_app(guard, anthropic_upstream=up)) as url:
        yield url


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tool_use_input_is_checked(canned: str, httpserver: HTTPServer, stream: bool) -> None:
    clean, harmful = {"to": "bob", "body": "lunch?"}, {"to": "bob", "body": "a knife"}
    for tool_input in (clean, harmful):
        handler = httpserver.expect_ordered_request("/v1/messages", method="POST")
        if stream:
            handler.respond_with_data(_tool_events(tool_input), content_type="text/event-stream")
        else:
            handler.respond_with_json(_tool_message(tool_input))
    client = _client(canned, "any")

    def ask() -> tuple[str, Any, str | None]:
        if not stream:
            reply = _ask(client, CLEAN)
            uses = [b.input for b in reply.content if b.type == "tool_use"]
            texts = "".join(b.text for b in reply.content if b.type == "text")
            return texts, uses[0] if uses else None, reply.stop_reason
        events = _events(client, CLEAN)
        args = "".join(
            e.delta.partial_json
            for e in events
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        )
        return _text(events), json.loads(args) if args else None, _stop(events)

    assert ask() == ("", clean, "tool_use")
    assert ask() == ("REFUSED", None, "refusal")


def test_anthropic_beta_is_forwarded_and_the_version_is_the_sdks(
    canned: str, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v1/messages").respond_with_json(_tool_message({"a": 1}))
    body = {"model": "m", "max_tokens": 10, "messages": CLEAN}
    beta, version = "context-1m-2025-08-07", "2099-01-01"
    headers = {"anthropic-beta": beta, "anthropic-version": version, "x-api-key": "caller-9"}
    assert _post(canned, body, **headers).status_code == 200
    (sent, _), *_ = httpserver.log
    assert sent.headers["anthropic-beta"] == beta
    assert sent.headers["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "caller-9" not in str(sent.headers)  # the caller's own key stays here


def test_an_upstream_4xx_passes_through(proxy: str, fake: FakeLLMServer) -> None:
    fake.add_fault(Fault(kind="content_filter", match="pass me"))
    with pytest.raises(anthropic.BadRequestError) as exc:
        _ask(_client(proxy), [{"role": "user", "content": "pass me through"}])
    assert exc.value.status_code == 400
    assert exc.value.body["type"] == "error"  # type: ignore[index]
    assert exc.value.body["error"]["type"] == "content_filter"  # type: ignore[index]


def test_an_upstream_past_its_timeout_is_a_504(guard: Guard, fake: FakeLLMServer) -> None:
    fake.add_fault(Fault(kind="slow", match="slowly", delay=2.0))
    up = _upstream(fake.anthropic_base_url, timeout_s=0.3)
    with BackgroundServer(create_app(guard, anthropic_upstream=up)) as url:
        msgs = [{"role": "user", "content": "slowly"}]
        resp = _post(url, {"model": "m", "max_tokens": 10, "messages": msgs})
    assert resp.status_code == 504
    assert resp.json()["error"]["type"] == "timeout_error"
    assert fake.anthropic_base_url in resp.json()["error"]["message"]


def test_an_unreachable_upstream_is_a_502_naming_it(
    guard: Guard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    down = "http://127.0.0.1:9"  # discard: nothing listens
    with BackgroundServer(create_app(guard, anthropic_upstream=_upstream(down))) as url:
        with pytest.raises(anthropic.InternalServerError) as exc:
            _ask(_client(url), CLEAN)
        body = {"model": "m", "max_tokens": 10, "messages": CLEAN}
        raw = _post(url, body)
        streamed = _post(url, {**body, "stream": True})
    assert exc.value.status_code == 502 and down in str(exc.value)
    assert raw.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": raw.json()["error"]["message"]},
    }
    assert "--anthropic-upstream" in raw.json()["error"]["message"]
    assert streamed.status_code == 502  # before any event: a status, not a broken stream
    for text in (raw.text, streamed.text, caplog.text):
        assert UPSTREAM_KEY not in text


def test_the_upstream_key_never_reaches_the_caller(canned: str, httpserver: HTTPServer) -> None:
    echo = f"invalid x-api-key: {UPSTREAM_KEY}"  # as an API may echo (part of) it
    error = {"type": "error", "error": {"type": "authentication_error", "message": echo}}
    httpserver.expect_request("/v1/messages").respond_with_json(error, status=401)
    body = {"model": "m", "max_tokens": 10, "messages": CLEAN}
    first = _post(canned, body)
    assert first.status_code == 502 and first.json()["error"]["type"] == "api_error"
    assert "--anthropic-upstream-key-env" in first.json()["error"]["message"]
    httpserver.clear()
    error["error"] = {"type": f"not_found_error {UPSTREAM_KEY}", "message": echo}
    httpserver.expect_request("/v1/messages").respond_with_json(error, status=404)
    second = _post(canned, body)
    assert second.status_code == 404 and second.json()["error"]["message"].endswith("***")
    for resp in (first, second):
        assert UPSTREAM_KEY not in resp.text


def test_auth_takes_x_api_key_and_bearer(proxy: str, fake: FakeLLMServer) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": CLEAN}
    assert _post(proxy, body, **{"x-api-key": KEY}).status_code == 200  # Anthropic's header
    assert _post(proxy, body, authorization=f"Bearer {KEY}").status_code == 200
    before = len(fake.requests)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        _ask(_client(proxy, "wrong"), CLEAN)
    assert exc.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    wrong = _post(proxy, body, **{"x-api-key": "wrong"})
    bare = _post(proxy, body)
    assert wrong.status_code == bare.status_code == 401 and len(fake.requests) == before
    assert "x-api-key" in bare.json()["error"]["message"]
    # The moderation route's Bearer auth is unchanged.
    moderations = openai.OpenAI(base_url=f"{proxy}/v1", api_key=KEY, max_retries=0).moderations
    assert moderations.create(input="hello").results[0].flagged is False
    x_only = httpx.post(f"{proxy}/v1/moderations", json={"input": "hi"}, headers={"x-api-key": KEY})
    assert x_only.status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "max_tokens": 9, "messages": "hi"}, "messages"),
        ({"model": "m", "max_tokens": 9, "messages": ["hi"]}, "messages"),
        ({"max_tokens": 9, "messages": CLEAN}, "model"),
        ({"model": "m", "messages": CLEAN}, "max_tokens"),
        ({"model": "m", "max_tokens": True, "messages": CLEAN}, "max_tokens"),
        ({"model": "m", "max_tokens": 9, "messages": CLEAN, "stream": "yes"}, "stream"),
    ],
    ids=["messages-str", "messages-of-str", "no-model", "no-max-tokens", "bool-tokens", "stream"],
)
def test_bad_requests_are_400_naming_the_field(
    proxy: str, fake: FakeLLMServer, body: dict, param: str
) -> None:
    before = len(fake.requests)
    resp = _post(proxy, body, **{"x-api-key": KEY})
    assert resp.status_code == 400 and resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.json()["error"]["message"].startswith(param)
    assert len(fake.requests) == before


def test_a_body_over_the_bound_is_413(proxy: str) -> None:
    big = [{"role": "user", "content": "x" * 30_000}]
    resp = _post(proxy, {"model": "m", "max_tokens": 9, "messages": big}, **{"x-api-key": KEY})
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"


def test_without_an_anthropic_upstream_the_route_says_it_is_off(
    guard: Guard, fake: FakeLLMServer
) -> None:
    app = create_app(guard, upstream=_upstream(fake.openai_base_url))  # the OpenAI one only
    with BackgroundServer(app) as url:
        resp = _post(url, {"model": "m", "max_tokens": 9, "messages": CLEAN})
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0).chat
        reply = chat.completions.create(model="m", messages=CLEAN)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"
    assert "--anthropic-upstream" in resp.json()["error"]["message"]
    assert reply.choices[0].message.content == CLEAN_REPLY


def test_both_proxies_serve_side_by_side(guard: Guard, fake: FakeLLMServer) -> None:
    app = create_app(
        guard,
        upstream=_upstream(fake.openai_base_url),
        anthropic_upstream=_upstream(fake.anthropic_base_url),
    )
    with BackgroundServer(app) as url:
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0).chat
        assert chat.completions.create(model="m", messages=CLEAN).choices[0].message.content
        assert _ask(_client(url), CLEAN).content[0].text == CLEAN_REPLY


def test_metrics_count_the_route_and_refusals_by_rail(proxy: str) -> None:
    client = _client(proxy)
    _ask(client, ASKS_HARM)
    _ask(client, WANTS_HARM)
    text = httpx.get(f"{proxy}/metrics").text
    assert 'guardrail_requests_total{path="/v1/messages",status="200"}' in text
    assert 'guardrail_rail_refusals_total{path="/v1/messages",rail="input"}' in text
    assert 'guardrail_rail_refusals_total{path="/v1/messages",rail="output"}' in text


def test_metrics_tell_the_two_proxies_refusals_apart(guard: Guard, fake: FakeLLMServer) -> None:
    app = create_app(
        guard,
        upstream=_upstream(fake.openai_base_url),
        anthropic_upstream=_upstream(fake.anthropic_base_url),
    )
    with BackgroundServer(app) as url:
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0).chat
        for _ in range(2):
            chat.completions.create(model="m", messages=ASKS_HARM)
        _ask(_client(url), WANTS_HARM)
        text = httpx.get(f"{url}/metrics").text
    series = "guardrail_rail_refusals_total"
    assert f'{series}{{path="/v1/chat/completions",rail="input"}} 2.0' in text
    assert f'{series}{{path="/v1/messages",rail="output"}} 1.0' in text
    assert 'path="/v1/chat/completions",rail="output"' not in text
    assert 'path="/v1/messages",rail="input"' not in text


def test_anthropic_upstream_from_env_reads_the_key_and_names_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UP_KEY", UPSTREAM_KEY)
    up = anthropic_upstream_from_env("https://user:pw@api.example.com/", "UP_KEY", 7.0)
    assert up.name == "https://api.example.com" and up.timeout_s == 7.0
    assert UPSTREAM_KEY not in repr(up)
    with pytest.raises(ConfigError, match="--anthropic-upstream-key-env"):
        anthropic_upstream_from_env("https://api.example.com", None)
    with pytest.raises(ConfigError, match="--anthropic-upstream-key-env NOPE"):
        anthropic_upstream_from_env("https://api.example.com", "NOPE")
    with pytest.raises(ConfigError, match="--anthropic-upstream must be an http"):
        anthropic_upstream_from_env("api.example.com", "UP_KEY")
    with pytest.raises(ConfigError, match="without /v1"):
        anthropic_upstream_from_env("https://api.anthropic.com/v1/", "UP_KEY")


class _SlowStream(BaseHTTPRequestHandler):
    """An upstream that streams a long clean reply slowly, noting how far it got."""

    protocol_version = "HTTP/1.1"
    deltas = 100
    sent: list[int] = []  # noqa: RUF012  (set per test)
    ended: threading.Event = threading.Event()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _event(self, data: dict) -> None:
        self.wfile.write(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        start = {**_tool_message({}), "content": [], "stop_reason": None}
        try:
            self._event({"type": "message_start", "message": start})
            block = {"type": "text", "text": ""}
            self._event({"type": "content_block_start", "index": 0, "content_block": block})
            for i in range(self.deltas):
                delta = {"type": "text_delta", "text": f"Bread is good, part {i}. "}
                self._event({"type": "content_block_delta", "index": 0, "delta": delta})
                self.sent.append(i)
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.ended.set()


def test_a_client_that_leaves_mid_stream_closes_the_upstream(guard: Guard) -> None:
    _SlowStream.sent, _SlowStream.ended = [], threading.Event()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _SlowStream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{upstream.server_address[1]}"
        with BackgroundServer(create_app(guard, anthropic_upstream=_upstream(base))) as url:
            body = {"model": "m", "max_tokens": 9, "messages": CLEAN, "stream": True}
            with httpx.stream("POST", f"{url}/v1/messages", json=body, timeout=30) as resp:
                lines = resp.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
            # Left after the first event: the upstream must stop long before its end.
            assert _SlowStream.ended.wait(30)
        assert len(_SlowStream.sent) < _SlowStream.deltas
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_a_raising_policy_still_answers_the_refusal(fake: FakeLLMServer) -> None:
    raising = Guard.from_scorer(
        _scorer(), policy=Policy(refusal="REFUSED", raise_on_violation=True)
    )
    up = _upstream(fake.anthropic_base_url)
    with BackgroundServer(create_app(raising, anthropic_upstream=up)) as url:
        client = _client(url)
        reply = _ask(client, ASKS_HARM)
        asked = _events(client, ASKS_HARM)
        events = _events(client, WANTS_HARM)
    assert reply.content[0].text == "REFUSED" and reply.stop_reason == "refusal"
    for got in (asked, events):
        assert _text(got) == "REFUSED" and HARMFUL_REPLY not in _text(got)
        assert _stop(got) == "refusal" and got[-1].type == "message_stop"
        assert [e.type for e in got].count("message_start") == 1


def test_a_raising_policy_answers_as_a_replacing_one_its_usage_kept(
    guard: Guard, fake: FakeLLMServer
) -> None:
    raising = Guard.from_scorer(
        _scorer(), policy=Policy(refusal="REFUSED", raise_on_violation=True)
    )
    answers = []
    for served in (raising, guard):
        up = _upstream(fake.anthropic_base_url)
        with BackgroundServer(create_app(served, anthropic_upstream=up)) as url:
            reply = _ask(_client(url), WANTS_HARM).to_dict(mode="json")
            reply.pop("id")
            answers.append([reply, *_shape(_events(_client(url), WANTS_HARM))])
    raised, replaced = answers
    # The upstream had finished: its message_delta ends the refusal, its usage as sent.
    delta = next(e for e in raised if e["type"] == "message_delta")
    assert delta["usage"]["output_tokens"] > 0 and delta["delta"]["stop_reason"] == "refusal"
    assert raised[0]["usage"]["output_tokens"] > 0  # the JSON reply keeps its usage too
    assert raised == replaced


def test_a_raising_policy_ends_a_released_stream_in_step(guard: Guard) -> None:
    long = "Bread needs flour and water. " * 60 + "Then take a knife."
    raising = Guard.from_scorer(
        _scorer(), policy=Policy(refusal="REFUSED", raise_on_violation=True)
    )
    with FakeLLMServer(lambda text: long) as fake:
        up = _upstream(fake.anthropic_base_url)
        with BackgroundServer(create_app(raising, anthropic_upstream=up)) as url:
            events = _events(_client(url), CLEAN)
        released = _events(_local(guard, fake), CLEAN)  # the same, not raising, in process
    text = _text(events)
    assert text.startswith("Bread needs") and text.endswith("REFUSED") and "knife" not in text
    assert text == _text(released)  # the clean text released before the refusal: wrap's
    assert [e.type for e in events].count("content_block_start") == 1  # into the open block
    assert {e.index for e in events if e.type.startswith("content_block")} == {0}
    assert _stop(events) == "refusal" and events[-1].type == "message_stop"


@pytest.mark.parametrize(
    "messages",
    [[{"role": "user", "content": 5}], [{"content": "no role"}]],
    ids=["content-int", "no-role"],
)
def test_a_message_the_rail_cannot_read_is_400(
    proxy: str, fake: FakeLLMServer, messages: list[dict]
) -> None:
    before = len(fake.requests)
    body = {"model": "m", "max_tokens": 9, "messages": messages}
    resp = _post(proxy, body, **{"x-api-key": KEY})
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("messages:")
    assert len(fake.requests) == before


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_upstream_200_that_is_no_message_is_a_502(
    canned: str, httpserver: HTTPServer, stream: bool
) -> None:
    handler = httpserver.expect_request("/v1/messages")
    if stream:  # a JSON message to a stream request: the SDK would read no event of it
        handler.respond_with_json(_tool_message({"a": 1}))
    else:
        handler.respond_with_data("<html>a login page</html>", content_type="text/html")
    body = {"model": "m", "max_tokens": 9, "messages": CLEAN, "stream": stream}
    resp = _post(canned, body)
    assert resp.status_code == 502 and resp.json()["error"]["type"] == "api_error"
    assert "--anthropic-upstream" in resp.json()["error"]["message"]


def test_an_error_event_mid_stream_reaches_the_caller(canned: str, httpserver: HTTPServer) -> None:
    start = {**_tool_message({}), "content": [], "stop_reason": None}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    sse = "".join(
        f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
        for e in ({"type": "message_start", "message": start}, error)
    )
    httpserver.expect_request("/v1/messages").respond_with_data(
        sse, content_type="text/event-stream"
    )
    with pytest.raises(anthropic.APIStatusError) as exc:
        _events(_client(canned, "any"), CLEAN)
    assert "overloaded_error" in str(exc.value) and "Overloaded" in str(exc.value)


def test_a_stream_past_the_timeout_ends_in_a_timeout_event(guard: Guard) -> None:
    _SlowStream.sent, _SlowStream.ended = [], threading.Event()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _SlowStream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        # Each event comes well within the timeout; the whole stream does not.
        up = _upstream(f"http://127.0.0.1:{upstream.server_address[1]}", timeout_s=0.5)
        with BackgroundServer(create_app(guard, anthropic_upstream=up)) as url:
            with pytest.raises(anthropic.APIStatusError) as exc:
                _events(_client(url), CLEAN)
            assert _SlowStream.ended.wait(30)
    finally:
        upstream.shutdown()
        upstream.server_close()
    assert "timeout_error" in str(exc.value) and "within 0.5 s" in str(exc.value)
    assert len(_SlowStream.sent) < _SlowStream.deltas
