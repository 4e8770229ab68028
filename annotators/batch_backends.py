"""The two providers' batch APIs behind the same five verbs.

OpenAI Batch (an uploaded JSONL file, ``batches.create``, results in an output and an
error file) and Anthropic Message Batches (requests inside the create call, results
streamed) differ in every call but not in what the job orchestration
(``annotators.batch_jobs``) needs of them: ``upload`` the requests (a no-op for
Anthropic), ``create`` the job, ``find`` a job whose create reply was lost, ``poll`` its
state and ``collect`` its results. ``BatchBackend`` names those verbs; ``batch_backend``
picks the one for an annotator's provider.

``find`` is what keeps a lost create reply from being paid twice. OpenAI keeps
metadata, so the job is recognised by its ``input_file_id`` or the submit id in
``metadata``. Anthropic keeps none: a job created after the pending-submit row (less
``CLOCK_SLACK``) with the same number of requests, that no other row claims, the
closest in time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from annotators.anthropic_annotator import parse_message
from annotators.base import Annotator, AnnotatorError, RawReply
from annotators.cache import PendingSubmit
from annotators.openai_annotator import parse_chat_completion, parse_response

__all__ = ["CLOCK_SLACK", "METADATA_KEY", "AnthropicBatches", "BatchBackend", "Collected",
           "JobState", "OpenAIBatches", "batch_backend"]

Collected = list[tuple[str, RawReply | None, str | None]]
"""(custom_id, reply or None, error or None) for each request a finished job reports."""

METADATA_KEY = "guardrail_dro_submit"
"""The OpenAI job metadata key that carries the pending submit's id."""

CLOCK_SLACK = 600.0
"""Seconds: a job listed this long before our pending row (clock skew) may be ours."""


@dataclass(frozen=True)
class JobState:
    """A job's state as a poll saw it: finished or not, and how the provider says so."""

    done: bool
    status: str
    counts: str


class BatchBackend(Protocol):
    """What the job orchestration asks of a provider's batch API."""

    async def upload(self, requests: list[tuple[str, dict]]) -> str | None:
        """Stage the (custom_id, request body) pairs; the input file id, if any."""
        ...

    async def create(self, sub: PendingSubmit, requests: list[tuple[str, dict]]) -> str:
        """Create the job for a pending submit; its id."""
        ...

    async def find(self, sub: PendingSubmit, known: set[str]) -> str | None:
        """The id of the job ``sub`` created, if the provider lists one no row claims."""
        ...

    async def poll(self, job_id: str) -> JobState: ...

    async def collect(self, job_id: str) -> Collected: ...


class OpenAIBatches:
    """File upload + ``batches.create``; results from the output and error files.

    A new job's endpoint is the annotator's (``/v1/chat/completions``, or ``/v1/responses``
    for ``api="responses"``: the Batch API takes both); a job's result bodies are read in
    the format of the endpoint it was created with, which an open job submitted before
    the annotator's ``api`` changed (or before ``api`` existed: chat) does not share."""

    def __init__(self, annotator: Any) -> None:
        self.client = annotator.batch_client()
        self.endpoint: str = getattr(annotator, "endpoint", "/v1/chat/completions")
        #: job id -> what a failed job said (``errors``), for the missing items' reason
        self.job_errors: dict[str, list[str]] = {}

    async def upload(self, requests: list[tuple[str, dict]]) -> str | None:
        lines = "".join(
            json.dumps({"custom_id": cid, "method": "POST", "url": self.endpoint,
                        "body": body}) + "\n"
            for cid, body in requests
        )
        f = await self.client.files.create(file=("batch.jsonl", lines.encode(),
                                                 "application/jsonl"), purpose="batch")
        return f.id

    async def create(self, sub: PendingSubmit, requests: list[tuple[str, dict]]) -> str:
        b = await self.client.batches.create(
            input_file_id=sub.input_file_id, endpoint=self.endpoint,
            completion_window="24h", metadata={METADATA_KEY: sub.submit_id},
        )
        return b.id

    async def find(self, sub: PendingSubmit, known: set[str]) -> str | None:
        async for b in self.client.batches.list(limit=100):  # newest first
            if b.created_at < sub.created - CLOCK_SLACK:
                break
            if b.id in known:
                continue
            if ((sub.input_file_id and b.input_file_id == sub.input_file_id)
                    or (b.metadata or {}).get(METADATA_KEY) == sub.submit_id):
                return b.id
        return None

    async def poll(self, job_id: str) -> JobState:
        b = await self.client.batches.retrieve(job_id)
        c = b.request_counts
        counts = "" if c is None else f"{c.completed}/{c.total} done, {c.failed} failed"
        errors = [f"{e.code}: {e.message}" for e in ((b.errors and b.errors.data) or [])]
        if errors:  # a whole job failed (a bad input file): say why, not only "missing"
            self.job_errors[job_id] = errors
            counts = "; ".join([*([counts] if counts else []), *errors])
        return JobState(b.status in ("completed", "expired", "failed", "cancelled"),
                        b.status, counts)

    async def collect(self, job_id: str) -> Collected:
        b = await self.client.batches.retrieve(job_id)
        parse = parse_response if b.endpoint == "/v1/responses" else parse_chat_completion
        out: Collected = []
        for file_id in (b.output_file_id, b.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for line in content.text.splitlines():
                if line.strip():
                    out.extend(_openai_result(line, parse))
        return out


_CUSTOM_ID = re.compile(r'"custom_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _openai_result(line: str,
                   parse: Callable[[dict], RawReply] = parse_chat_completion) -> Collected:
    """One line of an OpenAI batch's output or error file. A line that cannot be read
    (cut, not JSON, no custom_id) is that request's error when its custom_id can be
    found in it (asked again, like any failed request), else skipped: its request is
    then missing and resubmitted. One bad line never costs the job's other results."""
    try:
        rec = json.loads(line)
        cid = rec["custom_id"]
        resp, err = rec.get("response"), rec.get("error")
        if resp and resp.get("status_code") == 200 and not err:
            return [(cid, parse(resp["body"]), None)]
        filtered = _content_filtered(resp)
        if filtered is not None:  # that item's refusal, as on the live path
            return [(cid, RawReply(text=None, refusal=filtered), None)]
        why = (err or {}).get("code") or f"HTTP {(resp or {}).get('status_code')}"
        return [(cid, None, f"batch request {why}")]
    except (ValueError, KeyError, TypeError, AttributeError):
        found = _CUSTOM_ID.search(line)
        return [(found.group(1), None, "batch result line not readable")] if found else []


def _content_filtered(resp: dict | None) -> str | None:
    """The message of a result Azure OpenAI's content filter declined (a 400 response,
    code ``content_filter``), else None. As a failed request it was re-submitted, then
    reported as an error and asked again by every later run: the filter says the same
    each time."""
    body = (resp or {}).get("body")
    error = body.get("error") if isinstance(body, dict) else None
    if (resp or {}).get("status_code") != 400 or not isinstance(error, dict):
        return None
    if error.get("code") != "content_filter":
        return None
    return str(error.get("message") or "content_filter")


class AnthropicBatches:
    """``messages.batches``: create, retrieve until ``ended``, stream the results."""

    def __init__(self, annotator: Any) -> None:
        self.client = annotator.batch_client()

    async def upload(self, requests: list[tuple[str, dict]]) -> str | None:
        return None  # the requests travel inside the create call

    async def create(self, sub: PendingSubmit, requests: list[tuple[str, dict]]) -> str:
        b = await self.client.messages.batches.create(
            requests=[{"custom_id": cid, "params": params} for cid, params in requests]
        )
        return b.id

    async def find(self, sub: PendingSubmit, known: set[str]) -> str | None:
        # No metadata on message batches: a job created after our row (less the clock
        # slack) with our request count that no other row claims; the closest in time.
        best: tuple[float, str] | None = None
        async for b in self.client.messages.batches.list(limit=100):  # newest first
            created = _timestamp(b.created_at)
            if created < sub.created - CLOCK_SLACK:
                break
            c = b.request_counts
            total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
            if b.id in known or total != len(sub.keys):
                continue
            gap = abs(created - sub.created)
            if best is None or gap < best[0]:
                best = (gap, b.id)
        return None if best is None else best[1]

    async def poll(self, job_id: str) -> JobState:
        b = await self.client.messages.batches.retrieve(job_id)
        c = b.request_counts
        done = c.succeeded + c.errored + c.canceled + c.expired
        counts = (f"{done}/{done + c.processing} done, {c.errored} errored, "
                  f"{c.expired} expired")
        return JobState(b.processing_status == "ended", b.processing_status, counts)

    async def collect(self, job_id: str) -> Collected:
        out: Collected = []
        try:
            async for r in await self.client.messages.batches.results(job_id):
                kind = r.result.type
                if kind == "succeeded":
                    body = json.loads(r.result.message.model_dump_json())
                    out.append((r.custom_id, parse_message(body), None))
                else:
                    out.append((r.custom_id, None, f"batch request {kind}"))
        except ValueError:
            # A results line the SDK cannot read ends its stream: the results before it
            # are kept, the requests after it are missing and resubmitted, and the job
            # is still collected (it crashed every run before, the job never done).
            pass
        return out


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def batch_backend(annotator: Annotator) -> BatchBackend:
    """The batch API of ``annotator``'s provider.

    Raises:
        AnnotatorError: the provider has no batch API here.
    """
    if annotator.provider == "openai":
        return OpenAIBatches(annotator)
    if annotator.provider == "anthropic":
        return AnthropicBatches(annotator)
    raise AnnotatorError(f"{annotator.name}: provider {annotator.provider!r} has no batch API")
