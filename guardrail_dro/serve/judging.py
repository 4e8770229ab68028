"""What an escalating guard's judge said: ``Escalated`` (one decision) and ``JudgeMemo``
(its answers remembered, so a text asked again does not pay for a second call).

An escalating guard (``serve.escalation``) asks an LLM judge about the texts in its
band. In use the same text comes back (a retried request, a common prompt, a batch with
duplicates), and each call costs money and a second or so. ``JudgeMemo`` keeps the
labelled answers by the text's SHA-256, most recently used first, up to ``size`` texts
(never a failure: an error, a refusal or a timeout is asked again next time), and lets
identical texts in flight at once on one event loop share one call (cancelled when no
one waits for it; with ``ABANDONED`` when the last waiter's deadline passed, which the
judge's breaker, ``serve.judge_breaker``, counts as a failure).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import importlib
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from annotators.base import AnnotationResult
    from guardrail_dro.serve.result import GuardResult

__all__ = [
    "ABANDONED",
    "Answer",
    "Escalated",
    "JudgeMemo",
    "LoopGates",
    "LoopThread",
    "preload_judge",
    "why_unlabelled",
]

_T = TypeVar("_T")

Answer = tuple["AnnotationResult | None", "str | None"]
"""(the judge's answer or None, why there is none)."""

ABANDONED = "every caller waiting on the judge call reached its deadline"
"""The message a shared judge call is cancelled with when its last waiter timed out (not
when it was cancelled, e.g. by a close): the judge did not answer in the time given."""


def why_unlabelled(answer: AnnotationResult) -> str:
    """What a result's ``error`` says of an answer without a label (an API error, an
    invalid reply, a refusal)."""
    return f"judge {answer.outcome}: {answer.error or answer.raw or 'no label'}"[:300]


@dataclass(frozen=True, slots=True)
class Escalated:
    """What an ``EscalatingGuard`` decided about one text.

    Attributes:
        result: the decision in force (the guard's, or the judge's inside the band: then
            its ``label`` is the judge's class).
        guard: the guard's own result at the band's upper edge, before any judge.
        escalated: the text's score was in the band, so the judge was asked.
        judge: the judge's answer (None when not asked or when it timed out).
        remembered: the answer came from the memo (an earlier call on the same text),
            not from a call of its own.
        skipped: the judge was not asked: its breaker was open after consecutive failures
            (``serve.judge_breaker``), so the error policy decided at once.
    """

    result: GuardResult
    guard: GuardResult
    escalated: bool
    judge: AnnotationResult | None = None
    remembered: bool = False
    skipped: bool = False

    @property
    def allowed(self) -> bool:
        return self.result.allowed

    @property
    def guard_label(self) -> str:
        """The guard's own likeliest class that is not safe, in its deciding window (what
        its violation would name; "" when nothing was scored)."""
        scores = self.guard.scores
        if not scores or not self.guard.categories:
            return ""
        return max(self.guard.categories, key=lambda c: scores.get(c, 0.0))

    @property
    def outcome(self) -> str:
        """"guard" (not escalated), "remembered", "judged", "failed" (the error policy
        decided) or "skipped" (it decided without a call: the judge's breaker was open):
        what a server's metrics count."""
        if not self.escalated:
            return "guard"
        if self.skipped:
            return "skipped"
        if self.result.degraded:
            return "failed"
        return "remembered" if self.remembered else "judged"


class JudgeMemo:
    """Labelled judge answers by text (bounded, least recently used dropped first), and
    one call for identical texts in flight on a loop.

    Args:
        size: the most answers kept (0: none kept, in-flight calls still shared).
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"memo size must be >= 0, got {size}")
        self.size = size
        self._answers: OrderedDict[bytes, AnnotationResult] = OrderedDict()  # by digest
        self._lock = threading.Lock()  # a server's loop and the sync loop share it
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, bytes], _Shared] = {}

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def in_flight(self) -> int:
        """Judge calls running now, on every loop."""
        return len(self._inflight)

    def recall(self, text: str) -> AnnotationResult | None:
        """The answer kept for ``text``, or None."""
        key = _digest(text)
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
            return answer

    def remember(self, text: str, answer: AnnotationResult | None) -> None:
        """Keep ``answer`` when it is a label."""
        if not self.size or answer is None or answer.outcome != "labelled":
            return
        if answer.label is None:
            return
        key = _digest(text)
        with self._lock:
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)

    async def ask(
        self, text: str, timeout: float | None, call: Callable[[str], Awaitable[Answer]]
    ) -> Answer:
        """``call(text)``, shared with identical texts in flight on this loop. Each waiter
        gives up after its own ``timeout`` (None: when the call ends); the call runs while
        anyone waits on it (at most to the limit ``call`` sets, the judge's own timeout)
        and is cancelled when the last waiter gives up (with ``ABANDONED`` when its
        ``timeout`` ran out), so its cost stays bounded by the callers' deadlines. A
        labelled answer is remembered."""
        key = (asyncio.get_running_loop(), _digest(text))
        expired = False
        with self._lock:
            shared = self._inflight.get(key)
            if shared is None or shared.future.cancelled():
                shared = self._inflight[key] = _Shared(asyncio.ensure_future(call(text)))
                shared.future.add_done_callback(functools.partial(self._settle, key, text))
            shared.waiters += 1
        try:
            return await asyncio.wait_for(asyncio.shield(shared.future), timeout)
        except TimeoutError:
            expired = True
            return None, f"judge timed out after {timeout:g} s"
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and not shared.future.done():
                # Nobody waits for it any more. Out of the table now, not when the
                # cancellation has unwound (a few loop turns): a text arriving meanwhile
                # must start its own call, not join one that ends cancelled.
                with self._lock:
                    if self._inflight.get(key) is shared:
                        del self._inflight[key]
                shared.future.cancel(ABANDONED if expired else None)

    def _settle(
        self, key: tuple[asyncio.AbstractEventLoop, bytes], text: str, done: Any
    ) -> None:
        with self._lock:
            shared = self._inflight.get(key)
            if shared is not None and shared.future is done:
                del self._inflight[key]
        if not done.cancelled() and done.exception() is None:
            self.remember(text, done.result()[0])


def _digest(text: str) -> bytes:
    """The memo's key: a text's SHA-256, so the memo holds no text (and 4,096 keys of
    32 bytes, whatever the texts' length)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class _Shared:
    """One judge call in flight and how many texts wait on it."""

    __slots__ = ("future", "waiters")

    def __init__(self, future: asyncio.Future[Answer]) -> None:
        self.future = future
        self.waiters = 0


def preload_judge(judge: Any) -> None:
    """Import what a judge's first call imports: the labelling code and its SDK (named by
    the annotator's ``provider``: ``openai`` ~0.6 s, ``anthropic`` ~1.3-1.8 s on a 2-core
    machine). Run in a thread before a server takes requests, so that the first text in
    the band does not hold the event loop, and every request on it, for that long."""
    importlib.import_module("annotators.labelling")
    provider = getattr(judge, "provider", None)
    if provider in ("openai", "anthropic"):
        with contextlib.suppress(ImportError):  # a missing SDK fails the call, as before
            importlib.import_module(provider)


class LoopGates:
    """At most ``limit`` judge calls in flight per event loop: one ``asyncio.Semaphore``
    for each loop that asks (a semaphore is bound to its loop), shared by every caller on
    it (a server's requests, the sync API's threads, the rails)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._gates: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def get(self) -> asyncio.Semaphore:
        """The running loop's semaphore."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for done in [lp for lp in self._gates if lp.is_closed()]:
                del self._gates[done]  # a waiting semaphore holds its loop: drop it here
            gate = self._gates.get(loop)
            if gate is None:
                gate = self._gates[loop] = asyncio.Semaphore(self.limit)
            return gate


class LoopThread:
    """An event loop of its own in a daemon thread, started on first use: where an
    escalating guard's sync calls run (``EscalatingGuard._sync`` says why)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop and wait for it.

        Raises:
            RuntimeError: ``close`` cancelled it.
        """
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            # Submitted under the lock: a close() after this sees the task and cancels it.
            done = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return done.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError(f"{self.name}: closed during the call") from None

    def close(self, last: Callable[[], Awaitable[object]]) -> bool:
        """Cancel and await every task still on the loop (a waiting ``run`` then raises
        instead of hanging), await ``last()`` there (e.g. closing an HTTP client bound to
        the loop), then stop the loop and its thread. A later ``run`` starts another.

        Returns:
            False when no loop was running (``last`` not called).

        Raises:
            RuntimeError: called from the loop's own thread (it would wait on itself).
        """
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError(f"{self.name}: close() from inside a call on its own loop")
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return False

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await last()

        with contextlib.suppress(Exception):  # closing is best effort
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        return True
