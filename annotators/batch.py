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

``reask`` asks again the items whose cached answer is invalid (or refused), in the new
job. A first Ctrl-C or SIGTERM submits nothing more and stops polling, a call waiting
in its retry backoff included (a 429's ``Retry-After`` held it up to two minutes); the
jobs keep running at the provider and the same call collects them (a second one stops at once).

This module holds the entry points; ``batch_jobs`` the per-annotator orchestration (the
rules above) and ``batch_backends`` the two providers' APIs behind the same verbs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from annotators.base import Annotator, BatchPendingError
from annotators.batch_backends import batch_backend
from annotators.batch_jobs import JobContext, run_jobs
from annotators.cache import AnnotationCache, check_reask, key_for, set_aside
from annotators.interrupt import DrainOnInterrupt, drain_by_default
from annotators.pricing import Price
from annotators.report import AnnotationRun, RunReport, estimate_into, results_to_annotations
from annotators.retry import RetryPolicy
from annotators.runner import gather_or_cancel, run_session
from annotators.templates import PromptTemplate
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError

__all__ = ["abatch_annotate", "abatch_annotate_with_report", "batch_annotate",
           "batch_annotate_with_report"]


_STOP_NOTE = ("\nInterrupted: submitting no new batch job and ending the polling; the "
              "submitted job(s) keep running at the provider and the same command collects "
              "them. {again} to stop now.")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _dry_run(dataset: AnnotatedDataset, annotators: Sequence[Annotator], db: AnnotationCache,
             report: RunReport, prices: Mapping[str, Price] | None,
             template: PromptTemplate | None, reask: frozenset[str]) -> None:
    todo: list[tuple[int, str]] = []
    for j, ann in enumerate(annotators):
        texts = {key_for(ann, it.text, dataset.schema, template): it.text
                 for it in dataset.items}
        cached, again = set_aside(db.get_many(texts), reask)
        report.reasked += len(again)
        in_jobs = {k for job in db.open_jobs(ann.name) for k in job.keys}
        in_jobs |= {k for sub in db.open_submits(ann.name) for k in sub.keys}
        report.from_cache += len(cached)
        report.in_batch_jobs += len(in_jobs & (texts.keys() - cached.keys()))
        todo += [(j, t) for k, t in texts.items() if k not in cached and k not in in_jobs]
    estimate_into(report, annotators, dataset.schema, todo, prices, batch=True,
                  template=template)


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
    template: PromptTemplate | None = None,
    reask: Collection[str] = (),
    drain_on_interrupt: bool = False,
) -> AnnotationRun:
    """Label the dataset through the providers' batch APIs; see ``batch_annotate``.

    ``drain_on_interrupt``: take SIGINT / SIGTERM on this loop (main thread only): the
    first submits nothing more and ends the polling, then ``KeyboardInterrupt`` (or
    ``Terminated``); the sync entry points set it as ``annotate_with_report`` does.
    """
    # A zero interval polled a running job as fast as the loop turned, for hours.
    if not poll_interval > 0:
        raise ConfigError(f"poll_interval must be positive (seconds), not {poll_interval}")
    if max_wait is not None and not max_wait >= 0:
        raise ConfigError(f"max_wait must not be negative, not {max_wait}")
    policy = policy or RetryPolicy()
    reask = check_reask(reask)
    async with run_session(cache, annotators, readonly=dry_run) as db:
        report = RunReport(annotators=[a.name for a in annotators], items=len(dataset),
                           dry_run=dry_run, batch=True, reask=tuple(sorted(reask)))
        if dry_run:
            _dry_run(dataset, annotators, db, report, prices, template, reask)
            return AnnotationRun(dataset, report)
        deadline = None if max_wait is None else time.monotonic() + max_wait
        interrupt = DrainOnInterrupt(drain_on_interrupt, _STOP_NOTE)
        ctxs = [
            JobContext(ann, batch_backend(ann),
                       {key_for(ann, it.text, dataset.schema, template): it.text
                        for it in dataset.items},
                       dataset.schema, db, report, policy, prices,
                       _stderr if progress else None, template, reask, interrupt.stop)
            for ann in annotators
        ]
        done = await interrupt.run(gather_or_cancel(*(
            run_jobs(c, poll_interval=poll_interval, deadline=deadline,
                     max_resubmits=max_resubmits) for c in ctxs)))
        running = [job_id for _, ids in done for job_id in ids]
        if running:
            raise BatchPendingError(
                f"batch job(s) {', '.join(running)} still running after {max_wait} s; run "
                "the same command again to resume polling them (they are kept in the "
                "cache)", job_ids=running,
            )
        all_results = {(j, k): r for j, (got, _) in enumerate(done) for k, r in got.items()}
        annotated = results_to_annotations(dataset, annotators, all_results, report, template)
        return AnnotationRun(annotated, report)


async def abatch_annotate(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                          **kwargs: Any) -> AnnotatedDataset:
    """Async ``batch_annotate``."""
    return (await abatch_annotate_with_report(dataset, annotators, **kwargs)).dataset


def batch_annotate_with_report(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                               **kwargs: Any) -> AnnotationRun:
    """Sync entry point returning the dataset and the report; Ctrl-C and SIGTERM are
    taken as ``annotate_with_report`` takes them (``drain_on_interrupt``)."""
    kwargs.setdefault("drain_on_interrupt", drain_by_default())
    return asyncio.run(abatch_annotate_with_report(dataset, annotators, **kwargs))


def batch_annotate(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                   **kwargs: Any) -> AnnotatedDataset:
    """Label every item with every annotator through the batch APIs (half price, slow).

    Args:
        dataset: the items to label.
        annotators: ``OpenAIAnnotator`` / ``AnthropicAnnotator`` instances.
        cache: an ``AnnotationCache`` or a path; it keeps the job ids, so give a file if
            the run may be interrupted.
        poll_interval: seconds between polls of a running job (positive).
        max_wait: seconds to wait for jobs before raising ``BatchPendingError`` (the jobs
            keep running; run again to resume; 0 polls once); None waits as long as it
            takes.
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
        reask: cached outcomes to ask again (``"invalid"``, ``"refused"``), in a new job;
            see ``annotate``.

    Raises:
        ConfigError: ``poll_interval`` not positive, ``max_wait`` negative, or ``reask``
            naming another outcome.
        KeyboardInterrupt: Ctrl-C (``Terminated``: SIGTERM) while polling; the jobs
            keep running and the same call collects them.
        BatchPendingError: ``max_wait`` passed with jobs still running.
        AnnotatorError: a create call failed such that the job may exist but is not
            listed yet (run again: it is looked for before anything is resubmitted).
    """
    return batch_annotate_with_report(dataset, annotators, **kwargs).dataset
