"""The fake server itself: a threaded HTTP server on 127.0.0.1 and its live endpoints.

``FakeLLMServer`` answers ``POST /v1/chat/completions`` and ``POST /v1/responses``
(OpenAI; a Response stored unless ``store`` is false, served again by ``GET
/v1/responses/{id}``) and ``POST /v1/messages`` (Anthropic), streamed or not, hands batch and file
paths to ``batch.BatchAPI``, and serves its counters to other processes
(``GET /_fake/stats``, ``POST /_fake/reset``).
A reply is made by one path for both providers and both modes (live, batch): the test's
handler decides (``rules.answer``), the provider's ``Wire`` spells it out, the ledger
bills it. ``main`` is ``python -m annotators.testing``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from annotators.openai_annotator import is_reasoning_model
from annotators.testing.anthropic_wire import ANTHROPIC, anthropic_invalid, anthropic_thinking
from annotators.testing.batch import (
    BatchAPI,
    FakeBatch,
    anthropic_batch_object,
    anthropic_results,
    openai_batch_object,
)
from annotators.testing.ledger import Ledger
from annotators.testing.openai_wire import CONTENT_FILTERED, OPENAI, OUT_OF_QUOTA
from annotators.testing.responses_wire import (
    RESPONSES,
    responses_item_text,
    responses_stream_body,
)
from annotators.testing.rules import FakeReply, Fault, Handler, answer, keyword_handler
from annotators.testing.streaming import anthropic_stream_body, openai_stream_body
from annotators.testing.wire import ErrorReply, Wire, item_text

__all__ = ["FakeLLMServer", "main"]

_WIRES: dict[str, Wire] = {"openai": OPENAI, "anthropic": ANTHROPIC, "responses": RESPONSES}


class FakeLLMServer(Ledger):
    """A threaded fake OpenAI + Anthropic server on 127.0.0.1.

    Its counters and faults (``calls``, ``paid``, ``add_fault`` ...) are those of
    ``ledger.Ledger``.

    Args:
        handler: ``text -> FakeReply | Refuse | str``; default: every item gets the first
            class the request allows.
        latency: seconds every live request sleeps before answering (simulated model time).
        port: 0 for an ephemeral port.
        batch_polls: retrieves a batch needs before it is finished (1: the first poll).
        reasoning_tokens: hidden reasoning an OpenAI reasoning model (by its name, as
            ``is_reasoning_model`` tells) spends before it answers, paid from the
            request's ``max_completion_tokens``: a budget that cannot hold it and the
            reply gets a cut reply (``finish_reason`` ``"length"``), as the real API
            gives. 0: none, and only ``completion_tokens_details`` shows it is one.
        thinking_tokens: what Claude thinks (at most the request's ``budget_tokens``) when a
            request enables extended thinking, or with adaptive thinking (at most its
            ``max_tokens``: more cuts the reply), billed as output; a request the API would
            refuse (``anthropic_wire.anthropic_invalid``) gets its 400.
    """

    def __init__(self, handler: Handler | None = None, *, latency: float = 0.0,
                 port: int = 0, batch_polls: int = 1, reasoning_tokens: int = 0,
                 thinking_tokens: int = 200) -> None:
        super().__init__()
        self.reasoning_tokens = reasoning_tokens
        self.thinking_tokens = thinking_tokens
        self.handler: Handler = handler or (lambda text: FakeReply())
        self.latency = latency
        self.batch_polls = batch_polls
        self.hold_batches = False
        self.stored: dict[str, dict] = {}  # Responses kept for GET /v1/responses/{id}
        """While True, batches stay in progress however often they are polled."""
        self.batches = BatchAPI(self)
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        server = self

        class _Handler(_RequestHandler):
            fake = server

        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.request_queue_size = 512  # a 128-way burst must not overflow the backlog
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # ---- replies ----------------------------------------------------------------------
    def reply(self, provider: str, text: str, body: dict, fault: Fault | None, *,
              batch: bool = False) -> dict[str, Any]:
        """The reply body a provider gives to ``body`` about ``text``, paid and billed.

        Args:
            provider: ``"openai"``, ``"anthropic"`` or ``"responses"`` (OpenAI's
                Responses API): whose wire format.
            fault: a reply-shaping fault (``malformed``, ``out_of_schema``, ``refusal``,
                ``cut``, ``redacted_thinking``).
            batch: a batch result (counted in ``batch_paid``) rather than a live reply.
        """
        wire = _WIRES[provider]
        ans = answer(self.handler, text, wire.labels(body), fault)
        if provider == "openai" and is_reasoning_model(str(body.get("model", ""))):
            ans.reasoning_tokens = self.reasoning_tokens
        thinking = anthropic_thinking(body) if provider == "anthropic" else None
        if thinking is not None:
            ans.reasoning_tokens = min(self.thinking_tokens, thinking)
            ans.redacted = fault is not None and fault.kind == "redacted_thinking"
        self.pay(text, batch=batch)
        out = wire.reply(body, ans, self.next_id())
        self.bill(text, *wire.usage(out), batch=batch)
        return out

    def _live(self, text: str, body: dict, endpoint: str) -> Fault | None:
        """Count a live request and apply the transport-level faults; may raise ErrorReply."""
        self.note_live(text, body, endpoint)
        fault = self.take_fault(text, ("rate_limit", "server_error", "slow", "malformed",
                                       "out_of_schema", "refusal", "content_filter", "cut",
                                       "redacted_thinking", "insufficient_quota"))
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.kind == "rate_limit":
            headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after}"}
            raise ErrorReply(429, "rate_limit_error", "rate limited (fake)", headers)
        if fault is not None and fault.kind == "insufficient_quota":
            raise ErrorReply(429, "insufficient_quota", OUT_OF_QUOTA)
        if fault is not None and fault.kind == "content_filter":
            raise ErrorReply(400, "content_filter", CONTENT_FILTERED)
        if fault is not None and fault.kind == "server_error":
            raise ErrorReply(500, "api_error", "internal error (fake)")
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            return None
        return fault

    def openai_chat(self, body: dict) -> dict:
        """``POST /v1/chat/completions``: a ``chat.completion``."""
        text = item_text(body.get("messages") or [])
        return self.reply("openai", text, body, self._live(text, body, "chat.completions"))

    def openai_responses(self, body: dict) -> dict:
        """``POST /v1/responses``: a ``response`` (``responses_wire``)."""
        text = responses_item_text(body)
        return self.reply("responses", text, body, self._live(text, body, "responses"))

    def anthropic_messages(self, body: dict) -> dict:
        """``POST /v1/messages``: a ``message``."""
        text = item_text(body.get("messages") or [])
        fault = self._live(text, body, "messages")
        invalid = anthropic_invalid(body)
        if invalid is not None:
            raise ErrorReply(400, "invalid_request_error", invalid)
        return self.reply("anthropic", text, body, fault)

    def openai_batch_object(self, b: FakeBatch) -> dict:
        return openai_batch_object(b)

    def anthropic_batch_object(self, b: FakeBatch) -> dict:
        return anthropic_batch_object(b, self.url)

    def anthropic_results(self, b: FakeBatch) -> bytes:
        return anthropic_results(b)

    # ---- routing ----------------------------------------------------------------------
    def route(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, str]:
        """(status, body, content type) for one request; bodies are dict or bytes."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        path = path.split("?", 1)[0]
        if path == "/_fake/stats":  # for callers in another process
            return 200, self.stats(), "application/json"
        if method == "POST" and path == "/_fake/reset":
            self.reset_counts()
            return 200, {"reset": True}, "application/json"
        if method == "POST" and path == "/v1/chat/completions":
            body = json.loads(raw)
            completion = self.openai_chat(body)
            if body.get("stream"):
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return 200, openai_stream_body(completion, include_usage=usage), \
                    "text/event-stream"
            return 200, completion, "application/json"
        if method == "POST" and path == "/v1/responses":
            body = json.loads(raw)
            response = self.openai_responses(body)
            if body.get("store", True) is not False:  # the API stores by default
                self.stored[response["id"]] = response
            if body.get("stream"):
                return 200, responses_stream_body(response), "text/event-stream"
            return 200, response, "application/json"
        if method == "GET" and path.startswith("/v1/responses/"):
            stored = self.stored.get(path.removeprefix("/v1/responses/"))
            if stored is None:
                raise ErrorReply(404, "not_found_error", f"no response {path}")
            return 200, stored, "application/json"
        if method == "POST" and path == "/v1/messages":
            body = json.loads(raw)
            message = self.anthropic_messages(body)
            if body.get("stream"):
                return 200, anthropic_stream_body(message), "text/event-stream"
            return 200, message, "application/json"
        found = self.batches.route(method, path, query, headers, raw)
        if found is not None:
            return found
        raise ErrorReply(404, "not_found_error", f"the fake server has no {method} {path}")


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDKs pool connections
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the
    # client's delayed ACK add ~40 ms to every reply and distort latency benchmarks.
    disable_nagle_algorithm = True
    fake: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet, tests read counters
        return

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: Any, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        raw = self._body()
        self.fake.record(method, self.path, self.headers)
        try:
            status, body, ctype = self.fake.route(method, self.path, self.headers, raw)
        except ErrorReply as exc:
            wire = ANTHROPIC if self.path.startswith("/v1/messages") else OPENAI
            self._send(exc.status, wire.error(exc.kind, exc.message), "application/json",
                       exc.headers)
            return
        except (json.JSONDecodeError, KeyError) as exc:
            self._send(400, {"error": {"message": f"bad request: {exc}",
                                       "type": "invalid_request_error"}}, "application/json")
            return
        # The client may have given up (a timeout test): then there is no one to answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(status, body, ctype)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


def main(argv: list[str] | None = None) -> None:
    """``python -m annotators.testing --port N``: serve the keyword rule until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m annotators.testing",
                                     description="A fake OpenAI + Anthropic API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per live reply")
    args = parser.parse_args(argv)
    server = FakeLLMServer(keyword_handler, latency=args.latency, port=args.port).start()
    print(f"fake LLM server on {server.url}  (OpenAI base_url {server.openai_base_url}, "
          f"Anthropic base_url {server.anthropic_base_url})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
