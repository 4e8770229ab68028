"""The one retry policy of the annotators: which errors are retried, and how long to wait.

SDK clients are built with ``max_retries=0`` so that this module is the only retry
owner (retries stacked on retries multiply calls and hide rate limits). The policy:

- transient: connection errors and timeouts, and HTTP 408, 409, 429 and 5xx;
  everything else (400, 401, 403, 404, 422...) propagates at once, and so does a
  transient status whose error code says no wait helps (``NOT_TRANSIENT_CODES``:
  OpenAI's 429 ``insufficient_quota``, an account out of credit);
- ``Retry-After`` / ``retry-after-ms`` honoured, up to ``retry_after_cap`` seconds;
- otherwise exponential backoff ``initial * multiplier ** (attempt - 1)``, capped at
  ``max_backoff``, less a random fraction up to ``jitter`` of it (so that a storm of
  clients that failed together does not retry together);
- at most ``max_attempts`` attempts in all;
- given a ``stop`` event (a first Ctrl-C or SIGTERM), a backoff wait ends the moment it
  is set and no retry is sent (``Stopped``): a drain waited out every sleeping item's
  backoff before, up to ``max_backoff`` (60 s) or ``retry_after_cap`` (120 s).

Tests make waits tiny by passing a ``RetryPolicy`` with small numbers, not by patching.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from annotators.interrupt import Stopped, pause
from guardrail_dro.errors import ConfigError

__all__ = [
    "NOT_TRANSIENT_CODES",
    "TRANSIENT_STATUSES",
    "RetryPolicy",
    "api_error_types",
    "backoff_seconds",
    "is_transient",
    "retry_after_seconds",
]

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 409, 429})
"""Statuses retried besides every 5xx."""

NOT_TRANSIENT_CODES = frozenset({"insufficient_quota"})
"""Error codes that make a transient status final: OpenAI answers an account out of
credit with 429 ``insufficient_quota``. Read as a rate limit, each item spent its whole
retry schedule (~23 s) on it and a run went on for hours, failing every item."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed call is tried again.

    Attributes:
        max_attempts: attempts in all, the first one included.
        initial: seconds before the first retry (before jitter).
        multiplier: growth of the wait per attempt.
        max_backoff: ceiling of the exponential wait, in seconds.
        jitter: fraction of the wait that may be removed at random (0 = none, 1 = full).
        retry_after_cap: the longest server-requested wait obeyed, in seconds.
    """

    max_attempts: int = 6
    initial: float = 1.0
    multiplier: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.5
    retry_after_cap: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"jitter must be in [0, 1], not {self.jitter}")
        if min(self.initial, self.max_backoff, self.retry_after_cap) < 0:
            raise ConfigError("retry waits must not be negative")

    def wait_for(self, attempt: int, exc: BaseException | None,
                 rand: Callable[[], float] = random.random) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        return backoff_seconds(attempt, self, retry_after=retry_after_seconds(exc), rand=rand)

    async def run(self, fn: Callable[[], Awaitable[T]],
                  on_retry: Callable[[int, BaseException], None] | None = None, *,
                  retry_if: Callable[[BaseException], bool] | None = None,
                  stop: asyncio.Event | None = None) -> T:
        """Await ``fn()`` under this policy; the last error propagates unchanged.

        Args:
            fn: a zero-argument coroutine function (one attempt).
            on_retry: called with (attempt, error) before each retry sleep.
            retry_if: which errors to retry (default ``is_transient``); a call that must
                not be repeated blindly (creating a paid batch job) narrows it.
            stop: once set, a backoff wait ends at once and no retry is sent. An
                attempt already sent is awaited (a paid call is never thrown away).

        Raises:
            Stopped: ``stop`` was set before a retry was sent (the first attempt is the
                caller's to guard); the failed attempts are no answer to keep.
        """
        import tenacity

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait_for(state.attempt_number, exc)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if on_retry is not None and exc is not None:
                on_retry(state.attempt_number, exc)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(retry_if or is_transient),
            before_sleep=before_sleep,
            # pause: the wait ends early when ``stop`` is set (plain sleep without one)
            sleep=functools.partial(pause, stop),
            reraise=True,
        )
        tries = 0

        async def attempt() -> T:
            # A coroutine function of our own: tenacity treats plain callables (lambdas
            # returning coroutines) as sync functions and would not await them.
            nonlocal tries
            tries += 1
            if tries > 1 and stop is not None and stop.is_set():
                raise Stopped  # not transient: tenacity lets it through at once
            return await fn()

        return await retrying(attempt)


def backoff_seconds(attempt: int, policy: RetryPolicy, *, retry_after: float | None = None,
                    rand: Callable[[], float] = random.random) -> float:
    """The wait after failed attempt ``attempt`` (1-based): pure, so it can be table-tested.

    A server's ``Retry-After`` wins (capped at ``policy.retry_after_cap``, no jitter:
    the server said when); otherwise exponential backoff with jitter.
    """
    if retry_after is not None:
        return max(0.0, min(retry_after, policy.retry_after_cap))
    base = min(policy.max_backoff, policy.initial * policy.multiplier ** max(0, attempt - 1))
    return base * (1.0 - policy.jitter * rand())


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _loaded_sdks() -> list[Any]:
    # Only SDKs already imported: an error can only come from one that is loaded, and
    # importing the other here (a second or more) would stall the event loop on the
    # first error of a run.
    return [m for m in (sys.modules.get("openai"), sys.modules.get("anthropic"))
            if m is not None]


def _sdk_connection_errors() -> tuple[type[BaseException], ...]:
    # timeouts subclass APIConnectionError in both SDKs
    return tuple(mod.APIConnectionError for mod in _loaded_sdks())


def api_error_types() -> tuple[type[BaseException], ...]:
    """Errors that mean "the API call failed" (as opposed to a bug in our code)."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod in _loaded_sdks():
        types.append(mod.OpenAIError if mod.__name__ == "openai" else mod.AnthropicError)
    return tuple(types)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: connection errors, timeouts, 408/409/429/5xx,
    unless their code is one of ``NOT_TRANSIENT_CODES``."""
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, _sdk_connection_errors()):
        return True
    if getattr(exc, "code", None) in NOT_TRANSIENT_CODES:
        return False
    status = _status(exc)
    if status is None:
        return False
    return status in TRANSIENT_STATUSES or 500 <= status <= 599


def _headers(exc: BaseException | None) -> Any:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)


def retry_after_seconds(exc: BaseException | None, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be seconds or an HTTP date. Returns None when absent or unreadable.
    """
    headers = _headers(exc)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
