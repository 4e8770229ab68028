"""Client-side request-per-minute and token-per-minute limits.

Providers enforce both; staying under them is cheaper than being told 429 and
retrying. Each limit is a token bucket holding one minute's allowance, refilled
continuously. Tokens are estimated before a call and settled with the reply's usage
after it (a debt carries over), so a run converges on the real token rate.

``pause(seconds)`` is the server's word: a 429 with ``Retry-After`` pauses every worker
that shares the limiter, since the limit it hit is shared by all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from guardrail_dro.errors import ConfigError

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    """``per_minute`` units a minute, at most one minute's worth in a burst.

    Args:
        per_minute: the allowance.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ConfigError(f"a per-minute limit must be positive, not {per_minute}")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = float(per_minute)
        self._clock = clock
        self._t = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._t) * self.rate)
        self._t = now

    def delay_for(self, n: float) -> float:
        """Seconds until ``n`` units are available (0 when they are now)."""
        self._refill()
        n = min(n, self.capacity)
        return 0.0 if self.level >= n else (n - self.level) / self.rate

    async def acquire(self, n: float = 1.0) -> None:
        async with self._lock:  # first come, first served
            while (wait := self.delay_for(n)) > 0:
                await asyncio.sleep(wait)
            self.level -= min(n, self.capacity)

    def settle(self, delta: float) -> None:
        """Charge ``delta`` more units (negative: give some back) after the fact."""
        self._refill()
        self.level = min(self.capacity, self.level - delta)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits together; None means no limit."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.requests = TokenBucket(rpm, clock=clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock=clock) if tpm else None
        self.paused_until = 0.0
        """Clock time before which no request starts (set by ``pause``)."""
        self._clock = clock

    def pause(self, seconds: float) -> None:
        """Start no request for ``seconds`` (a 429's ``Retry-After``), for every worker."""
        self.paused_until = max(self.paused_until, self._clock() + seconds)

    async def _wait_pause(self) -> None:
        while (wait := self.paused_until - self._clock()) > 0:
            await asyncio.sleep(wait)

    async def acquire(self, est_tokens: int) -> None:
        await self._wait_pause()
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(est_tokens)
        await self._wait_pause()  # a pause may have begun while we queued

    def settle(self, est_tokens: int, actual_tokens: int, extra_requests: int = 0) -> None:
        """Correct the estimate with the real usage (and charge retries as requests)."""
        if self.tokens is not None:
            self.tokens.settle(actual_tokens - est_tokens)
        if self.requests is not None and extra_requests:
            self.requests.settle(extra_requests)
