"""A circuit breaker around an escalating guard's judge calls (``JudgeBreaker``), and the
guarded call itself (``call_judge``).

Why: when the judge is down (connection refused, 5xx or 429 past the retry budget, no
answer in time), every text in the band waited out the whole retry budget or
``timeout_s`` (30 s) before the error policy decided, each holding a judge slot, so a
server under load piled up requests behind a judge that could not answer any of them.
After ``failures`` consecutive failed calls the breaker opens: texts in the band are
decided at once by ``Policy.on_error``, degraded, saying why (``Unavailable``), and no
call is made. Once ``cooldown_s`` has passed one trial call goes through (half-open):
an answer closes the breaker, a failure opens it again for twice as long (up to
``max_cooldown_s``, 8x the cooldown by default: 30 s, 60 s, ... 4 min), so a judge
that stays down costs one call per cooldown, not one per text.

What is a failure (``outage``): a call that raised or ran past ``timeout_s``; an
``error`` outcome (no HTTP answer, or an API error past the retry budget) other than
400 / 413 / 422, which reject what this text's request carried (too long a prompt),
not the judge; and a call cut off because every caller waiting on it reached its
deadline (``JudgeMemo.ask``), since a server's ``timeout_ms`` (10 s by default) is
shorter than the judge's 30 s and a hung judge would otherwise never be seen failing.
What is not: a label, an invalid reply, a refusal. A refusal is the judge's answer
about one text (it was up and read it); counting it would stop the judge being asked
about every other text because one was declined.

The state is guarded by a ``threading.Lock``, held for a few assignments and never
across an ``await``: the sync API's loop (``LoopThread``) and a server's loop share one
breaker, as they share one judge. Results of calls admitted before the breaker last
changed state are ignored (a late failure must not re-open a breaker a trial closed).

Hand-written rather than ``pybreaker`` (1.4): its async support is Tornado coroutines,
it counts raised exceptions (a failed judge call here is a result, and a refusal a
result that must not count), its half-open state does not hold concurrent calls back
to one trial, and its cooldown does not grow. The state machine is a page.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.judging import ABANDONED, Answer, why_unlabelled

if TYPE_CHECKING:
    from annotators.base import AnnotationResult, Annotator
    from annotators.retry import RetryPolicy
    from annotators.templates import PromptTemplate
    from guardrail_dro.data.schema import LabelSchema

__all__ = ["BreakerState", "JudgeBreaker", "Ticket", "Unavailable", "call_judge", "outage"]

BreakerState = Literal["off", "closed", "open", "half-open"]

REQUEST_REJECTED = frozenset({400, 413, 422})
"""HTTP statuses that reject one request for what it carried, not the judge's health."""


class Unavailable(str):
    """Why a text in the band was decided without asking the judge: the breaker is open.
    A ``str`` (it becomes the result's ``error``), of its own type so that the guard
    counts it apart from a call that failed."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Ticket:
    """Leave for one judge call (``JudgeBreaker.admit``), handed back with its outcome.

    Attributes:
        epoch: the breaker's state when admitted (a result from an older one is ignored).
        probe: the half-open trial call.
    """

    epoch: int
    probe: bool = False


def outage(answer: AnnotationResult | None, why: str | None) -> str | None:
    """Why a judge call counts as a failure of the judge, or None (it answered: a label,
    an invalid reply, a refusal, or a request rejected for this text alone)."""
    if answer is None:
        return why or "no answer"
    if answer.outcome != "error" or answer.status in REQUEST_REJECTED:
        return None
    return why_unlabelled(answer)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{math.ceil(s)} s"


class JudgeBreaker:
    """Stop calling a judge after ``failures`` consecutive failures (module docstring).

    Args:
        failures: consecutive failures that open it (0: never open; ``EscalatingGuard``'s
            ``breaker_failures``).
        cooldown_s: seconds open before one trial call (``breaker_cooldown_s``).
        max_cooldown_s: the most the cooldown grows to, doubling after each failed trial
            (default: 8 x ``cooldown_s``).
        clock: seconds, monotonic (tests pass their own).

    Raises:
        ConfigError: ``failures`` < 0, or a cooldown that is not a finite number > 0.

    Example:
        >>> b = JudgeBreaker(failures=5, cooldown_s=30)
        >>> t = b.admit()           # a Ticket: call, then b.settle(t, outage(...))
        >>> isinstance(t, Unavailable)   # open: decide without the judge
        False
    """

    def __init__(
        self,
        failures: int = 5,
        cooldown_s: float = 30.0,
        *,
        max_cooldown_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise ConfigError(
                f"breaker_failures must be a whole number >= 0 (0: no breaker), got {failures!r}"
            )
        top = 8 * cooldown_s if max_cooldown_s is None else max_cooldown_s
        for name, s in (("breaker_cooldown_s", cooldown_s), ("max_cooldown_s", top)):
            if not (isinstance(s, int | float) and math.isfinite(s) and s > 0):
                raise ConfigError(f"{name} must be a number of seconds > 0, got {s!r}")
        self.failures = failures
        self.base_cooldown_s = float(cooldown_s)
        self.max_cooldown_s = max(float(top), self.base_cooldown_s)
        self.cooldown_s = self.base_cooldown_s
        """The cooldown in force (doubled after each failed trial, reset on an answer)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._epoch = 0
        self._streak = 0  # consecutive failures
        self._last: str | None = None  # the latest failure's reason
        self._until: float | None = None  # open until then; None: closed
        self._probing = False
        self.skipped = 0
        """Judge calls not made because the breaker was open."""
        self.opened = 0
        """Times it opened (a failed trial counts again)."""

    @property
    def state(self) -> BreakerState:
        """One of "off" (``failures`` 0), "closed", "open", or "half-open" (the cooldown
        has passed: the next call, or the one in flight, is the trial)."""
        with self._lock:
            if not self.failures:
                return "off"
            if self._until is None:
                return "closed"
            return "open" if self._clock() < self._until else "half-open"

    @property
    def streak(self) -> int:
        """Consecutive failures so far."""
        return self._streak

    def __repr__(self) -> str:
        state, streak = self.state, self._streak
        return f"JudgeBreaker({state}, {streak} failures in a row, {self.skipped} skipped)"

    def admit(self) -> Ticket | Unavailable:
        """Leave for one call (closed, or the half-open trial), or why not."""
        with self._lock:
            if self._until is None:
                return Ticket(self._epoch)
            now = self._clock()
            if now >= self._until and not self._probing:
                self._probing = True
                return Ticket(self._epoch, probe=True)
            self.skipped += 1
            left = self._until - now
            then = "a trial call is in flight" if self._probing else f"retrying in {_seconds(left)}"
            n, last = self._streak, (self._last or "")[:200]
            failures = f"{n} consecutive failure{'s' if n != 1 else ''}"
            return Unavailable(f"judge unavailable: {failures}, last: {last}; {then}")

    def settle(self, ticket: Ticket, failure: str | None) -> None:
        """The outcome of the call ``ticket`` admitted: ``failure`` (``outage``) or None
        (the judge answered)."""
        if not self.failures:
            return
        with self._lock:
            if ticket.epoch != self._epoch:
                return  # admitted before the breaker last opened or closed
            if failure is None:
                if self._until is not None:
                    self._epoch += 1
                self._streak, self._last, self._until, self._probing = 0, None, None, False
                self.cooldown_s = self.base_cooldown_s
                return
            self._streak += 1
            self._last = failure
            if ticket.probe:
                self.cooldown_s = min(2 * self.cooldown_s, self.max_cooldown_s)
            elif self._streak < self.failures:
                return
            self._epoch += 1
            self._until = self._clock() + self.cooldown_s
            self._probing = False
            self.opened += 1

    def release(self, ticket: Ticket) -> None:
        """The call ``ticket`` admitted ended without an outcome (cancelled): a trial's
        place goes to the next call."""
        with self._lock:
            if ticket.probe and ticket.epoch == self._epoch:
                self._probing = False


async def call_judge(
    judge: Annotator,
    text: str,
    schema: LabelSchema,
    *,
    gate: asyncio.Semaphore,
    breaker: JudgeBreaker,
    timeout_s: float,
    retry: RetryPolicy | None = None,
    template: PromptTemplate | None = None,
) -> Answer:
    """One judge call on ``text`` (``label_text``), inside ``gate`` (the concurrency cap),
    bounded by ``timeout_s``, when ``breaker`` admits it. Never raises for the judge's
    trouble: (None, why) instead, ``why`` an ``Unavailable`` when no call was made."""
    from annotators.labelling import label_text

    # A lone surrogate (JSON's "\ud800", a cut emoji) cannot be sent as UTF-8: the
    # judge would always fail on it, so it reads as U+FFFD (a split pair is joined).
    sendable = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    # The slot is held by the call alone: a text outside the band, or answered by the
    # memo, never waits for one, and a sync check or a rail (acheck) is capped as a
    # server's requests are (a caller's deadline covers the wait; timeout_s the call).
    # The breaker is asked once the slot is had: texts queued behind calls that failed
    # and opened it are then decided at once, not called.
    async with gate:
        ticket = breaker.admit()
        if isinstance(ticket, Unavailable):
            return None, ticket
        got: Answer
        try:
            answer = await asyncio.wait_for(
                label_text(judge, sendable, schema, policy=retry, template=template), timeout_s
            )
        except TimeoutError:
            got = None, f"judge timed out after {timeout_s:g} s"
        except Exception as exc:  # e.g. a missing SDK: the error policy decides, no crash
            got = None, f"judge failed: {type(exc).__name__}: {exc}"[:300]
        except BaseException as exc:  # cancelled: by the callers' deadline, or a close
            if isinstance(exc, asyncio.CancelledError) and exc.args == (ABANDONED,):
                breaker.settle(ticket, "no answer before the callers' deadline")
            else:
                breaker.release(ticket)
            raise
        else:
            got = answer, None
    breaker.settle(ticket, outage(*got))
    return got
