"""The batch APIs, simulated: OpenAI files + batches, Anthropic message batches.

Endpoints: OpenAI ``POST /v1/files``, ``GET /v1/files/{id}[/content]``,
``POST /v1/batches``, ``GET /v1/batches`` (newest first, ``limit`` / ``after``),
``GET /v1/batches/{id}``; Anthropic ``POST /v1/messages/batches``,
``GET /v1/messages/batches`` (newest first, ``limit`` / ``after_id``),
``GET /v1/messages/batches/{id}[/results]``.

An OpenAI job answers its lines in the format of its ``endpoint``
(``/v1/chat/completions``, or ``/v1/responses``: ``responses_wire``).

A job finishes on the poll that reaches the server's ``batch_polls`` (never while
``hold_batches`` is set); then every request is answered by the same rule as a live
call (``BatchHost.reply``, billed to ``batch_paid``), unless a ``batch_expired`` /
``batch_errored`` fault takes it (or, for Anthropic, the request is one the API refuses,
``anthropic_wire.anthropic_invalid``: an errored result with its message).
``batch_create_timeout`` / ``batch_create_error`` faults model a *lost create reply*:
the job is stored first, then the reply is held for ``delay`` seconds or answered 500,
which is exactly the case a client must not pay twice for (their ``match`` is tested
against the job's item texts joined by newlines). ``batch_poll_rate_limit`` answers a
poll of a matching job (a retrieve) 429 with the fault's ``Retry-After``.

The simulation needs only a few things of the server, named by ``BatchHost``, so it
can be read (and tested) without the HTTP plumbing.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from annotators.testing.anthropic_wire import anthropic_invalid
from annotators.testing.openai_wire import CONTENT_FILTERED, openai_error_body
from annotators.testing.responses_wire import responses_item_text
from annotators.testing.rules import Fault, FaultKind
from annotators.testing.wire import ErrorReply, item_text

__all__ = ["BatchAPI", "BatchHost", "FakeBatch", "anthropic_batch_object",
           "anthropic_results", "openai_batch_object"]

Provider = Literal["openai", "anthropic"]
Route = tuple[int, Any, str]  # (status, body: dict or bytes, content type)


class BatchHost(Protocol):
    """What the batch simulation needs of the server that hosts it."""

    @property
    def url(self) -> str: ...
    @property
    def batch_polls(self) -> int: ...
    @property
    def hold_batches(self) -> bool: ...
    def count(self, endpoint: str) -> None: ...
    def next_id(self) -> int: ...
    def take_fault(self, text: str, kinds: tuple[FaultKind, ...]) -> Fault | None: ...
    def reply(self, provider: str, text: str, body: dict, fault: Fault | None, *,
              batch: bool = False) -> dict[str, Any]: ...


@dataclass
class FakeBatch:
    """One submitted job: its requests and, once finished, its results and errors."""

    id: str
    provider: Provider
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
    endpoint: str = "/v1/chat/completions"
    """An OpenAI job's endpoint: ``/v1/responses`` lines are answered as Responses."""

    def wire(self, body: dict) -> tuple[str, str]:
        """(wire, item text) of one request: whose format answers it, about what."""
        if self.provider == "anthropic":
            return "anthropic", item_text(body.get("messages") or [])
        if self.endpoint == "/v1/responses":
            return "responses", responses_item_text(body)
        return "openai", item_text(body.get("messages") or [])


def openai_batch_object(b: FakeBatch) -> dict:
    """The OpenAI ``batch`` object of a job."""
    n = len(b.requests)
    status = ("expired" if b.expired else "completed") if b.done else "in_progress"
    return {
        "id": b.id, "object": "batch", "endpoint": b.endpoint,
        "input_file_id": b.input_file_id, "completion_window": "24h", "status": status,
        "metadata": b.metadata,
        "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
        "created_at": int(b.created), "errors": None,
        "request_counts": {"total": n, "completed": len(b.results) if b.done else 0,
                           "failed": len(b.errors) if b.done else 0},
    }


def _openai_error_line(n: int, e: dict) -> dict:
    """An OpenAI batch error-file line: a request that expired or errored has no
    response; one Azure's content filter declined has its 400 response."""
    line = {"id": f"batch_req_{n}", "custom_id": e["custom_id"]}
    if e["kind"] == "content_filter":
        body = openai_error_body("content_filter", CONTENT_FILTERED)
        return {**line, "response": {"status_code": 400, "request_id": "req_fake",
                                     "body": body}, "error": None}
    return {**line, "response": None,
            "error": {"code": e["kind"], "message": f"{e['kind']} (fake)"}}


def anthropic_batch_object(b: FakeBatch, url: str) -> dict:
    """The Anthropic ``message_batch`` object of a job served from ``url``."""
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
        "results_url": f"{url}/v1/messages/batches/{b.id}/results" if b.done else None,
    }


def anthropic_results(b: FakeBatch) -> bytes:
    """A finished job's results as the JSONL ``/results`` streams."""
    lines = [{"custom_id": r["custom_id"],
              "result": {"type": "succeeded", "message": r["body"]}} for r in b.results]
    for e in b.errors:
        if e["kind"] == "batch_expired":
            lines.append({"custom_id": e["custom_id"], "result": {"type": "expired"}})
        else:
            kind, message = (("invalid_request_error", e["message"]) if "message" in e
                             else ("api_error", "errored (fake)"))
            lines.append({"custom_id": e["custom_id"], "result": {
                "type": "errored",
                "error": {"type": "error", "error": {"type": kind, "message": message}}}})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _file_object(fid: str, data: bytes) -> dict:
    return {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
            "filename": "batch.jsonl", "purpose": "batch", "status": "processed"}


def _texts(b: FakeBatch) -> str:
    """A job's item texts joined by newlines: what a batch fault's ``match`` is tested on."""
    return "\n".join(b.wire(_request_body(r))[1] for r in b.requests)


def _request_body(request: dict) -> dict:
    # An OpenAI batch line carries ``body``, an Anthropic batch request ``params``.
    return request.get("body") or request.get("params") or {}


class BatchAPI:
    """Stored files and jobs of both providers, and the endpoints that reach them.

    Args:
        host: the server: its settings, counters, faults and reply rule.
    """

    def __init__(self, host: BatchHost) -> None:
        self.host = host
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, FakeBatch] = {}
        self._lock = threading.Lock()

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
              raw: bytes) -> Route | None:
        """(status, body, content type) for a batch or file request; None: not one."""
        if method == "GET" and path == "/v1/batches":
            return 200, self.list_page("openai", query), "application/json"
        if method == "GET" and path == "/v1/messages/batches":
            return 200, self.list_page("anthropic", query), "application/json"
        if method == "POST" and path == "/v1/files":
            return 200, self.upload(headers, raw), "application/json"
        if m := re.fullmatch(r"/v1/files/([^/]+)(/content)?", path):
            with self._lock:
                data = self._files.get(m.group(1))
            self.host.count("files.content" if m.group(2) else "files.retrieve")
            if data is None:
                raise ErrorReply(404, "not_found_error", f"no file {m.group(1)!r}")
            if m.group(2):
                return 200, data, "application/octet-stream"
            return 200, _file_object(m.group(1), data), "application/json"
        if method == "POST" and path == "/v1/batches":
            return 200, self.openai_create(json.loads(raw)), "application/json"
        if m := re.fullmatch(r"/v1/batches/([^/]+)", path):
            b = self.poll(m.group(1), "batches.retrieve")
            return 200, openai_batch_object(b), "application/json"
        if method == "POST" and path == "/v1/messages/batches":
            return 200, self.anthropic_create(json.loads(raw)), "application/json"
        if m := re.fullmatch(r"/v1/messages/batches/([^/]+)/results", path):
            with self._lock:
                found = self._batches.get(m.group(1))
            self.host.count("message_batches.results")
            if found is None or not found.done:
                raise ErrorReply(404, "not_found_error", "no results yet")
            return 200, anthropic_results(found), "application/binary"
        if m := re.fullmatch(r"/v1/messages/batches/([^/]+)", path):
            b = self.poll(m.group(1), "message_batches.retrieve")
            return 200, anthropic_batch_object(b, self.host.url), "application/json"
        return None

    # ---- files ----------------------------------------------------------------------
    def store_file(self, data: bytes) -> str:
        fid = f"file-{self.host.next_id()}"
        with self._lock:
            self._files[fid] = data
        return fid

    def upload(self, headers: Any, raw: bytes) -> dict:
        """``POST /v1/files``: keep the multipart ``file`` part."""
        ctype = headers.get("content-type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
        )
        data = b""
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
        self.host.count("files.create")
        return _file_object(self.store_file(data), data)

    # ---- jobs -----------------------------------------------------------------------
    def openai_create(self, body: dict) -> dict:
        with self._lock:
            data = self._files.get(body.get("input_file_id", ""))
        self.host.count("batches.create")
        if data is None:
            raise ErrorReply(400, "invalid_request_error", "input_file_id not found")
        reqs = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        b = FakeBatch(id=f"batch_{self.host.next_id()}", provider="openai", requests=reqs,
                      input_file_id=body["input_file_id"], metadata=body.get("metadata"),
                      endpoint=body.get("endpoint") or "/v1/chat/completions")
        self._keep(b)
        return openai_batch_object(b)

    def anthropic_create(self, body: dict) -> dict:
        self.host.count("message_batches.create")
        b = FakeBatch(id=f"msgbatch_{self.host.next_id()}", provider="anthropic",
                      requests=list(body.get("requests") or []))
        self._keep(b)
        return anthropic_batch_object(b, self.host.url)

    def _keep(self, b: FakeBatch) -> None:
        """Store a new job, then hold or fail its create reply if a fault says so."""
        with self._lock:
            self._batches[b.id] = b
        fault = self.host.take_fault(_texts(b), ("batch_create_timeout", "batch_create_error"))
        if fault is not None and fault.kind == "batch_create_timeout":
            time.sleep(fault.delay)
        elif fault is not None:
            raise ErrorReply(500, "api_error", "internal error after create (fake)")

    def list_page(self, provider: Provider, query: dict[str, list[str]]) -> dict:
        """One page of a provider's batch list, newest first, cursor after an id."""
        after: str | None = next(iter(query.get("after") or query.get("after_id") or []), None)
        limit = int((query.get("limit") or ["20"])[0])
        with self._lock:
            mine = [b for b in self._batches.values() if b.provider == provider][::-1]
        self.host.count("batches.list" if provider == "openai" else "message_batches.list")
        if after is not None:
            ids = [b.id for b in mine]
            mine = mine[ids.index(after) + 1:] if after in ids else []
        page = mine[:limit]
        data = [openai_batch_object(b) if provider == "openai"
                else anthropic_batch_object(b, self.host.url) for b in page]
        out = {"data": data, "has_more": len(mine) > limit,
               "first_id": page[0].id if page else None,
               "last_id": page[-1].id if page else None}
        return {"object": "list", **out} if provider == "openai" else out

    def poll(self, batch_id: str, endpoint: str) -> FakeBatch:
        """Retrieve a job, finishing it on the poll that reaches ``batch_polls``."""
        with self._lock:
            b = self._batches.get(batch_id)
        self.host.count(endpoint)
        if b is None:
            raise ErrorReply(404, "not_found_error", f"no batch {batch_id!r}")
        fault = self.host.take_fault(_texts(b), ("batch_poll_rate_limit",))
        if fault is not None:
            headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after}"}
            raise ErrorReply(429, "rate_limit_error", "rate limited (fake)", headers)
        b.polls += 1
        if not b.done and not self.host.hold_batches and b.polls >= self.host.batch_polls:
            self.finish(b)
        return b

    def finish(self, b: FakeBatch) -> None:
        """Answer every request of a job (or fail it by a batch fault); OpenAI jobs get
        their output and error files."""
        for req in b.requests:
            cid = req["custom_id"]
            body = req["body"] if b.provider == "openai" else req["params"]
            wire, text = b.wire(body)
            kinds: tuple[FaultKind, ...] = ("batch_expired", "batch_errored")
            if b.provider == "openai":
                kinds += ("content_filter",)  # Azure OpenAI's filter: a 400 result line
            invalid = anthropic_invalid(body) if b.provider == "anthropic" else None
            if invalid is not None:  # the API's 400, as an errored result
                b.errors.append({"custom_id": cid, "kind": "batch_errored", "message": invalid})
                continue
            fault = self.host.take_fault(text, kinds)
            if fault is not None:
                b.errors.append({"custom_id": cid, "kind": fault.kind})
                if fault.kind == "batch_expired":
                    b.expired = True
                continue
            live_fault = self.host.take_fault(
                text, ("malformed", "out_of_schema", "refusal", "cut", "redacted_thinking"))
            reply = self.host.reply(wire, text, body, live_fault, batch=True)
            b.results.append({"custom_id": cid, "body": reply})
        b.done = True
        if b.provider == "openai":
            out = "".join(
                json.dumps({"id": f"batch_req_{self.host.next_id()}",
                            "custom_id": r["custom_id"],
                            "response": {"status_code": 200, "request_id": "req_fake",
                                         "body": r["body"]}, "error": None}) + "\n"
                for r in b.results
            )
            err = "".join(json.dumps(_openai_error_line(self.host.next_id(), e)) + "\n"
                          for e in b.errors)
            b.output_file_id = self.store_file(out.encode()) if b.results else None
            b.error_file_id = self.store_file(err.encode()) if b.errors else None
