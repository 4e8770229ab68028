"""Client-side request-per-minute and token-per-minute limits, on ``aiolimiter``.

Providers enforce both; staying under them is cheaper than being told 429 and
retrying. Each limit is an ``aiolimiter.AsyncLimiter`` (a maintained leaky bucket,
FIFO among waiters of equal size) holding one minute's allowance.

Tokens are only known after the reply, so a request takes its *input* estimate before
it is sent and, once the reply says what it used, ``settle`` takes the rest (the
reply's tokens and any underestimate of the input): the worker that made the request
pays that debt before it starts another, and meanwhile the bucket is fuller for every
worker. An overestimate is not given back (aiolimiter has no refund), which errs on
the side of staying under the limit; the input estimate is close (characters / 4).

``pause(seconds)`` is the server's word: a 429 with ``Retry-After`` pauses every worker
that shares the limiter, since the limit it hit is shared by all of them.
"""

from __future__ import annotations

import asyncio
import time
import warnings

from aiolimiter import AsyncLimiter

from guardrail_dro.errors import ConfigError

__all__ = ["RateLimiter"]


def _bucket(per_minute: float | None, what: str) -> AsyncLimiter | None:
    if per_minute is None:
        return None
    if per_minute <= 0:
        raise ConfigError(f"{what} must be positive, not {per_minute}")
    return AsyncLimiter(per_minute, 60.0)


async def _take(bucket: AsyncLimiter, amount: float) -> None:
    # One request larger than a minute's allowance waits for a whole minute's worth.
    amount = min(max(amount, 0.0), bucket.max_rate)
    if amount:
        await bucket.acquire(amount)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits together; None means no limit.

    Args:
        rpm: requests a minute (a minute's worth may go at once).
        tpm: tokens a minute, input and output together.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.requests = _bucket(rpm, "--rpm")
        self.tokens = _bucket(tpm, "--tpm")
        self.paused_until = 0.0
        """``time.monotonic()`` before which no request starts (set by ``pause``)."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def pause(self, seconds: float) -> None:
        """Start no request for ``seconds`` (a 429's ``Retry-After``), for every worker."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def _follow_loop(self) -> None:
        """Move the buckets to the running event loop when it is not the last one's.

        A limiter shared by runs on successive loops (``asyncio.run`` each: the batch
        and the runner entry points) finds its buckets bound to the closed loop of the
        run before; aiolimiter moves them to the running one, its level kept, and says
        so with a ``RuntimeWarning``. That warning is what is silenced here, once per
        new loop, by a call that moves them (``has_capacity`` reads the loop) and awaits
        nothing. Silenced around every ``acquire`` instead, each ``catch_warnings``
        reset Python's record of the warnings already shown ("default" shows each once
        a place): an SDK's warning on every request (anthropic's on thinking.type=enabled
        for claude-opus-4-6) was shown again after each, 4 times in 30 items with
        ``--rpm``; and entered across an ``await``, one worker's filters were another's.
        """
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        first, self._loop = self._loop is None, loop
        if first:  # buckets not used yet bind to the running loop without a word
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for bucket in (self.requests, self.tokens):
                if bucket is not None:
                    bucket.has_capacity(0)

    async def _wait_pause(self) -> None:
        while (wait := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    async def acquire(self, est_tokens: int) -> None:
        """Wait for a request and ``est_tokens`` tokens (the input estimate)."""
        self._follow_loop()
        await self._wait_pause()
        if self.requests is not None:
            await _take(self.requests, 1)
        if self.tokens is not None:
            await _take(self.tokens, est_tokens)
        await self._wait_pause()  # a pause may have begun while we queued

    async def settle(self, est_tokens: int, actual_tokens: int) -> None:
        """Take the tokens a reply used beyond the estimate taken before it."""
        if self.tokens is not None and actual_tokens > est_tokens:
            self._follow_loop()
            await _take(self.tokens, actual_tokens - est_tokens)
