"""Batch jobs: OpenAI Batch and Anthropic Message Batches, submitted, polled and collected
resumably.

Batch APIs halve the price and lift the rate limits, at the cost of latency (up to 24 h).
That latency is why resumability matters, and why a job must never be paid twice:

- Before a job is created, a pending-submit row (a random submit id, the keys, and for
  OpenAI the uploaded input file id) is committed to the cache. The create call itself
  is retried only on answers that prove nothing was created (408, 409, 429); on a
  timeout, a lost connection or a 5xx the job may exist, so the provider's list
  endpoint is searched for it first (OpenAI: ``input_file_id`` or the submit id in
  ``metadata``; Anthropic, which keeps no metadata: a job created after the row with
  the same number of requests that no other row claims). Found: it is adopted. Not
  found: the run stops and says so, and the next run looks again before submitting.
- A run that starts with pending rows (the last one was killed between create and
  recording the job id) reconciles them the same way before submitting anything.
- The job id goes into the cache the moment it is known, so an interrupted run
  (Ctrl-C, ``max_wait`` reached, ``kill -9``) resumes by polling the same job.

Per annotator: cached answers are reused; open jobs in the cache are polled and
collected; the remaining texts go into one new job. All annotators submit first and are
then polled together. Each result is judged by the same rule as a live call
(``labelling.judge``: refusal, label, or one live repair call for an invalid reply, then
``invalid``) and committed to the cache at once, including results for texts that are
not in this run (a job from an earlier run over other data: paid for, so kept under
their key, validated against the label schema stored with the job). Requests that
expired or errored inside a job are re-queued into a new job up to ``max_resubmits``
times, then reported as ``error`` (never silently dropped).

Costs: batch replies at ``pricing.BATCH_DISCOUNT``, repair calls (live) at the live
price.

``custom_id`` is the cache key (64 hex characters: within both providers' limits), so a
result maps back to its texts without any side table.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from annotators.anthropic_annotator import parse_message
from annotators.base import (
    AnnotationResult,
    Annotator,
    AnnotatorError,
    BatchPendingError,
    RawReply,
    Usage,
)
from annotators.cache import AnnotationCache, BatchJob, PendingSubmit
from annotators.labelling import judge
from annotators.openai_annotator import parse_chat_completion
from annotators.pricing import Price, cost_of
from annotators.prompts import build_prompt
from annotators.retry import RetryPolicy, api_error_types, is_transient
from annotators.runner import (
    AnnotationRun,
    RunReport,
    estimate_into,
    gather_or_cancel,
    key_for,
    open_cache,
    results_to_annotations,
)
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.schema import LabelSchema

__all__ = ["abatch_annotate", "abatch_annotate_with_report", "batch_annotate",
           "batch_annotate_with_report"]

# (custom_id, reply or None, error or None) for each request a finished job reports.
Collected = list[tuple[str, RawReply | None, str | None]]

METADATA_KEY = "guardrail_dro_submit"
# A job listed by the provider this long before our pending row (clock skew) may be ours.
_CLOCK_SLACK = 600.0
# Statuses that prove a create call created nothing, so it may be sent again.
_NOT_CREATED = frozenset({408, 409, 429})


def _surely_not_created(exc: BaseException) -> bool:
    return getattr(exc, "status_code", None) in _NOT_CREATED


@dataclass(frozen=True)
class _JobState:
    done: bool
    status: str
    counts: str


class _OpenAIBatches:
    """File upload + ``batches.create``; results from the output and error files."""

    def __init__(self, annotator: Any) -> None:
        self.client = annotator.batch_client()

    async def upload(self, requests: list[tuple[str, dict]]) -> str | None:
        lines = "".join(
            json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                        "body": body}) + "\n"
            for cid, body in requests
        )
        f = await self.client.files.create(file=("batch.jsonl", lines.encode(),
                                                 "application/jsonl"), purpose="batch")
        return f.id

    async def create(self, sub: PendingSubmit, requests: list[tuple[str, dict]]) -> str:
        b = await self.client.batches.create(
            input_file_id=sub.input_file_id, endpoint="/v1/chat/completions",
            completion_window="24h", metadata={METADATA_KEY: sub.submit_id},
        )
        return b.id

    async def find(self, sub: PendingSubmit, known: set[str]) -> str | None:
        async for b in self.client.batches.list(limit=100):  # newest first
            if b.created_at < sub.created - _CLOCK_SLACK:
                break
            if b.id in known:
                continue
            if ((sub.input_file_id and b.input_file_id == sub.input_file_id)
                    or (b.metadata or {}).get(METADATA_KEY) == sub.submit_id):
                return b.id
        return None

    async def poll(self, job_id: str) -> _JobState:
        b = await self.client.batches.retrieve(job_id)
        c = b.request_counts
        counts = "" if c is None else f"{c.completed}/{c.total} done, {c.failed} failed"
        return _JobState(b.status in ("completed", "expired", "failed", "cancelled"),
                         b.status, counts)

    async def collect(self, job_id: str) -> Collected:
        b = await self.client.batches.retrieve(job_id)
        out: Collected = []
        for file_id in (b.output_file_id, b.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                resp, err = rec.get("response"), rec.get("error")
                if resp and resp.get("status_code") == 200 and not err:
                    out.append((rec["custom_id"], parse_chat_completion(resp["body"]), None))
                else:
                    why = (err or {}).get("code") or f"HTTP {(resp or {}).get('status_code')}"
                    out.append((rec["custom_id"], None, f"batch request {why}"))
        return out


class _AnthropicBatches:
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
            if created < sub.created - _CLOCK_SLACK:
                break
            c = b.request_counts
            total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
            if b.id in known or total != len(sub.keys):
                continue
            gap = abs(created - sub.created)
            if best is None or gap < best[0]:
                best = (gap, b.id)
        return None if best is None else best[1]

    async def poll(self, job_id: str) -> _JobState:
        b = await self.client.messages.batches.retrieve(job_id)
        c = b.request_counts
        done = c.succeeded + c.errored + c.canceled + c.expired
        counts = (f"{done}/{done + c.processing} done, {c.errored} errored, "
                  f"{c.expired} expired")
        return _JobState(b.processing_status == "ended", b.processing_status, counts)

    async def collect(self, job_id: str) -> Collected:
        out: Collected = []
        async for r in await self.client.messages.batches.results(job_id):
            kind = r.result.type
            if kind == "succeeded":
                body = json.loads(r.result.message.model_dump_json())
                out.append((r.custom_id, parse_message(body), None))
            else:
                out.append((r.custom_id, None, f"batch request {kind}"))
        return out


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _backend(annotator: Annotator) -> _OpenAIBatches | _AnthropicBatches:
    if annotator.provider == "openai":
        return _OpenAIBatches(annotator)
    if annotator.provider == "anthropic":
        return _AnthropicBatches(annotator)
    raise AnnotatorError(f"{annotator.name}: provider {annotator.provider!r} has no batch API")


Log = Callable[[str], None]


@dataclass
class _Ctx:
    """What one annotator's batch work needs (one per annotator, run concurrently)."""

    ann: Annotator
    backend: _OpenAIBatches | _AnthropicBatches
    texts: dict[str, str]  # cache key -> text
    schema: LabelSchema
    db: AnnotationCache
    report: RunReport
    policy: RetryPolicy
    prices: Mapping[str, Price] | None
    log: Log | None

    def say(self, msg: str) -> None:
        if self.log is not None:
            self.log(f"{self.ann.name}: {msg}")


async def _reconcile(ctx: _Ctx) -> None:
    """Turn pending submits left by an earlier run into jobs, or forget them."""
    for sub in ctx.db.open_submits(ctx.ann.name):
        if sub.provider != ctx.ann.provider:
            continue
        job_id = await ctx.policy.run(
            functools.partial(ctx.backend.find, sub, ctx.db.job_ids()))
        if job_id is None:
            ctx.db.drop_submit(sub.submit_id)  # never created: its keys are asked again
            ctx.say(f"an earlier submit of {len(sub.keys)} request(s) never became a job")
        else:
            ctx.db.resolve_submit(sub, job_id)
            ctx.say(f"adopted batch {job_id} ({len(sub.keys)} requests), created by an "
                    "earlier run whose create reply was lost")


async def _submit(ctx: _Ctx, keys: list[str]) -> BatchJob:
    """Create one job for ``keys`` such that it is never created twice."""
    ann = ctx.ann
    reqs = [(k, ann.request_body(build_prompt(ctx.texts[k], ctx.schema), ctx.schema))  # type: ignore[attr-defined]
            for k in keys]
    sub = PendingSubmit(uuid.uuid4().hex, ann.provider, ann.model, ann.name, tuple(keys),
                        schema=ctx.schema.model_dump_json())
    ctx.db.add_submit(sub)  # committed before anything is created
    file_id = await ctx.policy.run(lambda: ctx.backend.upload(reqs))  # free to repeat
    if file_id is not None:
        ctx.db.set_submit_file(sub.submit_id, file_id)
        sub = replace(sub, input_file_id=file_id)
    try:
        job_id = await ctx.policy.run(lambda: ctx.backend.create(sub, reqs),
                                      retry_if=_surely_not_created)
    except api_error_types() as exc:
        if not is_transient(exc) or _surely_not_created(exc):
            ctx.db.drop_submit(sub.submit_id)  # the provider said no: nothing was created
            raise
        # A timeout, a lost connection or a 5xx: the job may exist. Look before leaping.
        found = await ctx.policy.run(lambda: ctx.backend.find(sub, ctx.db.job_ids()))
        if found is None:
            raise AnnotatorError(
                f"{ann.name}: creating a batch job failed ({type(exc).__name__}: {exc}) and "
                "no such job is listed by the provider yet; it is not submitted again now, "
                "so it cannot be paid twice. Run the same command again: it looks for the "
                "job once more and submits only if it is still missing."
            ) from exc
        job_id = found
        ctx.say(f"the create reply was lost; found batch {job_id} in the provider's list")
    job = ctx.db.resolve_submit(sub, job_id)
    ctx.report.batch_jobs.append(job_id)
    ctx.say(f"submitted batch {job_id} ({len(keys)} requests)")
    return job


async def _absorb(ctx: _Ctx, job: BatchJob, collected: Collected,
                  results: dict[str, AnnotationResult], requeue: dict[str, str]) -> None:
    """Judge and store every result of a finished job; note what must be asked again."""
    ann, report = ctx.ann, ctx.report
    job_schema = (LabelSchema.model_validate_json(job.schema) if job.schema else ctx.schema)
    seen = set()
    for cid, reply, error in collected:
        seen.add(cid)
        if cid in results:
            continue
        if reply is None:
            if cid in ctx.texts:
                requeue[cid] = error or "batch request failed"
            continue
        text = ctx.texts.get(cid)  # None: an item of another run, paid for all the same
        res = await judge(ann, text, job_schema if text is None else ctx.schema, reply,
                          policy=ctx.policy)
        if text is not None or res.outcome != "invalid":  # unrepaired: a later run asks
            ctx.db.put(cid, ann.provider, ann.model, res)
        if text is not None:
            results[cid] = res
        report.calls += res.calls
        report.usage = report.usage + res.usage
        repair = Usage(res.input_tokens - reply.usage.input_tokens,
                       res.output_tokens - reply.usage.output_tokens)
        report.add_cost(cost_of(ann.model, reply.usage, ctx.prices, batch=True))
        if res.calls > 1:  # the repair call was a live one, billed at the live price
            report.add_cost(cost_of(ann.model, repair, ctx.prices))
    for k in job.keys:
        if k not in seen and k not in results and k in ctx.texts:
            requeue.setdefault(k, "missing from the batch results")


async def _one_annotator(
    ctx: _Ctx, *, poll_interval: float, deadline: float | None, max_resubmits: int,
) -> tuple[dict[str, AnnotationResult], list[str]]:
    """(results by cache key, ids of jobs still running at the deadline)."""
    ann, db = ctx.ann, ctx.db
    results: dict[str, AnnotationResult] = dict(db.get_many(ctx.texts))
    ctx.report.from_cache += len(results)
    await _reconcile(ctx)
    failed: dict[str, str] = {}
    resubmits = 0
    states: dict[str, _JobState] = {}
    while True:
        jobs = [j for j in db.open_jobs(ann.name) if j.provider == ann.provider]
        pending = {k for j in jobs for k in j.keys}
        missing = [k for k in ctx.texts
                   if k not in results and k not in pending and k not in failed]
        if missing:
            jobs.append(await _submit(ctx, missing))
        if not jobs:
            break
        finished = []
        for job in jobs:  # one round: every open job polled once
            state = await ctx.policy.run(functools.partial(ctx.backend.poll, job.job_id))
            if states.get(job.job_id) != state:
                states[job.job_id] = state
                ctx.say(f"batch {job.job_id} {state.status}"
                        + (f" ({state.counts})" if state.counts else ""))
            if state.done:
                finished.append(job)
        if not finished:
            if deadline is not None and time.monotonic() >= deadline:
                return results, [j.job_id for j in jobs]
            await asyncio.sleep(poll_interval)
            continue
        requeue: dict[str, str] = {}
        for job in finished:
            collected = await ctx.policy.run(functools.partial(ctx.backend.collect, job.job_id))
            await _absorb(ctx, job, collected, results, requeue)
            db.set_job_status(job.job_id, "collected")
        if requeue:  # the next pass submits them again, or they are given up
            if resubmits >= max_resubmits:
                failed.update(requeue)
            else:
                resubmits += 1
    for k, why in failed.items():
        results[k] = AnnotationResult(outcome="error", annotator=ann.name,
                                      error=f"{why} (after {max_resubmits} resubmission(s))")
    return results, []


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _dry_run(dataset: AnnotatedDataset, annotators: Sequence[Annotator], db: AnnotationCache,
             report: RunReport, prices: Mapping[str, Price] | None) -> None:
    todo: list[tuple[int, str]] = []
    for j, ann in enumerate(annotators):
        texts = {key_for(ann, it.text, dataset.schema): it.text for it in dataset.items}
        cached = db.get_many(texts)
        in_jobs = {k for job in db.open_jobs(ann.name) for k in job.keys}
        in_jobs |= {k for sub in db.open_submits(ann.name) for k in sub.keys}
        report.from_cache += len(cached)
        report.in_batch_jobs += len(in_jobs & (texts.keys() - cached.keys()))
        todo += [(j, t) for k, t in texts.items() if k not in cached and k not in in_jobs]
    estimate_into(report, annotators, dataset.schema, todo, prices, batch=True)


async def abatch_annotate_with_report(
    dataset: AnnotatedDataset,
    annotators: Sequence[Annotator],
    *,
    cache: AnnotationCache | str | Path | None = None,
    poll_interval: float = 30.0,
    max_wait: float | None = None,
    max_resubmits: int = 1,
    policy: RetryPolicy | None = None,
    prices: Mapping[str, Price] | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> AnnotationRun:
    """Label the dataset through the providers' batch APIs; see ``batch_annotate``."""
    policy = policy or RetryPolicy()
    db, owned = open_cache(cache, readonly=dry_run)
    report = RunReport(annotators=[a.name for a in annotators], items=len(dataset),
                       dry_run=dry_run)
    try:
        if dry_run:
            _dry_run(dataset, annotators, db, report, prices)
            return AnnotationRun(dataset, report)
        deadline = None if max_wait is None else time.monotonic() + max_wait
        ctxs = [
            _Ctx(ann, _backend(ann),
                 {key_for(ann, it.text, dataset.schema): it.text for it in dataset.items},
                 dataset.schema, db, report, policy, prices, _stderr if progress else None)
            for ann in annotators
        ]
        done = await gather_or_cancel(*(
            _one_annotator(c, poll_interval=poll_interval, deadline=deadline,
                           max_resubmits=max_resubmits) for c in ctxs))
        running = [job_id for _, ids in done for job_id in ids]
        if running:
            raise BatchPendingError(
                f"batch job(s) {', '.join(running)} still running after {max_wait} s; run "
                "the same command again to resume polling them (they are kept in the "
                "cache)", job_ids=running,
            )
        all_results = {(j, k): r for j, (got, _) in enumerate(done) for k, r in got.items()}
        annotated = results_to_annotations(dataset, annotators, all_results, report)
        return AnnotationRun(annotated, report)
    finally:
        for ann in annotators:
            await ann.aclose()
        if owned:
            db.close()


async def abatch_annotate(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                          **kwargs: Any) -> AnnotatedDataset:
    """Async ``batch_annotate``."""
    return (await abatch_annotate_with_report(dataset, annotators, **kwargs)).dataset


def batch_annotate_with_report(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                               **kwargs: Any) -> AnnotationRun:
    """Sync entry point returning the dataset and the report."""
    return asyncio.run(abatch_annotate_with_report(dataset, annotators, **kwargs))


def batch_annotate(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                   **kwargs: Any) -> AnnotatedDataset:
    """Label every item with every annotator through the batch APIs (half price, slow).

    Args:
        dataset: the items to label.
        annotators: ``OpenAIAnnotator`` / ``AnthropicAnnotator`` instances.
        cache: an ``AnnotationCache`` or a path; it keeps the job ids, so give a file if
            the run may be interrupted.
        poll_interval: seconds between polls of a running job.
        max_wait: seconds to wait for jobs before raising ``BatchPendingError`` (the jobs
            keep running; run again to resume); None waits as long as it takes.
        max_resubmits: times expired / errored requests are put into a new job before
            being reported as errors.
        policy: retry policy of each API call (a job's create call is only retried on
            answers that prove nothing was created).
        prices: price overrides (batch calls are costed at ``pricing.BATCH_DISCOUNT``,
            repair calls at the live price).
        dry_run: make no call and write nothing; the report carries the requests still
            to make (not cached, not in a submitted job) and their cost at batch prices.
        progress: print each job's submission, and its status and counts whenever they
            change while polling, on stderr.

    Raises:
        BatchPendingError: ``max_wait`` passed with jobs still running.
        AnnotatorError: a create call failed such that the job may exist but is not
            listed yet (run again: it is looked for before anything is resubmitted).
    """
    return batch_annotate_with_report(dataset, annotators, **kwargs).dataset
