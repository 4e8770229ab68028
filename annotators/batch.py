"""Batch jobs: OpenAI Batch and Anthropic Message Batches, submitted, polled and collected
resumably.

Batch APIs halve the price and lift the rate limits, at the cost of latency (up to 24 h).
That latency is why resumability matters: the job id goes into the cache the moment the
provider returns it, so a run that is interrupted (Ctrl-C, ``max_wait`` reached,
``kill -9``) resumes by polling the same job, never by paying for a second one.

Per annotator: cached answers are reused; open jobs in the cache are polled and
collected; the remaining texts go into one new job. Each result is judged by the same
rule as a live call (``labelling.judge``: refusal, label, or one live repair call for an
invalid reply, then ``invalid``) and committed to the cache at once. Requests that
expired or errored inside a job are re-queued into a new job up to ``max_resubmits``
times, then reported as ``error`` (never silently dropped).

``custom_id`` is the cache key (64 hex characters: within both providers' limits), so a
result maps back to its texts without any side table.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from annotators.anthropic_annotator import parse_message
from annotators.base import AnnotationResult, Annotator, AnnotatorError, BatchPendingError, RawReply
from annotators.cache import AnnotationCache, BatchJob
from annotators.labelling import judge
from annotators.openai_annotator import parse_chat_completion
from annotators.pricing import Price, cost_of
from annotators.prompts import build_prompt
from annotators.retry import RetryPolicy
from annotators.runner import AnnotationRun, RunReport, key_for, open_cache, results_to_annotations
from guardrail_dro.data import AnnotatedDataset
from guardrail_dro.schema import LabelSchema

__all__ = ["abatch_annotate", "abatch_annotate_with_report", "batch_annotate",
           "batch_annotate_with_report"]

# (custom_id, reply or None, error or None) for each request a finished job reports.
Collected = list[tuple[str, RawReply | None, str | None]]


class _OpenAIBatches:
    """File upload + ``batches.create``; results from the output and error files."""

    def __init__(self, annotator: Any) -> None:
        self.client = annotator.batch_client()
        self.annotator = annotator

    async def submit(self, requests: list[tuple[str, dict]]) -> str:
        lines = "".join(
            json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                        "body": body}) + "\n"
            for cid, body in requests
        )
        f = await self.client.files.create(file=("batch.jsonl", lines.encode(),
                                                 "application/jsonl"), purpose="batch")
        b = await self.client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                             completion_window="24h")
        return b.id

    async def poll(self, job_id: str) -> bool:
        b = await self.client.batches.retrieve(job_id)
        return b.status in ("completed", "expired", "failed", "cancelled")

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

    async def submit(self, requests: list[tuple[str, dict]]) -> str:
        b = await self.client.messages.batches.create(
            requests=[{"custom_id": cid, "params": params} for cid, params in requests]
        )
        return b.id

    async def poll(self, job_id: str) -> bool:
        b = await self.client.messages.batches.retrieve(job_id)
        return b.processing_status == "ended"

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


def _backend(annotator: Annotator) -> _OpenAIBatches | _AnthropicBatches:
    if annotator.provider == "openai":
        return _OpenAIBatches(annotator)
    if annotator.provider == "anthropic":
        return _AnthropicBatches(annotator)
    raise AnnotatorError(f"{annotator.name}: provider {annotator.provider!r} has no batch API")


async def _one_annotator(
    ann: Annotator, texts: dict[str, str], schema: LabelSchema, db: AnnotationCache,
    report: RunReport, *, policy: RetryPolicy, poll_interval: float, max_wait: float | None,
    max_resubmits: int, prices: Mapping[str, Price] | None,
) -> dict[str, AnnotationResult]:
    """Results by cache key for the texts of one annotator (``texts``: key -> text)."""
    backend = _backend(ann)
    results: dict[str, AnnotationResult] = dict(db.get_many(texts))
    report.from_cache += len(results)
    deadline = None if max_wait is None else time.monotonic() + max_wait
    failed: dict[str, str] = {}
    resubmits = 0
    while True:
        jobs = [j for j in db.open_jobs(ann.name) if j.provider == ann.provider]
        pending = {k for j in jobs for k in j.keys}
        missing = [k for k in texts if k not in results and k not in pending and k not in failed]
        if missing:
            reqs = [(k, ann.request_body(build_prompt(texts[k], schema), schema))  # type: ignore[attr-defined]
                    for k in missing]
            job_id = await policy.run(lambda reqs=reqs: backend.submit(reqs))
            job = BatchJob(job_id, ann.provider, ann.model, ann.name, tuple(missing), "submitted")
            db.add_job(job)  # before anything else can fail: the job is never paid twice
            report.batch_jobs.append(job_id)
            jobs.append(job)
        if not jobs:
            break
        requeue: dict[str, str] = {}
        for job in jobs:
            while not await policy.run(lambda job=job: backend.poll(job.job_id)):
                if deadline is not None and time.monotonic() >= deadline:
                    raise BatchPendingError(
                        f"{ann.name}: batch job {job.job_id} is still running; run the same "
                        "command again to resume polling it (it is kept in the cache)",
                        job_ids=[j.job_id for j in jobs],
                    )
                await asyncio.sleep(poll_interval)
            collected = await policy.run(lambda job=job: backend.collect(job.job_id))
            seen = set()
            for cid, reply, error in collected:
                if cid not in texts or cid in results:
                    continue
                seen.add(cid)
                if reply is None:
                    requeue[cid] = error or "batch request failed"
                    continue
                res = await judge(ann, texts[cid], schema, reply, policy=policy)
                db.put(cid, ann.provider, ann.model, res)
                results[cid] = res
                report.calls += res.calls
                report.usage = report.usage + res.usage
                report.add_cost(cost_of(ann.model, res.usage, prices, batch=True))
            for k in job.keys:
                if k not in seen and k not in results:
                    requeue.setdefault(k, "missing from the batch results")
            db.set_job_status(job.job_id, "collected")
        if requeue:  # the next pass submits them again, or they are given up
            if resubmits >= max_resubmits:
                failed.update(requeue)
            else:
                resubmits += 1
    for k, why in failed.items():
        results[k] = AnnotationResult(outcome="error", annotator=ann.name,
                                      error=f"{why} (after {max_resubmits} resubmission(s))")
    return results


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
) -> AnnotationRun:
    """Label the dataset through the providers' batch APIs; see ``batch_annotate``."""
    policy = policy or RetryPolicy()
    db, owned = open_cache(cache)
    report = RunReport(annotators=[a.name for a in annotators], items=len(dataset))
    try:
        all_results = {}
        for j, ann in enumerate(annotators):
            texts = {key_for(ann, it.text, dataset.schema): it.text for it in dataset.items}
            got = await _one_annotator(
                ann, texts, dataset.schema, db, report, policy=policy,
                poll_interval=poll_interval, max_wait=max_wait, max_resubmits=max_resubmits,
                prices=prices,
            )
            all_results.update({(j, k): r for k, r in got.items()})
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
        policy: retry policy of each API call.
        prices: price overrides (batch calls are costed at ``pricing.BATCH_DISCOUNT``).

    Raises:
        BatchPendingError: ``max_wait`` passed with jobs still running.
    """
    return batch_annotate_with_report(dataset, annotators, **kwargs).dataset
