"""Escalation: the guard decides what it is sure of and asks an LLM judge about the rest.

Why: on toxic-questions no guard this project trains on a CPU encoder separates safe
from toxic questions as well as the best LLM annotator does (README, "Escalation to an
LLM judge"): the exported MiniLM guard has test ROC AUC 0.85-0.87, GPT-4 Turbo's own
labels block 98% of the toxic questions at a false-positive rate of 0.155. A cascade
keeps the guard's millisecond answer where its score is far from the boundary and pays
for a judge call only in between, the usual shape of production moderation stacks.

The band is three regions of the guard's toxic score ``s`` (1 - P(safe classes)):

- ``s >= high``: a violation, decided by the guard alone;
- ``low <= s < high``: the judge's label decides (a class that is not safe: a violation);
- ``s < low``: allowed by the guard alone.

``choose_band`` / ``calibrate_escalation`` (``serve.escalation_band``, re-exported
here) choose the band on a labelled validation split the judge has annotated.

``EscalatingGuard`` applies a band at run time with a real annotator (OpenAI, Anthropic
or any OpenAI-compatible server; ``annotators``): one ``label_text`` call per text in
the band, retried and validated like any annotation, bounded by ``timeout_s``. When the
judge cannot answer (an API error past the retry budget, an invalid reply, a refusal, a
timeout) the guard's ``Policy.on_error`` decides and the result is degraded, naming why.
The judge's answers are remembered (``serve.judging``: bounded, keyed by the text's
digest, never a failure) and identical texts in flight share one call, so a text asked
again (a retried request, a common prompt) does not pay twice. After ``breaker_failures``
failed calls in a row (``serve.judge_breaker``; a refusal is no failure) the judge rests
for ``breaker_cooldown_s``: the band is decided at once by the error policy, saying so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.escalation_band import (
    BandPoint,
    EscalationBand,
    band_predictions,
    calibrate_escalation,
    calibration_arrays,
    choose_band,
    judge_verdicts,
)
from guardrail_dro.serve.escalation_guard import band_guard, judge_schema, warn_other_guard
from guardrail_dro.serve.judge_breaker import JudgeBreaker, Unavailable, call_judge
from guardrail_dro.serve.judging import Escalated, JudgeMemo, LoopGates, LoopThread, why_unlabelled
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.result import GuardResult

if TYPE_CHECKING:
    from annotators.base import AnnotationResult, Annotator
    from annotators.retry import RetryPolicy
    from annotators.templates import PromptTemplate
    from guardrail_dro.serve.guard import Guard

_T = TypeVar("_T")

__all__ = [
    "BandPoint",
    "Escalated",
    "EscalatingGuard",
    "EscalationBand",
    "band_guard",
    "band_predictions",
    "calibrate_escalation",
    "calibration_arrays",
    "choose_band",
    "judge_schema",
    "judge_verdicts",
]


class EscalatingGuard:
    """A guard that asks an LLM judge about the texts in its band (module docstring).

    The band replaces the guard's thresholds: the toxic threshold becomes ``band.high``
    and the harmful classes' per-class thresholds are switched off, because the band was
    chosen on the toxic score alone (``band_guard``); ``Policy.raise_on_violation`` does
    not apply to ``check`` (read ``Escalated.allowed``); the rails honour it. A text that
    is empty, too long or fails to score is decided by the guard's error policy as usual
    and never sent to the judge.

    Args:
        guard: the guard (``Guard.load``); its policy's action, refusal and ``on_error``
            are kept.
        judge: an annotator (``annotators.specs.make_annotator("openai:gpt-4o")``); its
            labels must be the guard's classes.
        band: from ``calibrate_escalation`` / ``choose_band`` (or ``EscalationBand.load``);
            chosen for another export or precision, a warning says so
            (``serve.escalation_guard.BandMismatchWarning``).
        retry: the judge's retry policy (default ``RetryPolicy()``).
        timeout_s: the most one judge answer may take, retries included; past it the
            error policy decides.
        template: the judge's prompt template (default: the built-in prompt).
        concurrency: judge calls in flight at once, per event loop (a server's requests
            share the limit).
        memo: the judge answers kept, most recently used first, keyed by the text (0:
            none); a text in the band asked again reuses its answer instead of a call.
        breaker_failures: judge failures in a row (errors past the retries, timeouts; not
            refusals) after which it is not called for ``breaker_cooldown_s`` (0: always
            called); ``breaker`` (a ``JudgeBreaker``) and ``judge_skipped`` tell.
        breaker_cooldown_s: seconds before one trial call; a failed trial doubles it (up
            to 8x), an answer closes the breaker.

    Example:
        >>> band = calibrate_escalation(guard, valid, judge="label_5", max_defer=0.2)
        >>> eg = EscalatingGuard(guard, make_annotator("openai:gpt-4-turbo"), band)
        >>> out = eg.check("how do I pick a lock")
        >>> out.allowed, out.escalated   # escalated: its score fell in the band
    """

    def __init__(
        self,
        guard: Guard,
        judge: Annotator,
        band: EscalationBand,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        template: PromptTemplate | None = None,
        concurrency: int = 8,
        memo: int = 4096,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 30.0,
    ) -> None:
        if timeout_s <= 0 or concurrency < 1 or memo < 0:
            raise ConfigError("timeout_s must be > 0, concurrency >= 1 and memo >= 0")
        self.breaker = JudgeBreaker(breaker_failures, breaker_cooldown_s)  # ConfigError
        warn_other_guard(band.guard, guard)  # its edges are another model's scores
        self.band = band
        self.guard = guard
        self.schema = judge_schema(guard)  # ConfigError when the guard has no safe class
        # Outside the band: the guard at the band's upper edge. A band whose upper edge is
        # above every score (> 1) never blocks without the judge; 1.0 is the nearest a
        # policy threshold gets, so a score of exactly 1.0 is checked against the band
        # itself (_in_band) rather than through the policy.
        self._upper = band_guard(guard, min(band.high, 1.0))
        self._blocking = band_guard(guard, 0.0)  # every scored text a violation
        self.judge = judge
        self.retry = retry
        self.timeout_s = timeout_s
        self.template = template
        self.concurrency = concurrency
        self._gates = LoopGates(concurrency)  # around each judge call, not each text
        self.memo = JudgeMemo(memo)
        self._runner = LoopThread("escalation-judge")
        self._closing: asyncio.Task[None] | None = None
        self.checks = 0
        self.escalations = 0
        self.judge_failures = 0
        self.judge_skipped = 0  # decided without a call: the breaker was open
        self.remembered = 0

    def __repr__(self) -> str:
        return (
            f"EscalatingGuard(band=[{self.band.low:.3f}, {self.band.high:.3f}), judge="
            f"{getattr(self.judge, 'name', self.judge)!r}, escalated {self.escalations} of "
            f"{self.checks}, {self.remembered} from the memo, judge {self.breaker.state}: "
            f"{self.judge_skipped} skipped)"
        )

    def _in_band(self, r: GuardResult) -> bool:
        if r.degraded or r.windows == 0:
            return False
        return self.band.low <= r.toxic_score < self.band.high

    def _violation(self, r: GuardResult) -> GuardResult:
        """``r`` as the violation the guard's policy makes of it (action, refusal, the
        likeliest harmful class), from its deciding window's probabilities."""
        if r.violation:
            return r
        p = np.array([max(float(r.scores.get(c, 0.0)), 1e-300) for c in self.guard.labels])
        v = self._blocking.rule.decide(np.log(p)[None, :])
        # The action, refusal and harmful label are the rule's; the scores stay r's own
        # (no round trip through log and softmax).
        return dataclasses.replace(
            v,
            scores=r.scores,
            toxic_score=r.toxic_score,
            triggered=r.triggered,
            windows=r.windows,
            worst_window=r.worst_window,
            provider=r.provider,
        )

    def _allowed(self, r: GuardResult) -> GuardResult:
        """``r`` allowed: its most probable class as the label. (Only a score of exactly
        1.0 under a band reaching above 1 comes out of the upper guard as a violation
        and still belongs to the judge.)"""
        if not r.violation:
            return r
        top = max(range(len(self.guard.labels)), key=lambda i: r.scores[self.guard.labels[i]])
        return dataclasses.replace(
            r,
            allowed=True,
            action="allow",
            replacement=None,
            triggered=(),
            label=self.guard.labels[top],
            label_name=self._upper.rule.names[top],
        )

    def _judged(
        self, r: GuardResult, answer: AnnotationResult | None, why: str | None, start: float
    ) -> GuardResult:
        ms = (time.perf_counter() - start) * 1e3
        if answer is not None and answer.outcome == "labelled" and answer.label is not None:
            toxic = answer.label not in self.schema.safe
            out = self._violation(r) if toxic else self._allowed(r)
            # About the judge's class (the guard's own likeliest: ``Escalated.guard_label``).
            names = dict(zip(self.guard.labels, self._upper.rule.names, strict=True))
            label = answer.label if answer.label in names else out.label
            return dataclasses.replace(out, label=label, label_name=names[label], latency_ms=ms)
        if isinstance(why, Unavailable):
            self.judge_skipped += 1
        else:
            self.judge_failures += 1
        if answer is not None:
            why = why_unlabelled(answer)
        # As for a model error: the guard's error policy decides, with its action (fail
        # closed blocks or replaces, even under Policy(action=flag)).
        fallback = self._upper.rule.nothing(error=why)
        out = self._allowed(r) if fallback.allowed else self._violation(r)
        return dataclasses.replace(
            out,
            allowed=fallback.allowed,
            action=fallback.action,
            replacement=fallback.replacement,
            degraded=True,
            error=why,
            latency_ms=ms,
        )

    async def _ask(self, text: str) -> tuple[AnnotationResult | None, str | None]:
        return await call_judge(
            self.judge,
            text,
            self.schema,
            gate=self._gates.get(),
            breaker=self.breaker,
            timeout_s=self.timeout_s,
            retry=self.retry,
            template=self.template,
        )

    async def _escalate(
        self, text: str, r: GuardResult, start: float, deadline: float | None
    ) -> Escalated:
        self.checks += 1
        if not self._in_band(r):
            return Escalated(result=r, guard=r, escalated=False)
        self.escalations += 1
        known = self.memo.recall(text)
        if known is not None:
            self.remembered += 1
            return Escalated(
                result=self._judged(r, known, None, start),
                guard=r,
                escalated=True,
                judge=known,
                remembered=True,
            )
        # Without a deadline the call bounds itself (``timeout_s`` once it has a slot, so
        # a long ``check_many`` queue is not cut off); with one, the wait for a slot counts.
        left = None if deadline is None else deadline - time.perf_counter()
        answer: AnnotationResult | None = None
        why: str | None = "no time left for the judge before the deadline"
        if left is None or left > 0:
            answer, why = await self.memo.ask(text, left, self._ask)
        return Escalated(
            result=self._judged(r, answer, why, start),
            guard=r,
            escalated=True,
            judge=answer,
            skipped=isinstance(why, Unavailable),
        )

    @property
    def upper(self) -> Guard:
        """The guard as it decides outside the band (toxic threshold ``band.high``,
        per-class thresholds off): what a server batches texts through before
        ``resolve``."""
        return self._upper

    async def resolve(
        self,
        texts: Sequence[str],
        results: Sequence[GuardResult],
        *,
        start: float | None = None,
        deadline: float | None = None,
    ) -> list[Escalated]:
        """The decisions on ``texts``, given ``upper``'s ``results`` on them: the judge
        asked about those in the band, at most ``concurrency`` at once.

        Args:
            start: a ``time.perf_counter()`` reading the judged results' latency counts
                from (default: now).
            deadline: a ``time.perf_counter()`` reading by which every judge call is cut
                off (the error policy then decides), e.g. a server's request timeout.
        """
        start = time.perf_counter() if start is None else start
        pairs = zip(texts, results, strict=True)
        asked = (self._escalate(t, r, start, deadline) for t, r in pairs)
        return list(await asyncio.gather(*asked))

    async def acheck(self, text: str) -> Escalated:
        """The decision on one text: the guard's, or the judge's inside the band.

        Raises:
            TypeError: ``text`` is not a str.
        """
        start = time.perf_counter()
        return await self._escalate(text, await self._upper.adecide(text), start, None)

    async def acheck_many(self, texts: Sequence[str]) -> list[Escalated]:
        """``acheck`` for several texts: one batched guard call, then at most
        ``concurrency`` judge calls at once for the texts in the band."""
        start = time.perf_counter()
        results = await self._upper.adecide_many(texts)
        return await self.resolve(texts, results, start=start)

    # ---- the rails' interface (``rails.decide.RailGuard``) --------------------------------
    # ``guard.wrap(client, input=cascade)``, ``guard.protect(input=cascade)`` or
    # ``rails.wrap(client, cascade)``: the rails decide through the band and the judge, and
    # raise under the guard's own ``Policy(raise_on_violation=True)``.

    @property
    def policy(self) -> Policy:
        """The guard's policy (the rails read ``raise_on_violation`` from it)."""
        return self.guard.policy

    def decide(self, text: str) -> GuardResult:
        """``check(text).result``: the decision in force, never raising a violation."""
        return self.check(text).result

    def decide_many(self, texts: Sequence[str]) -> list[GuardResult]:
        return [e.result for e in self.check_many(texts)]

    async def adecide(self, text: str) -> GuardResult:
        return (await self.acheck(text)).result

    async def adecide_many(self, texts: Sequence[str]) -> list[GuardResult]:
        return [e.result for e in await self.acheck_many(texts)]

    def last_window(self, text: str) -> str:
        """The guard's rolling window for a streamed reply: each check of a stream whose
        window scores in the band asks the judge again."""
        return self.guard.last_window(text)

    def _sync(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on this guard's own event loop, in its own daemon thread, and wait.

        One loop for every synchronous caller, whatever their thread and whether or not
        they run a loop of their own: the judge's HTTP client (bound to a loop) is built
        once and shared, and a sync rail works inside async code as a plain ``Guard``'s
        does (it blocks its caller for the judge's answer)."""
        return self._runner.run(coro)

    def close(self) -> None:
        """Close the judge's connections and stop the sync API's event loop (checks still
        waiting on it raise; a later sync call starts another loop). Also ``with
        EscalatingGuard(...) as cascade:``. From async code use ``aclose``."""
        if not self._runner.close(self.judge.aclose):  # the sync API never ran
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop here: close the async callers' client now
                asyncio.run(self.judge.aclose())
            else:  # inside async code: soon, on its loop (the task kept so it is not lost)
                self._closing = loop.create_task(self.judge.aclose())

    async def aclose(self) -> None:
        """``close`` from async code (a server's shutdown): the judge's client of this
        loop, then the sync API's loop, if it ran."""
        await self.judge.aclose()
        await asyncio.to_thread(self._runner.close, self.judge.aclose)

    def __enter__(self) -> EscalatingGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, text: str) -> Escalated:
        """``acheck`` from synchronous code, in any thread, inside a running event loop or
        not (see ``_sync``)."""
        return self._sync(self.acheck(text))

    def check_many(self, texts: Sequence[str]) -> list[Escalated]:
        """``acheck_many`` from synchronous code (see ``check``)."""
        return self._sync(self.acheck_many(texts))
