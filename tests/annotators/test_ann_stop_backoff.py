"""A first Ctrl-C (or SIGTERM) while an item sleeps in a retry's backoff.

The drain sent no new request but waited the backoff out: up to ``max_backoff`` (60 s)
or a server's ``Retry-After`` (up to 120 s), so the user's first Ctrl-C seemed to hang
for a minute. Now the sleep ends at once, no retry is sent, and the item is left for the
next run (not cached as an error); a call already on the wire still finishes and is
cached. The real OpenAI SDK talks to the fake server over HTTP; the signal is real.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from annotators.interrupt import Stopped
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, Fault, keyword_handler
from tests.annotators.ann_helpers import KEY
from tests.annotators.test_ann_cli import (
    CLI,
    _as_in_a_terminal,
    _cached_texts,
    _csv,
    _env,
    _run,
)

BACKOFF = 60.0  # the server's Retry-After, under the default cap (120 s): obeyed in full


async def _stop_after(stop: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    stop.set()


def test_a_stop_ends_a_backoff_wait_and_sends_no_retry() -> None:
    policy = RetryPolicy(max_attempts=3, initial=BACKOFF, max_backoff=BACKOFF, jitter=0.0)
    sent: list[float] = []

    async def flaky() -> str:
        sent.append(time.monotonic())
        raise ConnectionError("refused")

    async def main() -> float:
        stop = asyncio.Event()
        setter = asyncio.ensure_future(_stop_after(stop, 0.2))
        t0 = time.monotonic()
        with pytest.raises(Stopped):
            await policy.run(flaky, stop=stop)
        await setter
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert len(sent) == 1, "a retry was sent after the stop"
    assert took < BACKOFF / 10, f"the stop waited {took:.1f} s of a {BACKOFF} s backoff"


def test_an_attempt_on_the_wire_when_the_stop_comes_is_awaited() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "paid"

    async def main() -> str:
        stop = asyncio.Event()
        setter = asyncio.ensure_future(_stop_after(stop, 0.05))
        got = await RetryPolicy().run(slow, stop=stop)
        await setter
        return got

    assert asyncio.run(main()) == "paid"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_does_not_wait_out_a_retry_after(tmp_path: Path, sig: int) -> None:
    limited, on_wire = "a limited item", "a slow item"
    texts = [limited, on_wire, "item one", "item two"]
    cache = tmp_path / "cache.sqlite"
    args = ["--data", str(_csv(tmp_path / "in.csv", texts)), "--out", str(tmp_path / "o.jsonl"),
            "--labels", "safe,toxic", "--annotator", "openai:gpt-fake", "--cache", str(cache),
            "--concurrency", "4", "--no-progress"]  # fmt: skip
    with FakeLLMServer(keyword_handler, latency=0.1) as srv:
        args += ["--base-url", srv.openai_base_url]
        srv.add_fault(Fault("rate_limit", match=limited, times=1, retry_after=BACKOFF))
        srv.add_fault(Fault("slow", match=on_wire, times=1, delay=2.0))
        proc = subprocess.Popen([CLI, "annotate", *args], env=_env(OPENAI_API_KEY=KEY),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_as_in_a_terminal)  # fmt: skip
        deadline = time.monotonic() + 30
        # the two plain items paid: the 429 (same latency) is back, the slow one in flight
        while srv.paid.total() < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.2)
        assert srv.calls[limited] == 1 and srv.paid[on_wire] == 0, "not in backoff yet"
        os.kill(proc.pid, sig)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=BACKOFF * 2)
        took = time.monotonic() - t0
        assert proc.returncode == (143 if sig == signal.SIGTERM else 130), stderr
        assert "Traceback" not in stderr and "every answer received is in" in stderr
        assert took < BACKOFF / 4, f"the first signal waited {took:.1f} s of a {BACKOFF} s backoff"
        assert srv.calls[limited] == 1, "a retry was sent after the signal"
        # the call on the wire finished and was cached; the item in backoff was not
        assert _cached_texts(cache, texts, srv) == {on_wire, "item one", "item two"}

        r = _run(args, _env(OPENAI_API_KEY=KEY))
        assert r.returncode == 0, r.stderr
        assert srv.calls[limited] == 2 and srv.paid[limited] == 1  # asked again, once
    assert all(srv.paid[t] == 1 for t in texts), "an answer was paid twice"
    assert "1 call(s) made, 3 answer(s) from the cache" in r.stderr


def test_a_batch_run_stops_at_once_during_a_polls_retry_after(tmp_path: Path) -> None:
    """The batch runner's calls (submit, poll, collect) share the retry policy: a poll
    answered 429 ``Retry-After: 60`` held a first Ctrl-C for that minute."""
    texts = ["have a nice day", "you idiot"]
    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(keyword_handler) as srv:
        args = ["--data", str(_csv(tmp_path / "in.csv", texts)), "--out", str(tmp_path / "o.jsonl"),
                "--labels", "safe,toxic", "--annotator", "openai:gpt-fake", "--batch",
                "--base-url", srv.openai_base_url, "--poll-interval", "0.05", "--cache", str(cache),
                "--no-agreement"]  # fmt: skip
        srv.add_fault(Fault("batch_poll_rate_limit", match="idiot", times=1, retry_after=BACKOFF))
        proc = subprocess.Popen([CLI, "annotate", *args], env=_env(OPENAI_API_KEY=KEY),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_as_in_a_terminal)  # fmt: skip
        deadline = time.monotonic() + 30
        while (srv.endpoints["batches.retrieve"] < 1 and time.monotonic() < deadline
               and proc.poll() is None):
            time.sleep(0.01)
        time.sleep(0.3)  # the 429 is back: the poll sleeps in its backoff
        os.kill(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=BACKOFF * 2)
        took = time.monotonic() - t0
        assert proc.returncode == 130 and "Traceback" not in stderr, stderr
        assert "the submitted batch job(s) keep running" in stderr
        assert took < BACKOFF / 4, f"the first Ctrl-C waited {took:.1f} s of a {BACKOFF} s backoff"
        assert srv.endpoints["batches.retrieve"] == 1, "a poll was retried after the Ctrl-C"

        r = _run(args, _env(OPENAI_API_KEY=KEY))
        assert r.returncode == 0, r.stderr
        assert srv.endpoints["batches.create"] == 1  # the same job, collected
    assert all(srv.batch_paid[t] == 1 for t in texts)
