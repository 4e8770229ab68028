"""Audit of the moderation server with an LLM judge, and of the escalating guard's
limits at run time: a fake-scored guard, the real OpenAI SDK, the fake LLM server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from guardrail_dro.serve.escalation import EscalatingGuard
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.scorer import FakeScorer
from tests.serve.test_escalation import BAND  # the band [0.3, 0.8) those tests use

LABELS = ("safe", "toxic")


def _probs(text: str) -> dict[str, float]:
    """'idiot' is sure, 'mild' is unsure (in the band), the rest is clearly safe."""
    if "idiot" in text:
        return {"toxic": 0.95}
    if "mild" in text:
        return {"toxic": 0.5}
    return {"toxic": 0.05}


class _Busy:
    """A judge rule that takes ``delay`` seconds and counts the calls in flight."""

    def __init__(self, delay: float) -> None:
        self.delay, self.now, self.peak = delay, 0, 0
        self._lock = threading.Lock()

    def __call__(self, text: str):
        from annotators.testing import keyword_handler

        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.delay)
        with self._lock:
            self.now -= 1
        return keyword_handler(text)


@pytest.fixture
def busy():
    from annotators.testing import FakeLLMServer

    rule = _Busy(0.4)
    with FakeLLMServer(rule) as srv:
        srv.rule = rule
        yield srv


@pytest.fixture
def cascades():
    made: list[EscalatingGuard] = []

    def make(server, **kw) -> EscalatingGuard:
        from annotators.openai_annotator import OpenAIAnnotator

        guard = Guard.from_scorer(FakeScorer(_probs, labels=LABELS))
        judge = OpenAIAnnotator("gpt-4o-mini", api_key="k", base_url=server.openai_base_url)
        made.append(EscalatingGuard(guard, judge, BAND, **kw))
        return made[-1]

    yield make
    for eg in made:
        eg.close()


# ---- the judge's concurrency: a cap on calls, not on texts --------------------------
def test_sync_checks_from_many_threads_keep_the_judge_concurrency(busy, cascades):
    """``check`` (and the sync rails) from many threads ran every judge call at once:
    the cap was applied in ``resolve`` only, never on ``acheck``'s path."""
    eg = cascades(busy, concurrency=2)
    threads = [threading.Thread(target=eg.check, args=(f"a mild question {i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(busy.calls.values()) == 6
    assert busy.rule.peak <= 2


@pytest.mark.asyncio
async def test_async_checks_keep_the_judge_concurrency(busy, cascades):
    eg = cascades(busy, concurrency=2)
    out = await asyncio.gather(*(eg.acheck(f"a mild question {i}") for i in range(6)))
    assert all(o.escalated and not o.result.degraded for o in out)
    assert busy.rule.peak <= 2


@pytest.mark.asyncio
async def test_a_text_outside_the_band_never_waits_for_the_judge(busy, cascades):
    """Every text held a judge slot, in the band or not: a clearly safe text waited for
    the judge calls in flight (~0.4 s here) instead of the guard's millisecond answer."""
    eg = cascades(busy, concurrency=1)
    unsure = ["a mild question", "a mild remark"]
    pending = asyncio.ensure_future(eg.resolve(unsure, eg.upper.decide_many(unsure)))
    # The judge is busy with the first (polled, not a fixed sleep: on a loaded host the
    # call may start late, or be nearly done, and the margin below would shrink).
    deadline = time.monotonic() + 10
    while busy.rule.now == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert busy.rule.now == 1, "the judge never got the first call"
    start = time.perf_counter()
    safe = await eg.resolve(["what time is it"], [eg.upper.decide("what time is it")])
    took = time.perf_counter() - start
    assert not safe[0].escalated and safe[0].allowed
    # waiting for a slot took 0.84 s here (behind both calls, in turn)
    assert took < 0.3, f"a text outside the band waited {took:.2f} s for the judge"
    await pending


def test_the_server_answers_a_safe_text_while_the_judge_is_busy(busy, cascades):
    import httpx2

    from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app

    eg = cascades(busy, concurrency=1)
    app = create_app(eg.guard, ServeConfig(timeout_ms=5_000), eg)
    with BackgroundServer(app) as url, httpx2.Client(base_url=url, timeout=10) as client:

        def unsure() -> None:
            client.post("/v1/moderations", json={"input": ["a mild one", "a mild two"]})

        behind = threading.Thread(target=unsure)
        behind.start()
        deadline = time.monotonic() + 10  # polled: a fixed sleep may end before the call
        while busy.rule.now == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert busy.rule.now == 1, "the judge never got the first call"
        start = time.perf_counter()
        got = client.post("/v1/moderations", json={"input": "what time is it"}).json()
        took = time.perf_counter() - start
        behind.join()
    assert got["results"][0]["flagged"] is False
    assert got["results"][0]["guardrail"]["escalated"] is False
    # behind the judge it took 0.82 s here (both texts' calls, in turn); loose: HTTP
    assert took < 0.5, f"a safe text took {took:.2f} s behind the judge"


def test_a_long_check_many_is_not_cut_off_by_its_queue(busy, cascades):
    """``timeout_s`` bounds each judge call, not its wait for a slot: a file checked
    with ``check_many`` (``guardrail-dro check --escalate --file``) gets every answer."""
    eg = cascades(busy, concurrency=1, timeout_s=1.0)
    out = eg.check_many([f"a mild question {i}" for i in range(4)])  # ~1.6 s in a queue
    assert [o.result.degraded for o in out] == [False] * 4
    assert busy.rule.peak == 1


@pytest.mark.asyncio
async def test_a_deadline_covers_the_wait_for_a_judge_slot(busy, cascades):
    eg = cascades(busy, concurrency=1)
    texts = ["a mild one", "a mild two", "a mild three"]
    start = time.perf_counter()
    out = await eg.resolve(texts, eg.upper.decide_many(texts), deadline=start + 0.6)
    took = time.perf_counter() - start
    # ~0.6 s; without the slot wait counted, 1.2 s (three 0.4 s calls in turn) or more
    assert took < 1.1, f"the deadline was 0.6 s; the answers took {took:.2f} s"
    assert sum(o.result.degraded for o in out) >= 1  # one slot, 0.4 s a call
    cut = ("timed out", "no time left")
    assert all(any(w in (o.result.error or "") for w in cut) for o in out if o.result.degraded)


# ---- the judge's SDK: imported before the server takes requests ----------------------
_FIRST_CALL = r"""
import json, sys, threading, time
import httpx2
from annotators.anthropic_annotator import AnthropicAnnotator
from annotators.testing import FakeLLMServer, FakeReply
from guardrail_dro.serve.escalation import EscalatingGuard, EscalationBand
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.scorer import FakeScorer

band = EscalationBand.model_validate_json(sys.argv[1])
probs = lambda t: {"toxic": 0.5 if "mild" in t else 0.05}
guard = Guard.from_scorer(FakeScorer(probs, labels=("safe", "toxic")))
with FakeLLMServer(lambda t: FakeReply("safe")) as fake:
    judge = AnthropicAnnotator("claude-fake", api_key="k", base_url=fake.anthropic_base_url)
    eg = EscalatingGuard(guard, judge, band)
    with BackgroundServer(create_app(guard, ServeConfig(), eg)) as url:
        loaded = "anthropic" in sys.modules
        client = httpx2.Client(base_url=url, timeout=30)
        first = threading.Thread(
            target=client.post, args=("/v1/moderations",), kwargs={"json": {"input": "a mild one"}}
        )
        first.start()
        worst = 0.0
        while first.is_alive():
            t = time.perf_counter()
            client.get("/healthz")
            worst = max(worst, time.perf_counter() - t)
        first.join()
    eg.close()
print(json.dumps({"loaded": loaded, "worst": worst}))
"""


def test_the_first_text_in_the_band_does_not_freeze_the_server():
    """The judge's SDK was imported on the event loop by the first judge call (anthropic
    ~1.3-1.8 s here): every request, /healthz included, waited, and a first request
    under a short --timeout-ms was answered degraded with a working judge."""
    import json
    import subprocess
    import sys

    pytest.importorskip("anthropic")
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, BAND.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"], "the judge's SDK is imported at the first judge call"
    assert got["worst"] < 0.5, f"/healthz waited {got['worst']:.2f} s for the first judge call"
