"""``annotate(dataset, annotators)``: label every item with every annotator, resumably.

The runner only sequences: look every (annotator, text) up in the cache, ask for the
missing ones with bounded concurrency under the rate limits, write each result to the
cache the moment it is known (so a killed run loses nothing it paid for), and add the
labels to the dataset as new ``kind="llm"`` annotators named like ``openai:gpt-4o``.
Identical texts are asked once.

Nothing is dropped silently: refusals, invalid replies and errors are counted in the
``RunReport`` and listed, with their raw text, in its ``failures`` (``write_failures``
saves them as JSONL). One thing does stop a run: ``max_repeated_errors`` identical
non-transient errors in a row from one annotator (a bad key, a wrong model name, a
base URL with a typo), or calls that got no answer at all after their retries (a server
not listening), raise ``RepeatedAPIError`` instead of failing 10,000 items one call at a
time; what finished before is in the cache.

A dry run reads the cache without writing to it (a missing cache file is not created).

``reask=("invalid",)`` asks again the items whose cached answer is invalid (or refused):
a malformed reply from a one-off glitch is not kept for good.

Ctrl-C during a run started by the sync entry points (the CLI's; when SIGINT has
Python's default handler) sends no new request, a worker waiting for its rate-limit turn
or sleeping in a retry's backoff included (that item is left for the resume, not cached
as an error), and waits for the calls in flight, so what they cost is cached too; SIGTERM
does the same, also where SIGINT is ignored (a run started in the background, whose
SIGINT stays ignored: ``annotators.interrupt``); a second signal cancels them at once
(paid, not cached: a resume asks them again). Either way the run ends in
``KeyboardInterrupt`` and the same call resumes from the cache.

The report types (``RunReport``, ``AnnotationRun``, ``Failure``) live in
``annotators.report`` and the cache helpers (``key_for``, ``open_cache``) in
``annotators.cache``; they are re-exported here, where they were first published.
``run_session`` and ``gather_or_cancel`` are the lifecycle the batch runner shares, and
``annotators.interrupt`` the signal handling (``Terminated`` is re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from annotators.base import AnnotationResult, Annotator, RepeatedAPIError
from annotators.cache import AnnotationCache, check_reask, key_for, open_cache, set_aside
from annotators.interrupt import DrainOnInterrupt, Terminated, drain_by_default
from annotators.labelling import Stopped, label_text
from annotators.pricing import EXPECTED_OUTPUT_TOKENS, Price, cost_of
from annotators.ratelimit import RateLimiter
from annotators.report import (
    AnnotationRun,
    Failure,
    RunReport,
    estimate_into,
    results_to_annotations,
)
from annotators.retry import NOT_TRANSIENT_CODES, TRANSIENT_STATUSES, RetryPolicy
from annotators.templates import PromptTemplate
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError

__all__ = [
    "EXPECTED_OUTPUT_TOKENS",
    "AnnotationRun",
    "Failure",
    "RunReport",
    "Terminated",
    "aannotate",
    "aannotate_with_report",
    "annotate",
    "annotate_with_report",
    "estimate_into",
    "gather_or_cancel",
    "key_for",
    "open_cache",
    "results_to_annotations",
    "run_session",
]

T = TypeVar("T")


async def gather_or_cancel(*coros: Awaitable[T]) -> list[T]:
    """Await all; the first error cancels the others (and is raised unwrapped)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@contextlib.asynccontextmanager
async def run_session(cache: AnnotationCache | str | Path | None,
                      annotators: Sequence[Annotator], *,
                      readonly: bool = False) -> AsyncIterator[AnnotationCache]:
    """The run's cache, opened from a path if need be (see ``open_cache``).

    On the way out, however the run ends, every annotator's HTTP client is closed (the
    adapters open one lazily per event loop) and so is the cache, if this opened it.
    """
    db, owned = open_cache(cache, readonly=readonly)
    try:
        yield db
    finally:
        for ann in annotators:
            await ann.aclose()
        if owned:
            db.close()


def _progress(total: int, enabled: bool, desc: str):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", file=sys.stderr, dynamic_ncols=True)


async def aannotate_with_report(
    dataset: AnnotatedDataset,
    annotators: Sequence[Annotator],
    *,
    cache: AnnotationCache | str | Path | None = None,
    concurrency: int = 8,
    rpm: float | None = None,
    tpm: float | None = None,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    prices: Mapping[str, Price] | None = None,
    progress: bool = True,
    limiter: RateLimiter | None = None,
    max_repeated_errors: int | None = 5,
    template: PromptTemplate | None = None,
    drain_on_interrupt: bool = False,
    reask: Collection[str] = (),
) -> AnnotationRun:
    """The async runner; see ``annotate`` for the arguments.

    ``drain_on_interrupt``: take SIGINT on this loop (main thread only) to stop asking
    and let the calls in flight finish and be cached before ``KeyboardInterrupt``; the
    sync entry points set it, an async caller that owns its loop's SIGINT may.
    """
    if not isinstance(dataset, AnnotatedDataset):
        raise TypeError(f"dataset must be an AnnotatedDataset, not {type(dataset).__name__}")
    if not isinstance(annotators, Sequence) or any(isinstance(a, str) for a in annotators):
        raise TypeError("annotators must be a list of annotators, e.g. "
                        f"[make_annotator('openai:gpt-4o-mini')], not {annotators!r}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, not {concurrency}")
    names = [a.name for a in annotators]
    if len(set(names)) != len(names):
        raise ConfigError(f"annotator names must be unique, got {names}")
    policy = policy or RetryPolicy()
    reask = check_reask(reask)
    if template is not None:
        template.check(dataset.schema)
    async with run_session(cache, annotators, readonly=dry_run) as db:
        report = RunReport(annotators=names, items=len(dataset), dry_run=dry_run,
                           reask=tuple(sorted(reask)))
        # (annotator index, key) -> text: identical texts are asked once.
        wanted: dict[tuple[int, str], str] = {}
        for j, ann in enumerate(annotators):
            for it in dataset.items:
                wanted.setdefault((j, key_for(ann, it.text, dataset.schema, template)), it.text)
        cached, again = set_aside(db.get_many(k for _, k in wanted), reask)
        results: dict[tuple[int, str], AnnotationResult] = {
            jk: cached[jk[1]] for jk in wanted if jk[1] in cached
        }
        todo = [jk for jk in wanted if jk not in results]
        report.from_cache = len(results)
        report.reasked = sum(k in again for _, k in wanted)
        report.to_ask = len(todo)
        if dry_run:
            estimate_into(report, annotators, dataset.schema,
                          [(j, wanted[(j, k)]) for j, k in todo], prices, template=template)
            return AnnotationRun(dataset, report)
        await _ask_all(annotators, dataset, todo, wanted, results, db, report,
                       concurrency=concurrency, limiter=limiter or RateLimiter(rpm, tpm),
                       policy=policy, prices=prices, progress=progress,
                       max_repeated_errors=max_repeated_errors, template=template,
                       drain_on_interrupt=drain_on_interrupt)
        annotated = results_to_annotations(dataset, annotators, results, report, template)
        return AnnotationRun(annotated, report)


def _non_transient(res: AnnotationResult) -> bool:
    """An error no retry cures, as ``retry.is_transient`` judged it (the result keeps
    the status and the provider's error code, not the exception)."""
    status = res.status
    if status is None:
        return False
    if res.error_code in NOT_TRANSIENT_CODES:
        return True  # a 429 saying the account is out of credit
    return status not in TRANSIENT_STATUSES and not 500 <= status <= 599


async def _ask_all(annotators: Sequence[Annotator], dataset: AnnotatedDataset,
                   todo: list[tuple[int, str]], wanted: dict[tuple[int, str], str],
                   results: dict[tuple[int, str], AnnotationResult], db: AnnotationCache,
                   report: RunReport, *, concurrency: int, limiter: RateLimiter,
                   policy: RetryPolicy, prices: Mapping[str, Price] | None,
                   progress: bool, max_repeated_errors: int | None,
                   template: PromptTemplate | None, drain_on_interrupt: bool) -> None:
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for jk in todo:
        queue.put_nowait(jk)
    bar = _progress(len(todo), progress, "annotating")
    schema = dataset.schema
    # annotator index -> (the last non-transient error, how many in a row)
    streak: dict[int, tuple[tuple[int | None, str | None], int]] = {}

    def note_error(j: int, res: AnnotationResult) -> None:
        # A call that got no HTTP answer at all (refused connection, timeout) after its
        # retries counts too: a wrong --base-url or a server down is as hopeless as a bad
        # key, and each item would spend the whole retry schedule (~26 s) on it.
        unanswered = res.outcome == "error" and res.status is None
        if res.outcome != "error" or not (_non_transient(res) or unanswered):
            streak.pop(j, None)
            return
        sig = (res.status, res.error)
        last, n = streak.get(j, (None, 0))
        n = n + 1 if last == sig else 1
        streak[j] = (sig, n)
        if max_repeated_errors and n >= max_repeated_errors:
            raise RepeatedAPIError(annotator=annotators[j].name, status=res.status or 0,
                                   message=res.error or "", count=n,
                                   where=repr(annotators[j]) if unanswered else None)

    interrupt = DrainOnInterrupt(
        drain_on_interrupt,
        f"\nInterrupted: asking no new item; waiting for the calls in flight (at most "
        f"{concurrency}, paid already) to finish and be cached. {{again}} to stop now "
        "(a resume asks those again).")

    async def worker() -> None:
        while not interrupt.requested:
            try:
                j, key = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            ann, text = annotators[j], wanted[(j, key)]
            try:
                res = await label_text(ann, text, schema, policy=policy, limiter=limiter,
                                       template=template, stop=interrupt.stop)
            except Stopped:  # Ctrl-C came before a request was sent: no answer to keep
                return
            db.put(key, ann.provider, ann.model, res)  # committed now: kill -9 safe
            results[(j, key)] = res
            report.calls += res.calls
            report.usage = report.usage + res.usage
            report.add_cost(cost_of(ann.model, res.usage, prices) if res.calls else 0.0)
            if bar is not None:
                cost = "?" if report.cost is None else f"${report.cost:.4f}"
                bar.set_postfix(tokens=report.usage.input_tokens + report.usage.output_tokens,
                                cost=cost, refresh=False)
                bar.update(1)
            note_error(j, res)

    try:
        await interrupt.run(
            gather_or_cancel(*(worker() for _ in range(min(concurrency, len(todo)))))
        )
    finally:
        if bar is not None:
            bar.close()


async def aannotate(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                    **kwargs: object) -> AnnotatedDataset:
    """Async ``annotate``: the annotated dataset (the report is dropped)."""
    return (await aannotate_with_report(dataset, annotators, **kwargs)).dataset  # type: ignore[arg-type]


def annotate_with_report(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                         **kwargs: object) -> AnnotationRun:
    """Sync entry point returning the dataset and the ``RunReport``; see ``annotate``.

    It owns its event loop, so Ctrl-C (and SIGTERM) drains the calls in flight into the
    cache first (``drain_on_interrupt``; unless given, on when SIGINT has Python's default
    handler or is ignored, as in a job started in the background, whose SIGTERM must
    drain too: a program's own SIGINT handling is left alone).
    """
    kwargs.setdefault("drain_on_interrupt", drain_by_default())
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aannotate_with_report(dataset, annotators, **kwargs))  # type: ignore[arg-type]
    raise ConfigError("annotate() was called inside a running event loop: await aannotate()")


def annotate(
    dataset: AnnotatedDataset,
    annotators: Sequence[Annotator],
    *,
    cache: AnnotationCache | str | Path | None = None,
    concurrency: int = 8,
    rpm: float | None = None,
    tpm: float | None = None,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    prices: Mapping[str, Price] | None = None,
    progress: bool = True,
    limiter: RateLimiter | None = None,
    max_repeated_errors: int | None = 5,
    template: PromptTemplate | None = None,
    reask: Collection[str] = (),
) -> AnnotatedDataset:
    """Label every item with every annotator and return the dataset with the new labels.

    Args:
        dataset: the items to label (existing annotations are kept).
        annotators: e.g. ``[OpenAIAnnotator("gpt-4o"), AnthropicAnnotator("claude-...")]``.
        cache: an ``AnnotationCache`` or a path to one; None keeps results in memory only.
            With a file, a repeated or resumed run makes no call for a finished item.
        concurrency: requests in flight at once.
        rpm / tpm: requests / tokens per minute not to exceed (None: no limit). Every
            attempt takes its turn, retries and repair calls included.
        dry_run: make no call and write nothing (a missing cache file is not created);
            the report (``annotate_with_report``) carries the estimated tokens and cost
            of what is not cached yet.
        policy: the retry policy (default ``RetryPolicy()``).
        prices: model -> (USD/M input, USD/M output), over ``pricing.DEFAULT_PRICES``.
        progress: show a progress bar with rate, ETA, tokens and cost on stderr.
        limiter: a ``RateLimiter`` to use instead of one built from ``rpm`` / ``tpm``
            (share one between runs that share a key).
        max_repeated_errors: stop the run after this many identical non-transient
            errors in a row from one annotator (None or 0: never stop).
        template: the prompt template (``LabelingConfig.template()``); None: the
            built-in prompt. Its hash is part of every cache key, so a changed template
            asks again.
        reask: cached outcomes to ask again: ``"invalid"`` (a malformed reply, left so by
            a one-off glitch) and / or ``"refused"``; every other cached answer is reused
            and not paid again. A new answer replaces the cached one; one that fails
            with an error leaves it. Errors need no ``reask``: they are never cached.

    Returns:
        The dataset with one ``kind="llm"`` annotation per labelled (item, annotator).
        Refused, invalid and failed items get none; ``annotate_with_report`` lists them.

    Raises:
        ConfigError: ``reask`` names something other than ``invalid`` / ``refused``.
        RepeatedAPIError: ``max_repeated_errors`` identical 4xx errors in a row.
        KeyboardInterrupt: Ctrl-C, once the calls in flight are cached (see above).

    Example:
        >>> from annotators import OpenAIAnnotator, annotate
        >>> out = annotate(ds, [OpenAIAnnotator("gpt-4o-mini")], cache="labels.sqlite")
        >>> out.save_jsonl("labelled.jsonl")
    """
    return annotate_with_report(
        dataset, annotators, cache=cache, concurrency=concurrency, rpm=rpm, tpm=tpm,
        dry_run=dry_run, policy=policy, prices=prices, progress=progress, limiter=limiter,
        max_repeated_errors=max_repeated_errors, template=template, reask=reask,
    ).dataset
