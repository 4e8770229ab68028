"""Ctrl-C and SIGTERM during an annotation run: stop asking, keep what was paid for.

The live runner and the batch runner share one rule. The first signal sets ``stop``
and prints a note: the live runner sends no new request and waits for the calls in
flight (paid already) so they are cached, while an item sleeping in a retry's backoff
(up to a minute, or a server's ``Retry-After``) wakes at once and is left for the next
run (``Stopped``; ``RetryPolicy.run``'s ``stop``); the batch runner submits no new job and stops
polling (its jobs keep running at the provider; the same command collects them). The
second signal cancels the run's task at once. Either way the run raises
``KeyboardInterrupt``, or ``Terminated`` when SIGTERM asked.

The note names the signal that can stop the run at once: "Ctrl-C again" after a Ctrl-C,
"SIGTERM again" after a SIGTERM (a job under ``nohup`` ignores Ctrl-C, so telling it
to press Ctrl-C again pointed at a key that does nothing there).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["DrainOnInterrupt", "Stopped", "Terminated", "drain_by_default", "pause"]

T = TypeVar("T")


class Stopped(Exception):
    """A stop was asked (``stop`` set) before a request was sent: its first attempt, or a
    retry whose backoff the stop cut short. No answer to keep, nothing recorded: the item
    is left for the next run. Here, beside ``pause``, so that ``retry`` can raise it
    (``labelling`` re-exports it, where it was first published)."""


class Terminated(KeyboardInterrupt):
    """The run stopped on SIGTERM (a container or a scheduler stopping the job), once
    the calls in flight were cached: ``KeyboardInterrupt``'s meaning, another signal."""


def drain_by_default() -> bool:
    """Whether a sync entry point takes the signals: in the main thread, when SIGINT
    has Python's default handler (the rule ``asyncio.run`` follows) or is ignored (a job
    started with ``nohup`` or ``cmd &``, whose SIGTERM must still drain); a program's own
    SIGINT handling is left alone."""
    return threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGINT
    ) in (signal.default_int_handler, signal.SIG_IGN)


async def pause(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile (a batch poll interval is
    30 s by default: a stop must not wait it out)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class DrainOnInterrupt:
    """SIGINT (or SIGTERM) on this loop while a run works: the first sets ``stop`` and
    prints ``note``, the second cancels the task that entered.

    ``note`` may hold ``{again}``: it is filled with what stops the run at once, "Ctrl-C
    again" or "SIGTERM again", after the signal received.

    Installed only where asyncio can take the signal (the main thread, a Unix loop) and
    only when asked (``drain_by_default`` for the sync entry points). An ignored signal
    stays ignored: a job started with ``nohup`` has SIGINT ignored, and its SIGTERM must
    still drain. The previous handlers are put back on the way out.
    """

    def __init__(self, enabled: bool, note: str) -> None:
        self.enabled = enabled
        self.note = note
        self.stop = asyncio.Event()  # set by the first signal: ask (or submit) no more
        self.aborted = False
        self._task: asyncio.Task | None = None
        self._previous: dict[int, object] = {}
        self.signum: int = signal.SIGINT  # the signal that asked to stop

    def __enter__(self) -> DrainOnInterrupt:
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        self._task = asyncio.current_task()
        # SIGTERM too (killed before, the calls in flight were lost and paid again on the
        # resume); either one only unless it is ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue
            try:
                asyncio.get_running_loop().add_signal_handler(signum, self._on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, odd loops
                break
            self._previous[signum] = previous
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            asyncio.get_running_loop().remove_signal_handler(signum)
            # None: a handler set from C, not restorable
            default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, default if previous is None else previous)  # type: ignore[arg-type]

    @property
    def requested(self) -> bool:
        return self.stop.is_set()

    async def run(self, work: Awaitable[T]) -> T:
        """``work``'s result, awaited with these handlers installed; after a first signal,
        once ``work`` has drained, ``stopped()`` is raised; after a second (``work``
        cancelled), at once. The live and the batch runners share this."""
        try:
            with self:
                result = await work
        except asyncio.CancelledError:
            if self.aborted:  # the second signal
                raise self.stopped() from None
            raise
        if self.requested:
            raise self.stopped()
        return result

    def stopped(self) -> KeyboardInterrupt:
        """What the run raises once stopped: ``Terminated`` on SIGTERM."""
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def _on_signal(self, signum: int) -> None:
        if self.requested:
            self.aborted = True
            if self._task is not None:
                self._task.cancel()
            return
        self.signum = signum
        self.stop.set()
        again = "SIGTERM again" if signum == signal.SIGTERM else "Ctrl-C again"
        print(self.note.replace("{again}", again), file=sys.stderr, flush=True)
