"""A local fake of the OpenAI and Anthropic HTTP APIs, shipped for tests and demos.

Run the official SDKs against it instead of patching them: it is a real HTTP server on
127.0.0.1 (an ephemeral port by default), threaded, speaking enough of

- OpenAI: ``POST /v1/chat/completions``, ``POST /v1/files``, ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches`` (list,
  newest first, ``limit`` / ``after``), ``GET /v1/batches/{id}``;
- Anthropic: ``POST /v1/messages``, ``POST /v1/messages/batches``,
  ``GET /v1/messages/batches`` (list, newest first, ``limit`` / ``after_id``),
  ``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results``.

What it answers is decided by a plain **handler** function, ``text -> FakeReply |
Refuse | str`` (a ``str`` is sent as the raw reply text, e.g. malformed JSON), so a test
writes a rule, not a patch::

    def rule(text: str) -> FakeReply:
        return FakeReply("hate" if "idiot" in text else "safe", "keyword rule", 0.8)

    with FakeLLMServer(rule) as server:
        ann = OpenAIAnnotator("gpt-fake", base_url=server.openai_base_url, api_key="k")
        ...
        assert server.calls["some text"] == 1

**Faults** (``server.add_fault(Fault(...))``) make it misbehave for matching items, a
given number of times: ``rate_limit`` (429 with ``Retry-After``), ``server_error``
(500), ``slow`` (sleep before answering, to trip client timeouts), ``malformed``
(200 with text that is not JSON), ``out_of_schema`` (a label not in the schema),
``refusal``, and for batch jobs ``batch_expired`` / ``batch_errored`` (per request) and
``batch_create_timeout`` / ``batch_create_error`` (the job *is* created, then the
create reply is held for ``delay`` seconds / answered 500: a lost reply; ``match`` is
tested against the batch's item texts joined by newlines).

It counts what it receives: ``calls[text]`` (every live request about an item,
failures included), ``paid[text]`` (live requests answered 200 with a reply: what a
real API bills), ``batch_paid[text]`` and ``endpoints[name]``. ``requests`` keeps each
live request's JSON body (and its arrival time ``t``, ``time.monotonic()``) so a test
can read the prompt that was sent. ``received`` lists every HTTP request whatever its
path (method, path, the ``authorization`` / ``x-api-key`` headers: what a client sent,
even to a path the fake does not know), and ``billed`` the usage of every reply it
billed (text, ``batch`` flag, input and output tokens), so a test can sum them. A caller in
another process reads the counters at ``GET /_fake/stats`` and zeroes them with
``POST /_fake/reset``.

Also a command: ``python -m annotators.testing --port 8000 [--latency 0.3]`` serves the
keyword demo rule until interrupted, for subprocess tests and demos.

Streaming (``stream=True`` / ``"stream": true``) is spoken too: the reply is built once
by the pure body functions (``openai_completion_body``, ``anthropic_message_body``), so
the faults and counters are the same, and then written as Server-Sent Events by
``openai_stream_body`` (``chat.completion.chunk`` deltas, ``[DONE]``) or
``anthropic_stream_body`` (``message_start`` ... ``content_block_delta`` ...
``message_stop``). Errors (429, 500) are plain JSON answers, as the real APIs send them
before a stream starts.
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from annotators.prompts import extract_text

__all__ = [
    "FakeLLMServer",
    "FakeReply",
    "Fault",
    "FaultKind",
    "Handler",
    "Refuse",
    "anthropic_message_body",
    "anthropic_stream_body",
    "keyword_handler",
    "main",
    "openai_completion_body",
    "openai_stream_body",
]

FaultKind = Literal[
    "rate_limit", "server_error", "slow", "malformed", "out_of_schema", "refusal",
    "batch_expired", "batch_errored", "batch_create_timeout", "batch_create_error",
]


@dataclass(frozen=True)
class FakeReply:
    """A valid-looking answer. ``label=None`` means the first class the request allows."""

    label: str | None = None
    rationale: str = "fake rationale"
    confidence: float = 0.9


@dataclass(frozen=True)
class Refuse:
    """The model declines to label the item."""

    message: str = "I can't help with that."


Handler = Callable[[str], "FakeReply | Refuse | str"]


@dataclass
class Fault:
    """Misbehave ``times`` times for items whose text contains ``match`` (None: any item).

    Attributes:
        kind: what to do (see the module docstring).
        match: substring of the item text that triggers the fault; None matches all.
        times: how many requests it applies to; then it is spent.
        retry_after: seconds sent in ``Retry-After`` with ``rate_limit``.
        delay: seconds to sleep with ``slow``.
    """

    kind: FaultKind
    match: str | None = None
    times: int = 1
    retry_after: float | None = 0.0
    delay: float = 1.0

    def applies(self, text: str) -> bool:
        return self.times > 0 and (self.match is None or self.match in text)


def keyword_handler(text: str) -> FakeReply | Refuse:
    """The demo rule: 'bomb' refuses, insults are 'toxic', the rest 'safe'.

    Judged on the content only, so a text that says "answer safe" is still labelled by
    what it contains.
    """
    low = text.lower()
    if "bomb" in low:
        return Refuse("I can't help with that.")
    if any(w in low for w in ("idiot", "hate", "stupid", "kill")):
        return FakeReply("toxic", "contains an insult or a threat", 0.85)
    return FakeReply("safe", "no insult or threat", 0.8)


# ---- reply bodies (pure: a later SSE writer can reuse them) ---------------------------


def _tokens(s: str) -> int:
    return max(1, len(s) // 4)


def openai_completion_body(model: str, content: str | None, refusal: str | None,
                           prompt_tokens: int, n: int) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    out_tokens = _tokens(content or refusal or "")
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": "stop",
            "logprobs": None,
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens,
                  "total_tokens": prompt_tokens + out_tokens},
    }


def anthropic_message_body(model: str, tool: str | None, tool_input: dict | None,
                           text: str | None, refusal: bool, prompt_tokens: int,
                           n: int) -> dict[str, Any]:
    """A ``message`` object: a tool_use block, or a text block (refusal / malformed)."""
    if tool_input is not None and tool is not None:
        content = [{"type": "tool_use", "id": f"toolu_{n}", "name": tool, "input": tool_input}]
        stop, out = "tool_use", json.dumps(tool_input)
    else:
        content = [{"type": "text", "text": text or ""}]
        stop, out = ("refusal" if refusal else "end_turn"), text or ""
    return {
        "id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": _tokens(out)},
    }


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append(f"{head}data: {payload}\n\n")
    return "".join(out).encode()


def openai_stream_body(completion: dict[str, Any], *, include_usage: bool = False) -> bytes:
    """A finished ``chat.completion`` as the SSE stream of ``chat.completion.chunk`` events
    that ``stream=True`` returns (content or refusal in small deltas, then ``[DONE]``)."""
    choice = completion["choices"][0]
    msg = choice["message"]
    base = {"id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"]}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                     "logprobs": None}]}

    events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
    field_name = "refusal" if msg.get("refusal") is not None else "content"
    for piece in _pieces(msg.get(field_name) or ""):
        events.append((None, chunk({field_name: piece})))
    events.append((None, chunk({}, choice["finish_reason"])))
    if include_usage:
        events.append((None, {**base, "choices": [], "usage": completion["usage"]}))
    events.append((None, "[DONE]"))
    return _sse(events)


def anthropic_stream_body(message: dict[str, Any]) -> bytes:
    """A finished ``message`` as the SSE events of ``stream: true`` (message_start, one
    block start / deltas / stop per content block, message_delta, message_stop)."""
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**message["usage"], "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            empty = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in _pieces(json.dumps(block["input"]))]
        else:
            empty = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        events.append(("content_block_start",
                       {"type": "content_block_start", "index": i, "content_block": empty}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": i,
                                            "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": message["usage"]["output_tokens"]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return _sse(events)


# ---- what a request asks ------------------------------------------------------------


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _item_text(messages: list[dict]) -> str:
    for m in messages:
        if m.get("role") == "user":
            found = extract_text(_content_text(m.get("content")))
            if found is not None:
                return found
    return _content_text(messages[0].get("content")) if messages else ""


def _openai_labels(body: dict) -> list[str]:
    try:
        schema = body["response_format"]["json_schema"]["schema"]
        return list(schema["properties"]["label"]["enum"])
    except (KeyError, TypeError):
        return []


def _anthropic_tool(body: dict) -> tuple[str | None, list[str]]:
    tools = body.get("tools") or []
    if not tools:
        return None, []
    tool = tools[0]
    try:
        labels = list(tool["input_schema"]["properties"]["label"]["enum"])
    except (KeyError, TypeError):
        labels = []
    return tool.get("name"), labels


@dataclass
class _Answer:
    """What to say about one item: exactly one of reply / refusal / raw is set."""

    reply: dict | None = None
    refusal: str | None = None
    raw: str | None = None


class _HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}


@dataclass
class _Batch:
    id: str
    provider: Literal["openai", "anthropic"]
    requests: list[dict]
    created: float = field(default_factory=time.time)
    polls: int = 0
    done: bool = False
    results: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    input_file_id: str | None = None
    expired: bool = False
    metadata: dict | None = None


class FakeLLMServer:
    """A threaded fake OpenAI + Anthropic server on 127.0.0.1.

    Args:
        handler: ``text -> FakeReply | Refuse | str``; default: every item gets the first
            class the request allows.
        latency: seconds every live request sleeps before answering (simulated model time).
        port: 0 for an ephemeral port.
        batch_polls: retrieves a batch needs before it is finished (1: the first poll).
    """

    def __init__(self, handler: Handler | None = None, *, latency: float = 0.0,
                 port: int = 0, batch_polls: int = 1) -> None:
        self.handler: Handler = handler or (lambda text: FakeReply())
        self.latency = latency
        self.batch_polls = batch_polls
        self.hold_batches = False
        """While True, batches stay in progress however often they are polled."""
        self.faults: list[Fault] = []
        self.calls: Counter[str] = Counter()
        self.paid: Counter[str] = Counter()
        self.batch_paid: Counter[str] = Counter()
        self.endpoints: Counter[str] = Counter()
        self.requests: list[dict] = []
        self.received: list[dict] = []
        self.billed: list[dict] = []
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, _Batch] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
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

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.paid.clear()
            self.batch_paid.clear()
            self.endpoints.clear()
            self.requests.clear()
            self.received.clear()
            self.billed.clear()

    def stats(self) -> dict[str, dict[str, int]]:
        """The counters as plain dicts (also served at ``GET /_fake/stats``)."""
        with self._lock:
            return {"calls": dict(self.calls), "paid": dict(self.paid),
                    "batch_paid": dict(self.batch_paid), "endpoints": dict(self.endpoints)}

    # ---- behaviour ----------------------------------------------------------------
    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _take_fault(self, text: str, kinds: tuple[str, ...]) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.kind in kinds and f.applies(text):
                    f.times -= 1
                    return f
        return None

    def _answer(self, text: str, labels: list[str], fault: Fault | None) -> _Answer:
        if fault is not None and fault.kind == "malformed":
            return _Answer(raw='{"label": "oops", this is not json')
        if fault is not None and fault.kind == "refusal":
            return _Answer(refusal="I can't help with that.")
        out = self.handler(text)
        if isinstance(out, Refuse):
            return _Answer(refusal=out.message)
        if isinstance(out, str):
            return _Answer(raw=out)
        label = out.label if out.label is not None else (labels[0] if labels else "unknown")
        if fault is not None and fault.kind == "out_of_schema":
            label = "__not_a_class__"
        return _Answer(reply={"label": label, "rationale": out.rationale,
                              "confidence": out.confidence})

    def _live(self, text: str, body: dict, endpoint: str) -> Fault | None:
        """Count a live request and apply the transport-level faults; may raise _HTTPError."""
        with self._lock:
            self.calls[text] += 1
            self.endpoints[endpoint] += 1
            self.requests.append({"endpoint": endpoint, "text": text, "body": body,
                                  "t": time.monotonic()})
        fault = self._take_fault(text, ("rate_limit", "server_error", "slow", "malformed",
                                        "out_of_schema", "refusal"))
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.kind == "rate_limit":
            headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after}"}
            raise _HTTPError(429, "rate_limit_error", "rate limited (fake)", headers)
        if fault is not None and fault.kind == "server_error":
            raise _HTTPError(500, "api_error", "internal error (fake)")
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            return None
        return fault

    def openai_chat(self, body: dict) -> dict:
        messages = body.get("messages") or []
        text = _item_text(messages)
        fault = self._live(text, body, "chat.completions")
        return self._openai_reply(text, body, fault, paid=self.paid)

    def _openai_reply(self, text: str, body: dict, fault: Fault | None,
                      paid: Counter[str]) -> dict:
        ans = self._answer(text, _openai_labels(body), fault)
        with self._lock:
            paid[text] += 1
        content = json.dumps(ans.reply) if ans.reply is not None else ans.raw
        prompt_tokens = _tokens(json.dumps(body.get("messages")))
        out = openai_completion_body(body.get("model", "fake"), content, ans.refusal,
                                     prompt_tokens, self._next_id())
        self._bill(text, paid, out["usage"]["prompt_tokens"],
                   out["usage"]["completion_tokens"])
        return out

    def anthropic_messages(self, body: dict) -> dict:
        text = _item_text(body.get("messages") or [])
        fault = self._live(text, body, "messages")
        return self._anthropic_reply(text, body, fault, paid=self.paid)

    def _anthropic_reply(self, text: str, body: dict, fault: Fault | None,
                         paid: Counter[str]) -> dict:
        tool, labels = _anthropic_tool(body)
        ans = self._answer(text, labels, fault)
        with self._lock:
            paid[text] += 1
        prompt_tokens = _tokens(json.dumps(body.get("messages")) + str(body.get("system", "")))
        out = anthropic_message_body(
            body.get("model", "fake"), tool, ans.reply,
            ans.refusal if ans.refusal is not None else ans.raw, ans.refusal is not None,
            prompt_tokens, self._next_id(),
        )
        self._bill(text, paid, out["usage"]["input_tokens"], out["usage"]["output_tokens"])
        return out

    def _bill(self, text: str, paid: Counter[str], input_tokens: int,
              output_tokens: int) -> None:
        with self._lock:
            self.billed.append({"text": text, "batch": paid is self.batch_paid,
                                "input_tokens": input_tokens, "output_tokens": output_tokens})

    def record(self, method: str, path: str, headers: Any) -> None:
        """Note one HTTP request, whatever its path (see ``received``)."""
        with self._lock:
            self.received.append({"method": method, "path": path,
                                  "authorization": headers.get("authorization"),
                                  "x-api-key": headers.get("x-api-key")})

    def _list_page(self, provider: str, query: dict[str, list[str]]) -> dict:
        """One page of a provider's batch list, newest first, cursor after an id."""
        after: str | None = next(iter(query.get("after") or query.get("after_id") or []), None)
        limit = int((query.get("limit") or ["20"])[0])
        with self._lock:
            mine = [b for b in self._batches.values() if b.provider == provider][::-1]
            self.endpoints["batches.list" if provider == "openai"
                           else "message_batches.list"] += 1
        if after is not None:
            ids = [b.id for b in mine]
            mine = mine[ids.index(after) + 1:] if after in ids else []
        page = mine[:limit]
        render = self.openai_batch_object if provider == "openai" \
            else self.anthropic_batch_object
        data = [render(b) for b in page]
        out = {"data": data, "has_more": len(mine) > limit,
               "first_id": page[0].id if page else None,
               "last_id": page[-1].id if page else None}
        return {"object": "list", **out} if provider == "openai" else out

    def _create_fault(self, b: _Batch) -> None:
        """After a job is stored: hold or fail its create reply (a lost reply)."""
        texts = "\n".join(_item_text((r.get("body") or r.get("params") or {}).get("messages")
                                      or []) for r in b.requests)
        fault = self._take_fault(texts, ("batch_create_timeout", "batch_create_error"))
        if fault is not None and fault.kind == "batch_create_timeout":
            time.sleep(fault.delay)
        elif fault is not None:
            raise _HTTPError(500, "api_error", "internal error after create (fake)")

    # ---- batches --------------------------------------------------------------------
    def _batch_fault(self, text: str) -> Fault | None:
        return self._take_fault(text, ("batch_expired", "batch_errored"))

    def _finish_batch(self, b: _Batch) -> None:
        for req in b.requests:
            cid = req["custom_id"]
            body = req["body"] if b.provider == "openai" else req["params"]
            text = _item_text(body.get("messages") or [])
            fault = self._batch_fault(text)
            if fault is not None:
                b.errors.append({"custom_id": cid, "kind": fault.kind})
                if fault.kind == "batch_expired":
                    b.expired = True
                continue
            live_fault = self._take_fault(text, ("malformed", "out_of_schema", "refusal"))
            if b.provider == "openai":
                reply = self._openai_reply(text, body, live_fault, paid=self.batch_paid)
            else:
                reply = self._anthropic_reply(text, body, live_fault, paid=self.batch_paid)
            b.results.append({"custom_id": cid, "body": reply})
        b.done = True
        if b.provider == "openai":
            out = "".join(
                json.dumps({"id": f"batch_req_{self._next_id()}", "custom_id": r["custom_id"],
                            "response": {"status_code": 200, "request_id": "req_fake",
                                         "body": r["body"]}, "error": None}) + "\n"
                for r in b.results
            )
            err = "".join(
                json.dumps({"id": f"batch_req_{self._next_id()}", "custom_id": e["custom_id"],
                            "response": None,
                            "error": {"code": e["kind"], "message": f"{e['kind']} (fake)"}})
                + "\n"
                for e in b.errors
            )
            b.output_file_id = self._store_file(out.encode()) if b.results else None
            b.error_file_id = self._store_file(err.encode()) if b.errors else None

    def _store_file(self, data: bytes) -> str:
        fid = f"file-{self._next_id()}"
        with self._lock:
            self._files[fid] = data
        return fid

    def _poll(self, batch_id: str, endpoint: str) -> _Batch:
        with self._lock:
            b = self._batches.get(batch_id)
            self.endpoints[endpoint] += 1
        if b is None:
            raise _HTTPError(404, "not_found_error", f"no batch {batch_id!r}")
        b.polls += 1
        if not b.done and not self.hold_batches and b.polls >= self.batch_polls:
            self._finish_batch(b)
        return b

    def openai_batch_object(self, b: _Batch) -> dict:
        n = len(b.requests)
        status = ("expired" if b.expired else "completed") if b.done else "in_progress"
        return {
            "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": b.input_file_id, "completion_window": "24h", "status": status,
            "metadata": b.metadata,
            "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
            "created_at": int(b.created), "errors": None,
            "request_counts": {"total": n, "completed": len(b.results) if b.done else 0,
                               "failed": len(b.errors) if b.done else 0},
        }

    def anthropic_batch_object(self, b: _Batch) -> dict:
        created = datetime.fromtimestamp(b.created, UTC)
        counts = {"processing": 0 if b.done else len(b.requests),
                  "succeeded": len(b.results), "canceled": 0,
                  "errored": sum(e["kind"] == "batch_errored" for e in b.errors),
                  "expired": sum(e["kind"] == "batch_expired" for e in b.errors)}
        return {
            "id": b.id, "type": "message_batch",
            "processing_status": "ended" if b.done else "in_progress",
            "request_counts": counts, "created_at": created.isoformat(),
            "expires_at": (created + timedelta(hours=24)).isoformat(),
            "ended_at": datetime.now(UTC).isoformat() if b.done else None,
            "archived_at": None, "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{b.id}/results" if b.done else None,
        }

    def anthropic_results(self, b: _Batch) -> bytes:
        lines = [{"custom_id": r["custom_id"],
                  "result": {"type": "succeeded", "message": r["body"]}} for r in b.results]
        for e in b.errors:
            if e["kind"] == "batch_expired":
                lines.append({"custom_id": e["custom_id"], "result": {"type": "expired"}})
            else:
                lines.append({"custom_id": e["custom_id"], "result": {
                    "type": "errored",
                    "error": {"type": "error",
                              "error": {"type": "api_error", "message": "errored (fake)"}}}})
        return "".join(json.dumps(line) + "\n" for line in lines).encode()

    # ---- routing ----------------------------------------------------------------------
    def route(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, str]:
        """(status, body, content type) for one request; bodies are dict or bytes."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/v1/batches":
            return 200, self._list_page("openai", query), "application/json"
        if method == "GET" and path == "/v1/messages/batches":
            return 200, self._list_page("anthropic", query), "application/json"
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
        if method == "POST" and path == "/v1/messages":
            body = json.loads(raw)
            message = self.anthropic_messages(body)
            if body.get("stream"):
                return 200, anthropic_stream_body(message), "text/event-stream"
            return 200, message, "application/json"
        if method == "POST" and path == "/v1/files":
            return 200, self._upload(headers, raw), "application/json"
        if m := re.fullmatch(r"/v1/files/([^/]+)(/content)?", path):
            with self._lock:
                data = self._files.get(m.group(1))
                self.endpoints["files.content" if m.group(2) else "files.retrieve"] += 1
            if data is None:
                raise _HTTPError(404, "not_found_error", f"no file {m.group(1)!r}")
            if m.group(2):
                return 200, data, "application/octet-stream"
            return 200, {"id": m.group(1), "object": "file", "bytes": len(data),
                         "created_at": int(time.time()), "filename": "batch.jsonl",
                         "purpose": "batch", "status": "processed"}, "application/json"
        if method == "POST" and path == "/v1/batches":
            return 200, self._openai_batch_create(json.loads(raw)), "application/json"
        if m := re.fullmatch(r"/v1/batches/([^/]+)", path):
            return 200, self.openai_batch_object(self._poll(m.group(1), "batches.retrieve")), \
                "application/json"
        if method == "POST" and path == "/v1/messages/batches":
            return 200, self._anthropic_batch_create(json.loads(raw)), "application/json"
        if m := re.fullmatch(r"/v1/messages/batches/([^/]+)/results", path):
            with self._lock:
                b = self._batches.get(m.group(1))
                self.endpoints["message_batches.results"] += 1
            if b is None or not b.done:
                raise _HTTPError(404, "not_found_error", "no results yet")
            return 200, self.anthropic_results(b), "application/binary"
        if m := re.fullmatch(r"/v1/messages/batches/([^/]+)", path):
            b = self._poll(m.group(1), "message_batches.retrieve")
            return 200, self.anthropic_batch_object(b), "application/json"
        raise _HTTPError(404, "not_found_error", f"the fake server has no {method} {path}")

    def _upload(self, headers: Any, raw: bytes) -> dict:
        ctype = headers.get("content-type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
        )
        data = b""
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
        with self._lock:
            self.endpoints["files.create"] += 1
        fid = self._store_file(data)
        return {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": "batch.jsonl", "purpose": "batch", "status": "processed"}

    def _openai_batch_create(self, body: dict) -> dict:
        with self._lock:
            data = self._files.get(body.get("input_file_id", ""))
            self.endpoints["batches.create"] += 1
        if data is None:
            raise _HTTPError(400, "invalid_request_error", "input_file_id not found")
        reqs = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        b = _Batch(id=f"batch_{self._next_id()}", provider="openai", requests=reqs,
                   input_file_id=body["input_file_id"], metadata=body.get("metadata"))
        with self._lock:
            self._batches[b.id] = b
        self._create_fault(b)
        return self.openai_batch_object(b)

    def _anthropic_batch_create(self, body: dict) -> dict:
        with self._lock:
            self.endpoints["message_batches.create"] += 1
        b = _Batch(id=f"msgbatch_{self._next_id()}", provider="anthropic",
                   requests=list(body.get("requests") or []))
        with self._lock:
            self._batches[b.id] = b
        self._create_fault(b)
        return self.anthropic_batch_object(b)


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
        except _HTTPError as exc:
            if self.path.startswith("/v1/messages"):
                err: dict = {"type": "error", "error": {"type": exc.kind, "message": exc.message}}
            else:
                err = {"error": {"message": exc.message, "type": exc.kind, "code": None}}
            self._send(exc.status, err, "application/json", exc.headers)
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


if __name__ == "__main__":
    main()
