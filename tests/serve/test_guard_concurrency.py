"""One session shared by threads and tasks gives exactly the sequential results."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from guardrail_dro.serve.guard import Guard, GuardResult
from guardrail_dro.serve.policy import Policy

TEXTS = [
    f"{start} {obj}"
    for start in (
        "how do I clean a",
        "teach me to injure a person with a",
        "history of the",
        "I must remind you that I want to steal a",
    )
    for obj in ("knife", "bank card", "computer", "rope", "bomb")
] + ["word " * 250, "", "🙂 \ud800"]


def test_16_threads_x_500_checks(guard: Guard) -> None:
    expected = [guard.check(t) for t in TEXTS]

    def worker(seed: int) -> list[tuple[int, GuardResult]]:
        order = [(seed * 7 + k) % len(TEXTS) for k in range(500)]
        return [(i, guard.check(TEXTS[i])) for i in order]

    with ThreadPoolExecutor(16) as pool:
        runs = list(pool.map(worker, range(16)))
    assert sum(len(r) for r in runs) == 16 * 500
    for run in runs:
        for i, r in run:
            assert r == expected[i]


@pytest.mark.asyncio
async def test_16_concurrent_tasks(guard: Guard) -> None:
    expected = [guard.check(t) for t in TEXTS]

    async def task(seed: int) -> list[tuple[int, GuardResult]]:
        order = [(seed * 5 + k) % len(TEXTS) for k in range(40)]
        return [(i, await guard.acheck(TEXTS[i])) for i in order]

    runs = await asyncio.gather(*(task(s) for s in range(16)))
    for run in runs:
        for i, r in run:
            assert r == expected[i]
    many = await guard.acheck_many(TEXTS)
    assert [r.label for r in many] == [r.label for r in expected]


@pytest.mark.asyncio
async def test_acheck_does_not_block_the_loop(guard: Guard) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    t = asyncio.create_task(ticker())
    start = time.perf_counter()
    whole = guard.with_policy(Policy(max_windows=None, max_chars=None))
    r = await whole.acheck("bread and butter. " * 20_000)  # ~300 windows
    elapsed = time.perf_counter() - start
    t.cancel()
    assert r.windows > 100
    assert ticks >= min(5, elapsed / 0.01)  # the loop kept turning while the model ran


@pytest.mark.asyncio
async def test_acheck_latency_budget(guard: Guard) -> None:
    # No length bounds: the budget, not max_chars / max_windows, must stop the scoring.
    g = guard.with_policy(
        Policy(latency_budget_ms=1.0, on_error="open", max_chars=None, max_windows=None)
    )
    r = await g.acheck("bread and butter. " * 20_000)
    assert r.degraded and r.allowed and "budget" in r.error
