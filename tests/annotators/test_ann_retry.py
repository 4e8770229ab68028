"""The retry policy: backoff table, Retry-After parsing, the transient set."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import pytest

from annotators.retry import RetryPolicy, backoff_seconds, is_transient, retry_after_seconds
from guardrail_dro.errors import ConfigError

P = RetryPolicy(initial=1.0, multiplier=2.0, max_backoff=10.0, jitter=0.5, retry_after_cap=30)


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        (1, 0.0, None, 1.0),
        (2, 0.0, None, 2.0),
        (3, 0.0, None, 4.0),
        (4, 0.0, None, 8.0),
        (5, 0.0, None, 10.0),   # capped at max_backoff
        (9, 0.0, None, 10.0),
        (3, 1.0, None, 2.0),    # full jitter draw removes `jitter` of the wait
        (3, 0.5, None, 3.0),
        (1, 0.9, 5.0, 5.0),     # Retry-After wins, no jitter
        (1, 0.0, 120.0, 30.0),  # ... up to the cap
        (1, 0.0, 0.0, 0.0),
    ],
)
def test_backoff_table(attempt: int, rand: float, retry_after: float | None,
                       expected: float) -> None:
    got = backoff_seconds(attempt, P, retry_after=retry_after, rand=lambda: rand)
    assert got == pytest.approx(expected)


def _status_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    import openai

    req = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    resp = httpx2.Response(status, headers=headers or {}, request=req)
    return openai.APIStatusError("x", response=resp, body=None)


@pytest.mark.parametrize(
    ("status", "transient"),
    [(408, True), (409, True), (429, True), (500, True), (503, True), (529, True),
     (400, False), (401, False), (403, False), (404, False), (422, False)],
)
def test_transient_statuses(status: int, transient: bool) -> None:
    assert is_transient(_status_error(status)) is transient


def test_connection_errors_and_timeouts_are_transient() -> None:
    import anthropic
    import openai

    req = httpx2.Request("POST", "http://127.0.0.1/")
    assert is_transient(openai.APITimeoutError(request=req))
    assert is_transient(anthropic.APIConnectionError(request=req))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError("a bug"))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_header(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(_status_error(429, headers)) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    when = format_datetime(now + timedelta(seconds=7), usegmt=True)
    got = retry_after_seconds(_status_error(429, {"retry-after": when}), now=now.timestamp())
    assert got == pytest.approx(7.0)


def test_policy_retries_transient_and_gives_up_after_max_attempts() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        raise _status_error(503)

    policy = RetryPolicy(max_attempts=3, initial=0.0, max_backoff=0.0)
    with pytest.raises(Exception, match="x") as exc:
        asyncio.run(policy.run(flaky))
    assert getattr(exc.value, "status_code", None) == 503
    assert len(calls) == 3


def test_policy_does_not_retry_a_bad_request() -> None:
    calls = []

    async def bad() -> str:
        calls.append(1)
        raise _status_error(400)

    with pytest.raises(Exception, match="x"):
        asyncio.run(RetryPolicy(initial=0.0).run(bad))
    assert len(calls) == 1


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"jitter": 1.5}, {"initial": -1}])
def test_policy_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)
