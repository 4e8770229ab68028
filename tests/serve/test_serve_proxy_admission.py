"""Admission control of the guarding proxies, for real: the server on uvicorn with both
proxies pointing at a tiny upstream that holds every reply until the test releases it,
called with the real ``openai`` and ``anthropic`` SDKs. Past ``max_proxy_calls`` calls
in flight (both routes together) a call gets 503 with ``Retry-After`` at once, in its
route's error shape, counted in ``/metrics``; a streamed call holds its slot until its
stream ends or its client leaves, and a call whose client leaves before any answer gives
it back at once, its upstream request closed."""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import SecretStr

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

CLEAN = [{"role": "user", "content": "how do I bake bread?"}]
REPLY = "Bread needs flour, water, salt and yeast."
FIRST = "Bread is good. " * 20  # past the output rail's 200 unchecked characters: released
WAIT_S = 30.0  # a safety net against a hung test, never a timing under test


@dataclass
class Gate:
    """What the held upstream shares with the test: ``release`` lets every reply go,
    ``arrived`` counts the calls that reached it, ``left`` the held JSON calls whose
    connection the proxy closed before their reply."""

    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    left: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def wait_arrivals(self, n: int) -> None:
        for _ in range(n):
            assert self.arrived.acquire(timeout=WAIT_S), "a call never reached the upstream"


def _completion() -> dict[str, Any]:
    message = {"role": "assistant", "content": REPLY}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }


def _message() -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    data = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return f"data: {json.dumps({**data, 'choices': [choice]})}\n\n".encode()


def _held(conn: socket.socket, gate: Gate) -> bool:
    """Until ``gate.release`` (True), or until the proxy closes ``conn`` first (False,
    counted in ``gate.left``): a closed socket reads as readable with nothing to read."""
    end = time.monotonic() + WAIT_S
    while not gate.release.wait(0.02) and time.monotonic() < end:
        if select.select([conn], [], [], 0)[0]:
            try:
                closed = conn.recv(1, socket.MSG_PEEK) == b""
            except ConnectionError:
                closed = True
            if closed:
                gate.left.release()
                return False
    return True


def _handler(gate: Gate) -> type[BaseHTTPRequestHandler]:
    class Held(BaseHTTPRequestHandler):
        """Chat completions and messages, each held until ``gate.release``; a stream
        sends a first chunk the output rail releases at once, then holds the rest."""

        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _json(self, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            gate.arrived.release()
            try:
                if not request.get("stream"):
                    if not _held(self.connection, gate):
                        self.close_connection = True
                        return
                    self._json(_message() if self.path.endswith("/messages") else _completion())
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self.wfile.write(_chunk({"role": "assistant", "content": FIRST}))
                self.wfile.flush()
                gate.release.wait(WAIT_S)
                self.wfile.write(_chunk({"content": "is good."}) + _chunk({}, "stop"))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

    return Held


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def serve(guard: Guard, gate: Gate) -> Iterator[Callable[[int], str]]:
    """``serve(max_proxy_calls)``: the base URL of a server whose both proxies forward
    to the held upstream; every held reply is released before it stops."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gate))
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{upstream.server_address[1]}"
    servers: list[BackgroundServer] = []

    def start(max_proxy_calls: int) -> str:
        chat = Upstream(url=f"{base}/v1", api_key=SecretStr("up"), timeout_s=60)
        claude = Upstream(url=base, api_key=SecretStr("up"), timeout_s=60)
        app = create_app(
            guard, upstream=chat, anthropic_upstream=claude, max_proxy_calls=max_proxy_calls
        )
        servers.append(BackgroundServer(app))
        return servers[-1].__enter__()

    try:
        yield start
    finally:
        gate.release.set()
        for server in servers:
            server.__exit__(None, None, None)
        upstream.shutdown()
        upstream.server_close()


def _openai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=WAIT_S)


def _anthropic(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=WAIT_S)


def _chat(url: str) -> str | None:
    reply = _openai(url).chat.completions.create(model="m", messages=CLEAN)  # type: ignore[arg-type]
    return reply.choices[0].message.content


def _metric(url: str, series: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _wait_in_flight(url: str, n: float) -> None:
    """Until ``n`` proxied calls are in flight: the server gives a slot back just after
    the client has read the last byte, so a test waits for it rather than racing it."""
    end = time.monotonic() + WAIT_S
    while _metric(url, "guardrail_proxy_calls") != n:
        assert time.monotonic() < end, f"never {n} proxied calls in flight"
        time.sleep(0.02)


def _in_threads(n: int, call: Callable[[], Any]) -> tuple[list[threading.Thread], list[Any]]:
    done: list[Any] = []
    threads = [threading.Thread(target=lambda: done.append(call())) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, done


def test_calls_past_the_shared_bound_get_503_with_retry_after(
    serve: Callable[[int], str], gate: Gate
) -> None:
    url = serve(2)
    threads, done = _in_threads(2, lambda: _chat(url))
    gate.wait_arrivals(2)  # both hold their slot, waiting on the upstream
    assert _metric(url, "guardrail_proxy_calls") == 2

    with pytest.raises(openai.APIStatusError) as chat_err:
        _chat(url)
    assert chat_err.value.status_code == 503
    assert chat_err.value.response.headers["retry-after"] == "1"
    assert chat_err.value.body["code"] == "overloaded"  # type: ignore[index]
    assert "--max-proxy-calls" in chat_err.value.message

    # One bound for both routes: the messages route is full too, in Anthropic's shape.
    with pytest.raises(anthropic.APIStatusError) as msg_err:
        _anthropic(url).messages.create(model="m", max_tokens=9, messages=CLEAN)  # type: ignore[arg-type]
    assert msg_err.value.status_code == 503
    assert msg_err.value.response.headers["retry-after"] == "1"
    assert msg_err.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert gate.arrived.acquire(blocking=False) is False  # neither reached the upstream

    gate.release.set()
    for t in threads:
        t.join(WAIT_S)
    assert done == [REPLY, REPLY]
    _wait_in_flight(url, 0)
    assert _chat(url) == REPLY
    reply = _anthropic(url).messages.create(model="m", max_tokens=9, messages=CLEAN)  # type: ignore[arg-type]
    assert reply.content[0].text == REPLY  # type: ignore[union-attr]
    chat = 'guardrail_proxy_overloaded_total{path="/v1/chat/completions"}'
    assert _metric(url, chat) == 1
    assert _metric(url, 'guardrail_proxy_overloaded_total{path="/v1/messages"}') == 1
    assert _metric(url, 'guardrail_requests_total{path="/v1/messages",status="503"}') == 1


def test_a_stream_holds_its_slot_until_it_ends(serve: Callable[[int], str], gate: Gate) -> None:
    url = serve(1)
    stream = _openai(url).chat.completions.create(model="m", messages=CLEAN, stream=True)  # type: ignore[arg-type]
    chunks = iter(stream)
    next(chunks)  # the stream has begun, its upstream holding the rest
    with pytest.raises(openai.APIStatusError) as err:
        _chat(url)
    assert err.value.status_code == 503

    gate.release.set()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "is good." in text
    _wait_in_flight(url, 0)
    assert _chat(url) == REPLY


def test_a_client_leaving_mid_stream_frees_its_slot(
    serve: Callable[[int], str], gate: Gate
) -> None:
    url = serve(1)
    client = _openai(url)
    with client.chat.completions.create(model="m", messages=CLEAN, stream=True) as left:  # type: ignore[arg-type]
        next(iter(left))  # then the client leaves, the upstream still holding
    _wait_in_flight(url, 0)

    # The slot is free while the first upstream still holds: a new stream is admitted,
    # and it is the one that fills the bound.
    with client.chat.completions.create(model="m", messages=CLEAN, stream=True) as second:  # type: ignore[arg-type]
        next(iter(second))
        with pytest.raises(openai.APIStatusError) as err:
            _chat(url)
        assert err.value.status_code == 503
    gate.release.set()
    _wait_in_flight(url, 0)
    assert _chat(url) == REPLY


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"], ids=["chat", "messages"])
def test_a_client_leaving_before_its_answer_frees_its_slot_at_once(
    serve: Callable[[int], str], gate: Gate, path: str
) -> None:
    url = serve(1)
    raw = json.dumps({"model": "m", "max_tokens": 9, "messages": CLEAN}).encode()
    head = f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
    where = urllib.parse.urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=WAIT_S) as client:
        client.sendall(f"{head}content-length: {len(raw)}\r\n\r\n".encode() + raw)
        gate.wait_arrivals(1)  # admitted, its upstream holding the reply
        assert _metric(url, "guardrail_proxy_calls") == 1
    # The client has gone; the upstream still holds (gate not released).
    assert gate.left.acquire(timeout=WAIT_S), "the upstream request was never closed"
    _wait_in_flight(url, 0)

    threads, done = _in_threads(1, lambda: _chat(url))
    gate.wait_arrivals(1)  # the next call is admitted, not refused 503
    gate.release.set()
    threads[0].join(WAIT_S)
    assert done == [REPLY]
    assert _metric(url, f'guardrail_requests_total{{path="{path}",status="499"}}') == 1


def test_a_bound_below_one_names_the_option(guard: Guard) -> None:
    with pytest.raises(ConfigError, match="--max-proxy-calls"):
        create_app(guard, max_proxy_calls=0)
