"""One annotator's batch work: submit a job at most once, poll it, absorb its results.

The rules that keep a job from being paid twice live here (see ``annotators.batch`` for
the whole story): a pending-submit row is committed before the create call; the create
call is retried only on answers that prove nothing was created (408, 409, 429); after a
timeout, a lost connection or a 5xx the provider's list is searched before anything is
sent again; pending rows left by an earlier run are reconciled first. Each result is
judged by the live rule (``labelling.judge``) and committed to the cache at once.

``run_jobs`` sequences it for one annotator; ``annotators.batch`` runs one per annotator
concurrently. Once ``stop`` is set (Ctrl-C, SIGTERM) it submits nothing more, stops
polling (a call sleeping in its retry backoff wakes and is not retried: ``JobContext.call``),
repairs no invalid answer (kept invalid, unrepaired: ``--reask invalid`` asks again),
and leaves a job it was collecting uncollected: the rest of its results are read
again by the next run (downloading them is free), the ones judged already are cached.

The report tells this run's work from an earlier one's: ``submitted`` counts the
requests this run put into jobs (``calls`` counts them, plus the live repair calls),
``collected_earlier`` the results it collected from jobs an earlier run submitted.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from annotators.base import AnnotationResult, Annotator, AnnotatorError, Prompt, Usage
from annotators.batch_backends import BatchBackend, Collected, JobState
from annotators.cache import REASKABLE, AnnotationCache, BatchJob, PendingSubmit, set_aside
from annotators.interrupt import Stopped, pause
from annotators.labelling import judge
from annotators.pricing import Price, cost_of
from annotators.prompts import build_prompt
from annotators.report import RunReport
from annotators.retry import RetryPolicy, api_error_types, is_transient
from annotators.templates import PromptTemplate
from guardrail_dro.data.schema import LabelSchema

__all__ = ["NOT_CREATED", "JobContext", "Log", "run_jobs", "surely_not_created"]

NOT_CREATED = frozenset({408, 409, 429})
"""Statuses that prove a create call created nothing, so it may be sent again."""

Log = Callable[[str], None]
T = TypeVar("T")


def surely_not_created(exc: BaseException) -> bool:
    """True when the error's status proves the create call created no job."""
    return getattr(exc, "status_code", None) in NOT_CREATED


@dataclass
class JobContext:
    """What one annotator's batch work needs (one per annotator, run concurrently)."""

    ann: Annotator
    backend: BatchBackend
    texts: dict[str, str]  # cache key -> text
    schema: LabelSchema
    db: AnnotationCache
    report: RunReport
    policy: RetryPolicy
    prices: Mapping[str, Price] | None
    log: Log | None
    template: PromptTemplate | None = None
    reask: frozenset[str] = frozenset()
    """Cached outcomes to ask again (``cache.REASKABLE``)."""
    stop: asyncio.Event | None = None
    """Set by a first Ctrl-C / SIGTERM: submit and poll no more."""

    @property
    def stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def prompt(self, text: str) -> Prompt:
        if self.template is not None:
            return self.template.build(text, self.schema)
        return build_prompt(text, self.schema)

    async def call(self, fn: Callable[[], Awaitable[T]], *,
                   retry_if: Callable[[BaseException], bool] | None = None) -> T:
        """``fn()`` under the retry policy, whose backoff a stop ends at once (``Stopped``):
        a poll answered 429 with ``Retry-After: 60`` held a first Ctrl-C for a minute."""
        return await self.policy.run(fn, retry_if=retry_if, stop=self.stop)

    def say(self, msg: str) -> None:
        if self.log is not None:
            self.log(f"{self.ann.name}: {msg}")


async def _reconcile(ctx: JobContext) -> None:
    """Turn pending submits left by an earlier run into jobs, or forget them."""
    for sub in ctx.db.open_submits(ctx.ann.name):
        if sub.provider != ctx.ann.provider:
            continue
        job_id = await ctx.call(
            functools.partial(ctx.backend.find, sub, ctx.db.job_ids()))
        if job_id is None:
            ctx.db.drop_submit(sub.submit_id)  # never created: its keys are asked again
            ctx.say(f"an earlier submit of {len(sub.keys)} request(s) never became a job")
        else:
            ctx.db.resolve_submit(sub, job_id)
            ctx.say(f"adopted batch {job_id} ({len(sub.keys)} requests), created by an "
                    "earlier run whose create reply was lost")


async def _submit(ctx: JobContext, keys: list[str]) -> BatchJob:
    """Create one job for ``keys`` such that it is never created twice."""
    ann = ctx.ann
    reqs = [(k, ann.request_body(ctx.prompt(ctx.texts[k]), ctx.schema))  # type: ignore[attr-defined]
            for k in keys]
    sub = PendingSubmit(uuid.uuid4().hex, ann.provider, ann.model, ann.name, tuple(keys),
                        schema=ctx.schema.model_dump_json())
    ctx.db.add_submit(sub)  # committed before anything is created
    file_id = await ctx.call(lambda: ctx.backend.upload(reqs))  # free to repeat
    if file_id is not None:
        ctx.db.set_submit_file(sub.submit_id, file_id)
        sub = replace(sub, input_file_id=file_id)
    try:
        job_id = await ctx.call(lambda: ctx.backend.create(sub, reqs),
                                      retry_if=surely_not_created)
    except api_error_types() as exc:
        if not is_transient(exc) or surely_not_created(exc):
            ctx.db.drop_submit(sub.submit_id)  # the provider said no: nothing was created
            raise
        # A timeout, a lost connection or a 5xx: the job may exist. Look before leaping.
        found = await ctx.call(lambda: ctx.backend.find(sub, ctx.db.job_ids()))
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
    ctx.report.submitted += len(keys)
    ctx.report.calls += len(keys)
    ctx.say(f"submitted batch {job_id} ({len(keys)} requests)")
    return job


def _reask_failed(cached: AnnotationResult, job_id: str, error: str | None) -> AnnotationResult:
    """The cached answer of an item whose request in a reask job (an earlier ``--reask``
    run's, collected by a run without it) failed: it stays the item's state, in the cache
    and in the report, saying the re-ask failed. Reported as an ``error`` before when
    ``max_resubmits`` was spent (0), while the cache kept the invalid answer and a run
    with resubmits left reported that answer: the same item, two stories. Not stored:
    the cache keeps the answer as it was."""
    said = f"{cached.error}; " if cached.error else ""
    why = error or "batch request failed"
    return AnnotationResult.model_validate({
        **cached.model_dump(),
        "error": f"{said}asked again in batch {job_id}, which failed ({why}): this "
                 f"cached {cached.outcome} answer stands (--reask {cached.outcome} asks again)",
    })


async def _absorb(ctx: JobContext, job: BatchJob, collected: Collected,
                  results: dict[str, AnnotationResult], requeue: dict[str, str]) -> bool:
    """Judge and store every result of a finished job; note what must be asked again.
    False: stopped part way (the job is to be collected again by the next run)."""
    ann, report = ctx.ann, ctx.report
    job_schema = (LabelSchema.model_validate_json(job.schema) if job.schema else ctx.schema)
    earlier = job.job_id not in report.batch_jobs  # submitted by an earlier run
    # Cached invalid / refused answers older than the job: those its answers replace. The
    # others were judged from this job by a run stopped while collecting it; judging
    # them again paid an invalid reply's repair call twice.
    older = ctx.db.stored_before(
        (k for k in job.keys if k in results and results[k].outcome in REASKABLE),
        job.created)
    seen = set()
    for cid, reply, error in collected:
        if ctx.stopping:
            return False
        seen.add(cid)
        # A cached invalid or refused answer gives way to a job's: that job was a --reask
        # run's (stopped, resumed without it), paid for and better than the old answer.
        if cid in results and (results[cid].outcome not in REASKABLE or cid not in older):
            continue
        if reply is None:
            if cid in results:  # a reask job's request failed: the cached answer stands
                results[cid] = _reask_failed(results[cid], job.job_id, error)
            elif cid in ctx.texts:
                requeue[cid] = error or "batch request failed"
            continue
        text = ctx.texts.get(cid)  # None: an item of another run, paid for all the same
        # stop: an invalid answer's repair call sends no new request once the run is
        # stopped, nor sleeps out its backoff (a 429's Retry-After held a first Ctrl-C
        # for a minute); the answer is kept invalid, unrepaired, as the live path keeps it
        res = await judge(ann, text, job_schema if text is None else ctx.schema, reply,
                          policy=ctx.policy, template=ctx.template, stop=ctx.stop)
        if text is not None or res.outcome != "invalid":  # unrepaired: a later run asks
            ctx.db.put(cid, ann.provider, ann.model, res)
        if text is not None:
            results[cid] = res
        report.collected += 1
        report.collected_earlier += earlier
        report.calls += res.calls - 1  # the live repair calls; the request was submitted
        report.usage = report.usage + res.usage
        repair = Usage(res.input_tokens - reply.usage.input_tokens,
                       res.output_tokens - reply.usage.output_tokens)
        report.add_cost(cost_of(ann.model, reply.usage, ctx.prices, batch=True))
        if res.calls > 1:  # the repair call was a live one, billed at the live price
            report.add_cost(cost_of(ann.model, repair, ctx.prices))
    said = getattr(ctx.backend, "job_errors", {}).get(job.job_id)
    why = "missing from the batch results" + (f" (the job: {'; '.join(said)})" if said else "")
    for k in job.keys:
        if k not in seen and k not in results and k in ctx.texts:
            requeue.setdefault(k, why)
    return True


async def run_jobs(
    ctx: JobContext, *, poll_interval: float, deadline: float | None, max_resubmits: int,
) -> tuple[dict[str, AnnotationResult], list[str]]:
    """(results by cache key, ids of jobs still running at the deadline); see
    ``_run_jobs``. A stop that cut a call's retry backoff short ends this annotator's
    work like any stop (the caller raises ``KeyboardInterrupt``, the results it committed
    are in the cache), and leaves the other annotators' calls in flight to finish."""
    try:
        return await _run_jobs(ctx, poll_interval=poll_interval, deadline=deadline,
                               max_resubmits=max_resubmits)
    except Stopped:
        return {}, []


async def _run_jobs(
    ctx: JobContext, *, poll_interval: float, deadline: float | None, max_resubmits: int,
) -> tuple[dict[str, AnnotationResult], list[str]]:
    """(results by cache key, ids of jobs still running at the deadline).

    Cached answers are reused, open jobs polled, the remaining texts submitted as one
    job; requests that expired or errored are resubmitted up to ``max_resubmits`` times,
    then become ``error`` results, unless the item has a cached answer this run keeps (a
    reask job collected without ``reask``): that answer stands (``_reask_failed``).
    """
    ann, db = ctx.ann, ctx.db
    results, again = set_aside(db.get_many(ctx.texts), ctx.reask)
    ctx.report.from_cache += len(results)
    ctx.report.reasked += len(again)
    await _reconcile(ctx)
    failed: dict[str, str] = {}
    resubmits = 0
    states: dict[str, JobState] = {}
    while not ctx.stopping:
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
            state = await ctx.call(functools.partial(ctx.backend.poll, job.job_id))
            if states.get(job.job_id) != state:
                states[job.job_id] = state
                ctx.say(f"batch {job.job_id} {state.status}"
                        + (f" ({state.counts})" if state.counts else ""))
            if state.done:
                finished.append(job)
        if not finished:
            if deadline is not None and time.monotonic() >= deadline:
                return results, [j.job_id for j in jobs]
            await pause(ctx.stop, poll_interval)
            continue
        requeue: dict[str, str] = {}
        for job in finished:
            collected = await ctx.call(functools.partial(ctx.backend.collect, job.job_id))
            if not await _absorb(ctx, job, collected, results, requeue):
                return results, []  # stopped: the caller raises KeyboardInterrupt
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
