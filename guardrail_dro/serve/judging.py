"""What an escalating guard's judge said: ``Escalated`` (one decision) and ``JudgeMemo``
(its answers remembered, so a text asked again does not pay for a second call).

An escalating guard (``serve.escalation``) asks an LLM judge about the texts in its
band. In use the same text comes back (a retried request, a common prompt, a batch with
duplicates), and each call costs money and a second or so. ``JudgeMemo`` keeps the
labelled answers, most recently used first, up to ``size`` texts (never a failure: an
error, a refusal or a timeout is asked again next time), and lets identical texts in
flight at once on one event loop share one call.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from annotators.base import AnnotationResult
    from guardrail_dro.serve.result import GuardResult

__all__ = ["Answer", "Escalated", "JudgeMemo"]

Answer = tuple["AnnotationResult | None", "str | None"]
"""(the judge's answer or None, why there is none)."""


@dataclass(frozen=True, slots=True)
class Escalated:
    """What an ``EscalatingGuard`` decided about one text.

    Attributes:
        result: the decision in force (the guard's, or the judge's inside the band).
        guard: the guard's own result at the band's upper edge, before any judge.
        escalated: the text's score was in the band, so the judge was asked.
        judge: the judge's answer (None when not asked or when it timed out).
        remembered: the answer came from the memo (an earlier call on the same text),
            not from a call of its own.
    """

    result: GuardResult
    guard: GuardResult
    escalated: bool
    judge: AnnotationResult | None = None
    remembered: bool = False

    @property
    def allowed(self) -> bool:
        return self.result.allowed

    @property
    def outcome(self) -> str:
        """"guard" (not escalated), "remembered", "judged" or "failed" (the error policy
        decided): what a server's metrics count."""
        if not self.escalated:
            return "guard"
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
        self._answers: OrderedDict[str, AnnotationResult] = OrderedDict()
        self._lock = threading.Lock()  # a server's loop and the sync loop share it
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future[Answer]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def recall(self, text: str) -> AnnotationResult | None:
        """The answer kept for ``text``, or None."""
        with self._lock:
            answer = self._answers.get(text)
            if answer is not None:
                self._answers.move_to_end(text)
            return answer

    def remember(self, text: str, answer: AnnotationResult | None) -> None:
        """Keep ``answer`` when it is a label."""
        if not self.size or answer is None or answer.outcome != "labelled":
            return
        if answer.label is None:
            return
        with self._lock:
            self._answers[text] = answer
            self._answers.move_to_end(text)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)

    async def ask(
        self, text: str, timeout: float, call: Callable[[str], Awaitable[Answer]]
    ) -> Answer:
        """``call(text)``, shared with identical texts in flight on this loop. Each waiter
        gives up after its own ``timeout``; the call itself runs on to the limit ``call``
        sets (the judge's own timeout), for the other waiters and for the memo, so a text
        cut off by a request's deadline is answered from the memo next time."""
        key = (asyncio.get_running_loop(), text)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(call(text))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _f: self._inflight.pop(key, None))
        try:
            answer, why = await asyncio.wait_for(asyncio.shield(pending), timeout)
        except TimeoutError:
            return None, f"judge timed out after {timeout:g} s"
        self.remember(text, answer)
        return answer, why

    def cancel(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the calls in flight on ``loop`` (call it on that loop, before closing it)."""
        for (lp, _), pending in list(self._inflight.items()):
            if lp is loop:
                pending.cancel()
