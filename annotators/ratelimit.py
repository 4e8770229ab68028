"""Client-side request-per-minute and token-per-minute limits.

Providers enforce both; staying under them is cheaper than being told 429 and
retrying. Each limit is a token bucket holding one minute's allowance, refilled
continuously. Tokens are estimated before a call and settled with the reply's usage
after it (a debt carries over), so a run converges on the real token rate.
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

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None

    async def acquire(self, est_tokens: int) -> None:
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(est_tokens)

    def settle(self, est_tokens: int, actual_tokens: int, extra_requests: int = 0) -> None:
        """Correct the estimate with the real usage (and charge retries as requests)."""
        if self.tokens is not None:
            self.tokens.settle(actual_tokens - est_tokens)
        if self.requests is not None and extra_requests:
            self.requests.settle(extra_requests)
