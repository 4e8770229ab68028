"""A warning shown once per process stays shown once under ``--rpm`` / ``--tpm``.

``ratelimit._take`` wrapped every ``acquire`` in ``warnings.catch_warnings()`` (to hush
aiolimiter's warning about a limiter moved to a new event loop). Entering and leaving it
resets Python's record of the warnings already shown, so a warning the "default" action
shows once a place was shown again after every request: anthropic's on
``thinking.type=enabled`` for claude-opus-4-6, 4 times in 30 items. And entered across
an ``await``, concurrent workers restored each other's filters, which could leave its
"ignore RuntimeWarning" in force after the run.
"""

from __future__ import annotations

import asyncio
import warnings

from annotators import AnthropicAnnotator
from annotators.ratelimit import RateLimiter
from annotators.retry import RetryPolicy
from annotators.runner import annotate_with_report
from annotators.testing import FakeLLMServer
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY, make_dataset

ENABLED = "thinking.type=enabled' is deprecated"


def _not_other_tests_sockets() -> None:
    """An earlier test's unclosed socket, collected while a warning is recorded here,
    adds its ResourceWarning to the record (a CI run failed so): not these tests' subject."""
    warnings.simplefilter("ignore", ResourceWarning)


def _sdk_like() -> None:
    """A warning from one place, as an SDK's on every request."""
    warnings.warn("this request's option is deprecated", UserWarning, stacklevel=1)


def test_a_warning_raised_between_limited_requests_is_shown_once() -> None:
    async def run() -> None:
        lim = RateLimiter(rpm=6000, tpm=1_000_000)
        for _ in range(5):
            await lim.acquire(10)
            _sdk_like()
            await lim.settle(10, 30)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # once a place, as Python shows a UserWarning
        _not_other_tests_sockets()
        asyncio.run(run())
    assert [str(w.message) for w in seen] == ["this request's option is deprecated"]


def test_the_sdk_s_enabled_thinking_warning_is_shown_once_with_rpm(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    """The real anthropic SDK over HTTP to the fake server, one request after another."""
    texts = [f"text number {i}" for i in range(6)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        _not_other_tests_sockets()
        ann = AnthropicAnnotator(
            "claude-opus-4-6", api_key=KEY, base_url=server.anthropic_base_url,
            thinking_budget=1024,
        )  # fmt: skip
        res = annotate_with_report(
            make_dataset(texts, schema), [ann], policy=fast, progress=False,
            concurrency=1, limiter=RateLimiter(rpm=6000, tpm=1_000_000),
        )  # fmt: skip
    assert len(server.requests) == 6 and res.report.failures == []
    assert len([w for w in seen if ENABLED in str(w.message)]) == 1


def test_a_limiter_shared_by_runs_on_two_loops_says_nothing_and_keeps_filters() -> None:
    """What the ``catch_warnings`` was for: aiolimiter's "re-used across loops" is not
    shown when a limiter serves a second ``asyncio.run``; and concurrent workers leave
    the filters as they found them."""
    lim = RateLimiter(rpm=6000, tpm=1_000_000)

    async def run(first: bool) -> None:
        async def worker() -> None:
            for _ in range(3):
                await lim.acquire(100)
                await lim.settle(100, 200)

        if first:  # the burst spent: each request waits its turn (10 ms), others run
            await lim.acquire(0)
            assert lim.requests is not None
            await lim.requests.acquire(lim.requests.max_rate)
        await asyncio.gather(*(worker() for _ in range(4)))

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _not_other_tests_sockets()
        before = list(warnings.filters)
        asyncio.run(run(True))
        asyncio.run(run(False))  # the buckets move to this loop, still nearly full
        after = list(warnings.filters)
    assert [str(w.message) for w in seen] == []
    assert after == before
