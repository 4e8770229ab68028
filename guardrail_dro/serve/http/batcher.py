"""Micro-batching: concurrent requests' texts scored in one model call.

One worker task takes the first waiting request, then every request already queued
(and, for ``max_wait_ms``, those arriving) up to ``max_batch_texts`` texts, and runs
``Guard.decide_many`` on them in one model thread. While the model runs, new requests
queue, so under load batches fill by themselves; an idle server answers a lone request
after at most ``max_wait_ms``. A request is never split, and a text's decision does not
depend on its batch (``Guard.check_many`` says why), so the server answers what
in-process ``Guard.check`` answers.

The model runs in one dedicated thread: ONNX Runtime already spreads one call over the
cores, and two calls at once would only contend for them. The queue is bounded
(``max_queue_texts``): past it ``submit`` raises ``Overloaded`` at once rather than
letting latency grow without end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import GuardResult

__all__ = ["MicroBatcher", "Overloaded"]


class Overloaded(Exception):
    """The queue is full: the request was not queued."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[list[GuardResult]] = field(repr=False)


class MicroBatcher:
    """Batches concurrent ``submit`` calls into ``Guard.decide_many`` calls.

    Args:
        guard: the guard (its policy decides; ``decide_many`` never raises a violation).
        max_batch_texts, max_wait_ms, max_queue_texts: see ``ServeConfig``.
        on_batch: called with the number of texts of each model call (metrics).
    """

    def __init__(
        self,
        guard: Guard,
        *,
        max_batch_texts: int = 64,
        max_wait_ms: float = 1.0,
        max_queue_texts: int = 4096,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.guard = guard
        self.max_batch_texts, self.max_wait = max_batch_texts, max_wait_ms / 1e3
        self.max_queue_texts = max_queue_texts
        self.on_batch = on_batch
        self.queued = 0  # texts waiting or being scored
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: _Job | None = None
        self._live: list[_Job] = []  # the jobs of the model call in progress

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the worker (on the running event loop)."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="guard-model")
        self._task = asyncio.create_task(self._run(), name="guard-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting get ``CancelledError``."""
        # The model call in progress stops at its next window batch once its jobs are
        # cancelled (its thread would otherwise hold the interpreter's exit).
        pending = list(self._live)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        pending += [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            job.future.cancel()

    async def submit(self, texts: Sequence[str]) -> list[GuardResult]:
        """The results for ``texts`` (one per text, in order), scored with whatever
        other requests are waiting.

        Raises:
            Overloaded: ``max_queue_texts`` texts are already waiting.
            RuntimeError: the batcher is not running.
        """
        if self._queue is None or not self.running:
            raise RuntimeError("the batcher is not running (start() it first)")
        if self.queued + len(texts) > self.max_queue_texts:
            raise Overloaded(f"{self.queued} texts are waiting for the model")
        job = _Job(list(texts), asyncio.get_running_loop().create_future())
        self.queued += len(job.texts)
        self._queue.put_nowait(job)
        try:
            return await job.future
        finally:
            if not job.future.done():  # cancelled (a timeout): the worker skips it
                job.future.cancel()

    async def _next(self, timeout: float | None) -> _Job | None:
        assert self._queue is not None
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        if timeout is None:
            return await self._queue.get()
        try:
            if timeout <= 0:
                return self._queue.get_nowait()
            return await asyncio.wait_for(self._queue.get(), timeout)
        except (asyncio.QueueEmpty, TimeoutError):
            return None

    async def _gather(self) -> list[_Job]:
        """The jobs of the next batch: the first waiting, then more up to the limits."""
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        assert first is not None
        jobs, n = [first], len(first.texts)
        deadline = loop.time() + self.max_wait
        while n < self.max_batch_texts:
            job = await self._next(deadline - loop.time())
            if job is None:
                break
            if n + len(job.texts) > self.max_batch_texts:
                self._carry = job  # first of the next batch
                break
            jobs.append(job)
            n += len(job.texts)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            live = [j for j in jobs if not j.future.done()]  # drop timed-out requests
            for j in jobs:
                if j.future.done():
                    self.queued -= len(j.texts)
            if not live:
                continue
            texts = [t for j in live for t in j.texts]
            if self.on_batch is not None:
                self.on_batch(len(texts))
            self._live = live

            # Every caller of the batch gone (timed out, or the server stopping): stop
            # at the next model call rather than score the rest, which would hold the
            # model, and every request queued behind it, for nobody. (A future's
            # done() is a plain read of its state.)
            def gone(live: list[_Job] = live) -> bool:
                return all(j.future.done() for j in live)

            try:
                results = await loop.run_in_executor(
                    self._executor, self.guard.decide_many, texts, gone
                )
            except Exception as exc:  # a model failure fails these requests, not the server
                for j in live:
                    if not j.future.done():
                        j.future.set_exception(exc)
            else:
                start = 0
                for j in live:
                    if not j.future.done():
                        j.future.set_result(results[start : start + len(j.texts)])
                    start += len(j.texts)
            finally:
                self.queued -= len(texts)
                self._live = []
