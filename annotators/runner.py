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
base URL with a typo) raise ``RepeatedAPIError`` instead of failing 10,000 items one
call at a time; what finished before is in the cache.

A dry run reads the cache without writing to it (a missing cache file is not created).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from annotators.base import AnnotationResult, Annotator, RepeatedAPIError, Usage
from annotators.cache import AnnotationCache, cache_key
from annotators.labelling import label_text
from annotators.pricing import EXPECTED_OUTPUT_TOKENS, Price, cost_of, estimate_tokens
from annotators.prompts import PROMPT_VERSION, build_prompt
from annotators.ratelimit import RateLimiter
from annotators.retry import TRANSIENT_STATUSES, RetryPolicy
from guardrail_dro.data.items import AnnotatedDataset, Annotation
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError

__all__ = [
    "EXPECTED_OUTPUT_TOKENS",
    "AnnotationRun",
    "Failure",
    "RunReport",
    "aannotate",
    "aannotate_with_report",
    "annotate",
    "annotate_with_report",
    "estimate_into",
    "gather_or_cancel",
    "key_for",
    "open_cache",
    "results_to_annotations",
]

T = TypeVar("T")


def key_for(annotator: Annotator, text: str, schema: LabelSchema) -> str:
    """The cache key of ``text`` asked of ``annotator`` with the current prompt version.

    The label schema (classes, safe classes, descriptions) is part of the prompt, so it
    is part of the parameters: change the classes and old answers are not reused (their
    labels might not even exist any more).
    """
    params = {**annotator.cache_params(), "schema": schema.model_dump(mode="json")}
    return cache_key(annotator.provider, annotator.model, PROMPT_VERSION, params, text)


def open_cache(cache: AnnotationCache | str | Path | None, *,
               readonly: bool = False) -> tuple[AnnotationCache, bool]:
    """(cache, whether we opened it and must close it).

    ``readonly`` (a dry run): an existing file is opened for reading only and a missing
    one is not created (an empty in-memory cache stands in).
    """
    if isinstance(cache, AnnotationCache):
        return cache, False
    if cache is None or (readonly and not Path(cache).exists()):
        return AnnotationCache(":memory:"), True
    return AnnotationCache(cache, readonly=readonly), True


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


@dataclass(frozen=True)
class Failure:
    """An item an annotator did not label, and why."""

    item_id: str
    annotator: str
    outcome: str
    error: str | None
    raw: str | None


@dataclass
class RunReport:
    """What a run did: per-annotator outcomes, calls, tokens, cost, and every failure.

    Attributes:
        outcomes: annotator -> outcome -> number of items.
        from_cache: (annotator, item) results taken from the cache without a call.
        calls: HTTP requests made by this run (retries and repairs included).
        usage: tokens billed by this run.
        cost: USD of this run; None if some model has no price.
        estimated_cost: for a dry run, USD the missing items would cost (None: no price);
            at batch prices for a batch dry run.
        to_ask: (annotator, text) requests a run has to make (after the cache).
        in_batch_jobs: for a batch dry run, requests already in submitted jobs (paid).
    """

    annotators: list[str]
    items: int
    dry_run: bool = False
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    from_cache: int = 0
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float | None = 0.0
    estimated_tokens: Usage = field(default_factory=Usage)
    estimated_cost: float | None = None
    to_ask: int = 0
    in_batch_jobs: int = 0
    batch: bool = False
    failures: list[Failure] = field(default_factory=list)
    batch_jobs: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def add_cost(self, usd: float | None) -> None:
        self.cost = None if usd is None or self.cost is None else self.cost + usd

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the end of a run."""
        if self.dry_run:
            cost = "unknown (no price for a model; pass --prices)" if self.estimated_cost is None \
                else f"${self.estimated_cost:.4f}"
            jobs = f", {self.in_batch_jobs} in submitted batch job(s)" if self.in_batch_jobs \
                else ""
            prices = " at batch prices" if self.batch else ""
            return [
                f"dry run: {self.items} items x {len(self.annotators)} annotator(s); "
                f"{self.from_cache} answer(s) already cached{jobs}, {self.to_ask} request(s) "
                "to make",
                f"estimated tokens: {self.estimated_tokens.input_tokens} in, "
                f"{self.estimated_tokens.output_tokens} out; estimated cost{prices} {cost}",
            ]
        lines = []
        for name in self.annotators:
            c = self.outcomes.get(name, Counter())
            lines.append(
                f"{name}: {c['labelled']} labelled, {c['refused']} refused, "
                f"{c['invalid']} invalid, {c['error']} error(s)"
            )
        cost = "unknown (no price for a model)" if self.cost is None else f"${self.cost:.4f}"
        lines.append(
            f"{self.calls} call(s) made, {self.from_cache} answer(s) from the cache; tokens "
            f"{self.usage.input_tokens} in / {self.usage.output_tokens} out; cost {cost}"
        )
        return lines

    def write_failures(self, path: str | Path) -> Path:
        """Write every failure as one JSON line (item_id, annotator, outcome, error, raw)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for fail in self.failures:
                f.write(json.dumps(fail.__dict__, ensure_ascii=False) + "\n")
        return path


@dataclass(frozen=True)
class AnnotationRun:
    """The annotated dataset and the report of the run that made it."""

    dataset: AnnotatedDataset
    report: RunReport


def results_to_annotations(
    dataset: AnnotatedDataset, annotators: Sequence[Annotator],
    results: Mapping[tuple[int, str], AnnotationResult], report: RunReport,
) -> AnnotatedDataset:
    """Add labelled results to the dataset and record every other outcome as a failure.

    ``results`` maps (annotator index, cache key) to a result; a missing one is reported
    as an error rather than skipped.
    """
    extra: dict[str, list[Annotation]] = {}
    for j, ann in enumerate(annotators):
        counts = report.outcomes.setdefault(ann.name, Counter())
        for it in dataset.items:
            res = results.get((j, key_for(ann, it.text, dataset.schema)))
            if res is None:
                res = AnnotationResult(outcome="error", annotator=ann.name,
                                       error="no result (the run stopped before this item)")
            counts[res.outcome] += 1
            if res.outcome == "labelled" and res.label is not None:
                extra.setdefault(it.item_id, []).append(Annotation(
                    annotator=ann.name, kind="llm", label=res.label, rationale=res.rationale,
                    confidence=res.confidence, model=res.model or ann.model,
                ))
            else:
                report.failures.append(Failure(it.item_id, ann.name, res.outcome, res.error,
                                               res.raw))
    return dataset.with_annotations(extra)


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
) -> AnnotationRun:
    """The async runner; see ``annotate`` for the arguments."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, not {concurrency}")
    names = [a.name for a in annotators]
    if len(set(names)) != len(names):
        raise ConfigError(f"annotator names must be unique, got {names}")
    policy = policy or RetryPolicy()
    db, owned = open_cache(cache, readonly=dry_run)
    report = RunReport(annotators=names, items=len(dataset), dry_run=dry_run)
    try:
        # (annotator index, key) -> text: identical texts are asked once.
        wanted: dict[tuple[int, str], str] = {}
        for j, ann in enumerate(annotators):
            for it in dataset.items:
                wanted.setdefault((j, key_for(ann, it.text, dataset.schema)), it.text)
        cached = db.get_many(k for _, k in wanted)
        results: dict[tuple[int, str], AnnotationResult] = {
            jk: cached[jk[1]] for jk in wanted if jk[1] in cached
        }
        todo = [jk for jk in wanted if jk not in results]
        report.from_cache = len(results)
        report.to_ask = len(todo)
        if dry_run:
            estimate_into(report, annotators, dataset.schema,
                          [(j, wanted[(j, k)]) for j, k in todo], prices)
            return AnnotationRun(dataset, report)
        await _ask_all(annotators, dataset, todo, wanted, results, db, report,
                       concurrency=concurrency, limiter=limiter or RateLimiter(rpm, tpm),
                       policy=policy, prices=prices, progress=progress,
                       max_repeated_errors=max_repeated_errors)
        annotated = results_to_annotations(dataset, annotators, results, report)
        return AnnotationRun(annotated, report)
    finally:
        for ann in annotators:
            await ann.aclose()
        if owned:
            db.close()


def estimate_into(report: RunReport, annotators: Sequence[Annotator], schema: LabelSchema,
                  todo: Sequence[tuple[int, str]], prices: Mapping[str, Price] | None, *,
                  batch: bool = False) -> None:
    """Fill a dry run's estimated tokens and cost for ``todo`` (annotator index, text)."""
    total: float | None = 0.0
    tokens = Usage()
    for j, text in todo:
        p = build_prompt(text, schema)
        u = Usage(estimate_tokens(p.system + p.messages[0]["content"]), EXPECTED_OUTPUT_TOKENS)
        tokens = tokens + u
        usd = cost_of(annotators[j].model, u, prices, batch=batch)
        total = None if usd is None or total is None else total + usd
    report.to_ask = len(todo)
    report.batch = batch
    report.estimated_tokens = tokens
    report.estimated_cost = total


def _non_transient(status: int | None) -> bool:
    return status is not None and status not in TRANSIENT_STATUSES and not 500 <= status <= 599


async def _ask_all(annotators: Sequence[Annotator], dataset: AnnotatedDataset,
                   todo: list[tuple[int, str]], wanted: dict[tuple[int, str], str],
                   results: dict[tuple[int, str], AnnotationResult], db: AnnotationCache,
                   report: RunReport, *, concurrency: int, limiter: RateLimiter,
                   policy: RetryPolicy, prices: Mapping[str, Price] | None,
                   progress: bool, max_repeated_errors: int | None) -> None:
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for jk in todo:
        queue.put_nowait(jk)
    bar = _progress(len(todo), progress, "annotating")
    schema = dataset.schema
    # annotator index -> (the last non-transient error, how many in a row)
    streak: dict[int, tuple[tuple[int | None, str | None], int]] = {}

    def note_error(j: int, res: AnnotationResult) -> None:
        if res.outcome != "error" or not _non_transient(res.status):
            streak.pop(j, None)
            return
        sig = (res.status, res.error)
        last, n = streak.get(j, (None, 0))
        n = n + 1 if last == sig else 1
        streak[j] = (sig, n)
        if max_repeated_errors and n >= max_repeated_errors:
            raise RepeatedAPIError(annotator=annotators[j].name, status=res.status or 0,
                                   message=res.error or "", count=n)

    async def worker() -> None:
        while True:
            try:
                j, key = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            ann, text = annotators[j], wanted[(j, key)]
            res = await label_text(ann, text, schema, policy=policy, limiter=limiter)
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
        await gather_or_cancel(*(worker() for _ in range(min(concurrency, len(todo)))))
    finally:
        if bar is not None:
            bar.close()


async def aannotate(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                    **kwargs: object) -> AnnotatedDataset:
    """Async ``annotate``: the annotated dataset (the report is dropped)."""
    return (await aannotate_with_report(dataset, annotators, **kwargs)).dataset  # type: ignore[arg-type]


def annotate_with_report(dataset: AnnotatedDataset, annotators: Sequence[Annotator],
                         **kwargs: object) -> AnnotationRun:
    """Sync entry point returning the dataset and the ``RunReport``; see ``annotate``."""
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

    Returns:
        The dataset with one ``kind="llm"`` annotation per labelled (item, annotator).
        Refused, invalid and failed items get none; ``annotate_with_report`` lists them.

    Raises:
        RepeatedAPIError: ``max_repeated_errors`` identical 4xx errors in a row.

    Example:
        >>> from annotators import OpenAIAnnotator, annotate
        >>> out = annotate(ds, [OpenAIAnnotator("gpt-4o-mini")], cache="labels.sqlite")
        >>> out.save_jsonl("labelled.jsonl")
    """
    return annotate_with_report(
        dataset, annotators, cache=cache, concurrency=concurrency, rpm=rpm, tpm=tpm,
        dry_run=dry_run, policy=policy, prices=prices, progress=progress, limiter=limiter,
        max_repeated_errors=max_repeated_errors,
    ).dataset
