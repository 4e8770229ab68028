"""The judge's circuit breaker: the state machine on a fake clock, then the escalating
guard with the real OpenAI SDK over HTTP to the fake LLM server (failing on purpose, or
a closed port), the moderation server's metrics, and the command-line options."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.escalation import EscalatingGuard
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.judge_breaker import JudgeBreaker, Ticket, Unavailable, outage
from guardrail_dro.serve.policy import OnError, Policy
from guardrail_dro.serve.scorer import FakeScorer
from tests.serve.test_escalation import BAND  # the band [0.3, 0.8) those tests use
from tests.serve.test_serve_judge_audit import _probs  # idiot sure, mild in the band

LABELS = ("safe", "toxic")


# ---- the state machine, on a clock the test moves ------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fail(b: JudgeBreaker, why: str = "judge error: HTTP 500") -> None:
    ticket = b.admit()
    assert isinstance(ticket, Ticket)
    b.settle(ticket, why)


def test_failures_in_a_row_open_it_and_an_answer_in_between_resets_the_count():
    clock = Clock()
    b = JudgeBreaker(3, 10.0, clock=clock)
    _fail(b)
    _fail(b)
    ok = b.admit()
    assert isinstance(ok, Ticket) and not ok.probe
    b.settle(ok, None)  # the judge answered: the count starts again
    assert (b.state, b.streak) == ("closed", 0)
    for i in range(3):
        _fail(b, f"judge error: boom {i}")
    assert (b.state, b.opened) == ("open", 1)
    why = b.admit()
    assert isinstance(why, Unavailable) and b.skipped == 1
    assert why == ("judge unavailable: 3 consecutive failures, last: judge error: boom 2; "
                   "retrying in 10 s")  # fmt: skip
    clock.now += 7.5
    assert "retrying in 2.5 s" in b.admit()


def test_one_trial_after_the_cooldown_a_failed_one_doubles_it_up_to_the_cap():
    clock = Clock()
    b = JudgeBreaker(1, 10.0, clock=clock)
    _fail(b)
    waits = []
    for _ in range(5):
        clock.now += b.cooldown_s
        assert b.state == "half-open"
        probe = b.admit()
        assert isinstance(probe, Ticket) and probe.probe
        busy = b.admit()  # only one trial at a time
        assert isinstance(busy, Unavailable) and "a trial call is in flight" in busy
        b.settle(probe, "judge timed out after 30 s")
        waits.append(b.cooldown_s)
    assert waits == [20.0, 40.0, 80.0, 80.0, 80.0]  # 8x the cooldown at most
    assert b.state == "open" and b.streak == 6 and "6 consecutive failures" in b.admit()
    clock.now += b.cooldown_s
    probe = b.admit()
    assert isinstance(probe, Ticket)
    b.settle(probe, None)
    assert (b.state, b.streak, b.cooldown_s) == ("closed", 0, 10.0)


def test_late_results_are_ignored_and_a_cancelled_trial_frees_its_place():
    clock = Clock()
    b = JudgeBreaker(2, 10.0, clock=clock)
    early = [b.admit() for _ in range(3)]  # three calls in flight while closed
    assert all(isinstance(t, Ticket) for t in early)
    b.settle(early[0], "judge error: HTTP 503")  # type: ignore[arg-type]
    b.settle(early[1], "judge error: HTTP 503")  # type: ignore[arg-type]
    assert b.state == "open"
    b.settle(early[2], None)  # type: ignore[arg-type]  # admitted before it opened
    assert b.state == "open"
    clock.now += 10
    probe = b.admit()
    assert isinstance(probe, Ticket) and probe.probe
    b.release(probe)  # cancelled (a close): no outcome, the next call is the trial
    again = b.admit()
    assert isinstance(again, Ticket) and again.probe


def test_no_breaker_with_zero_failures():
    b = JudgeBreaker(0, 10.0)
    for _ in range(20):
        _fail(b)
    assert b.state == "off" and b.skipped == 0


def _answer(outcome: str, status: int | None = None):
    from annotators.base import AnnotationResult

    label = "safe" if outcome == "labelled" else None
    return AnnotationResult(outcome=outcome, annotator="j", label=label, error="x",  # type: ignore[arg-type]
                            status=status)  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "status", "fails"),
    [
        ("labelled", None, False),
        ("refused", None, False),
        ("invalid", None, False),
        ("error", 400, False),
        ("error", 413, False),
        ("error", None, True),
        ("error", 401, True),
        ("error", 429, True),
        ("error", 500, True),
        ("error", 503, True),
    ],
    ids=lambda v: str(v),
)
def test_what_counts_as_the_judge_failing(outcome, status, fails):
    assert (outage(_answer(outcome, status), None) is not None) is fails


def test_a_call_without_an_answer_is_a_failure():
    assert outage(None, "judge timed out after 30 s") == "judge timed out after 30 s"


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"failures": -1}, "breaker_failures"),
        ({"failures": 2.5}, "breaker_failures"),
        ({"failures": True}, "breaker_failures"),
        ({"cooldown_s": 0}, "breaker_cooldown_s"),
        ({"cooldown_s": -1.0}, "breaker_cooldown_s"),
        ({"cooldown_s": float("nan")}, "breaker_cooldown_s"),
        ({"cooldown_s": float("inf")}, "breaker_cooldown_s"),
    ],
    ids=["negative", "fraction", "bool", "zero", "negative-cooldown", "nan", "inf"],
)
def test_bad_settings_are_named(kw, name):
    with pytest.raises(ConfigError, match=name):
        JudgeBreaker(**kw)


# ---- the escalating guard, the real SDK, the fake server -----------------------------
@pytest.fixture
def server():
    from annotators.testing import FakeLLMServer, keyword_handler

    with FakeLLMServer(keyword_handler) as srv:
        yield srv


@pytest.fixture
def cascades():
    made: list[EscalatingGuard] = []

    def make(base_url: str, policy: Policy | None = None, **kw) -> EscalatingGuard:
        from annotators.openai_annotator import OpenAIAnnotator
        from annotators.retry import RetryPolicy

        guard = Guard.from_scorer(FakeScorer(_probs, labels=LABELS), policy=policy)
        judge = OpenAIAnnotator("gpt-4o-mini", api_key="sk-test", base_url=base_url)
        fast = RetryPolicy(max_attempts=2, initial=0.001, max_backoff=0.005, retry_after_cap=0.01)
        made.append(EscalatingGuard(guard, judge, BAND, retry=fast, **kw))
        return made[-1]

    yield make
    for eg in made:
        eg.close()


def _calls(server) -> int:
    return sum(server.calls.values())


def _wait_for(done: Callable[[], bool]) -> None:
    """Poll until ``done()`` (a state reached), failing after a generous 10 s."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["server_error", "rate_limit"])
def test_after_failures_in_a_row_the_band_is_decided_without_a_call(server, cascades, kind):
    from annotators.testing import Fault

    server.add_fault(Fault(kind, times=10_000, retry_after=0))
    eg = cascades(server.openai_base_url, concurrency=1, breaker_failures=3,
                  breaker_cooldown_s=600)  # fmt: skip
    first = [eg.check(f"a mild question {i}") for i in range(3)]
    assert all(o.result.degraded and not o.skipped and o.outcome == "failed" for o in first)
    assert _calls(server) == 6 and eg.breaker.state == "open"  # 3 calls of 2 attempts
    texts = [f"a mild remark {i}" for i in range(5)] + ["what time is it", "you idiot"]
    later = eg.check_many(texts)
    assert _calls(server) == 6  # not one more request reached the judge
    for o in later[:5]:
        assert o.escalated and o.skipped and o.outcome == "skipped" and o.judge is None
        assert o.result.degraded and not o.allowed  # fail closed: the guard's on_error
        error = o.result.error or ""
        assert error.startswith("judge unavailable: 3 consecutive failures, last: judge error")
        assert "retrying in" in error
    calm, sure = later[5:]  # outside the band: the guard's own decision, as ever
    assert not calm.escalated and calm.allowed and not calm.result.degraded
    assert not sure.escalated and not sure.allowed and not sure.result.degraded
    assert (eg.judge_failures, eg.judge_skipped) == (3, 5)
    assert "judge open: 5 skipped" in repr(eg)


def test_a_judge_refusing_connections_trips_it_and_on_error_open_allows(cascades):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eg = cascades(f"http://127.0.0.1:{port}/v1", Policy(on_error=OnError.OPEN), concurrency=1,
                  breaker_failures=2, breaker_cooldown_s=600)  # fmt: skip
    out = eg.check_many([f"a mild question {i}" for i in range(5)])
    assert all(o.allowed and o.result.degraded for o in out)
    assert [o.skipped for o in out].count(True) == 3 and eg.judge_failures == 2
    skipped = next(o for o in out if o.skipped)
    assert "judge unavailable: 2 consecutive failures" in (skipped.result.error or "")


def test_after_the_cooldown_one_trial_call_closes_it(server, cascades):
    from annotators.testing import Fault

    server.add_fault(Fault("server_error", times=4))  # two calls of two attempts fail
    eg = cascades(server.openai_base_url, breaker_failures=2, breaker_cooldown_s=0.2)
    assert all(o.result.degraded for o in eg.check_many(["a mild one", "a mild two"]))
    assert eg.breaker.opened == 1 and _calls(server) == 4
    _wait_for(lambda: eg.breaker.state == "half-open")
    server.latency = 0.3  # the trial is still in flight when the other texts ask
    texts = ["a mild question", "a mild but stupid remark", "a mild three"]
    out = eg.check_many(texts)
    trial = [o for o in out if not o.skipped]
    assert len(trial) == 1 and not trial[0].result.degraded and _calls(server) == 5
    assert all("a trial call is in flight" in (o.result.error or "") for o in out if o.skipped)
    assert eg.breaker.state == "closed"  # the judge answered
    server.latency = 0.0
    again = eg.check_many(texts)
    assert not any(o.result.degraded or o.skipped for o in again)
    assert [o.allowed for o in again] == [True, False, True]


def test_a_failed_trial_opens_it_for_twice_as_long(server, cascades):
    from annotators.testing import Fault

    server.add_fault(Fault("server_error", times=10_000))
    eg = cascades(server.openai_base_url, breaker_failures=1, breaker_cooldown_s=0.2)
    eg.check("a mild one")
    _wait_for(lambda: eg.breaker.state == "half-open")
    trial = eg.check("a mild two")
    assert not trial.skipped and "judge error" in (trial.result.error or "")
    assert eg.breaker.opened == 2 and eg.breaker.cooldown_s == pytest.approx(0.4)
    assert _calls(server) == 4


def test_refusals_and_invalid_replies_never_trip_it(server, cascades):
    from annotators.testing import Fault

    server.add_fault(Fault("malformed", match="garbled", times=100))
    server.add_fault(Fault("content_filter", match="filtered", times=100))
    eg = cascades(server.openai_base_url, concurrency=1, breaker_failures=2)
    texts = ["a mild bomb question", "a mild bomb remark", "a mild garbled reply",
             "a mild garbled one", "a mild filtered one", "a mild filtered two"]  # fmt: skip
    out = [eg.check(t) for t in texts]
    assert all(o.result.degraded and not o.skipped for o in out)
    outcomes = [o.judge.outcome if o.judge else None for o in out]
    assert outcomes == ["refused", "refused", "invalid", "invalid", "refused", "refused"]
    assert eg.breaker.state == "closed" and eg.breaker.streak == 0 and eg.judge_skipped == 0
    assert eg.check("a mild question").allowed  # and the judge is still asked


def test_no_breaker_asks_a_failing_judge_every_time(server, cascades):
    from annotators.testing import Fault

    server.add_fault(Fault("server_error", times=10_000))
    eg = cascades(server.openai_base_url, concurrency=1, breaker_failures=0)
    out = eg.check_many([f"a mild question {i}" for i in range(6)])
    assert not any(o.skipped for o in out) and _calls(server) == 12
    assert eg.breaker.state == "off"


@pytest.mark.asyncio
async def test_calls_cut_off_by_the_callers_deadline_count_as_failures(server, cascades):
    """A server's request deadline (10 s) is below the judge's timeout (30 s): a hung
    judge is only ever seen through calls its callers gave up on."""
    server.latency = 2.0
    eg = cascades(server.openai_base_url, breaker_failures=2, breaker_cooldown_s=600)
    for i in range(2):
        text = f"a mild question {i}"
        r = eg.upper.decide(text)
        (out,) = await eg.resolve([text], [r], deadline=time.perf_counter() + 0.05)
        assert out.result.degraded and "timed out" in (out.result.error or "")
        for _ in range(1000):  # the cancellation reaches the call in a few loop turns
            if eg.breaker.streak == i + 1:
                break
            await asyncio.sleep(0.01)
    assert eg.breaker.state == "open"
    before = _calls(server)
    r = eg.upper.decide("a mild remark")
    (out,) = await eg.resolve(["a mild remark"], [r])  # no deadline: still not called
    assert out.skipped and "before the callers' deadline" in (out.result.error or "")
    assert _calls(server) == before


def test_a_close_cancelling_a_call_is_not_a_failure(server, cascades):
    server.latency = 2.0
    eg = cascades(server.openai_base_url, breaker_failures=1)
    got: list[BaseException] = []

    def check() -> None:
        try:
            eg.check("a mild question")
        except RuntimeError as exc:
            got.append(exc)

    worker = threading.Thread(target=check)
    worker.start()
    _wait_for(lambda: eg.memo.in_flight == 1)
    eg.close()
    worker.join(timeout=10)
    assert not worker.is_alive() and len(got) == 1  # the check was cancelled
    assert eg.breaker.state == "closed" and eg.breaker.streak == 0


def test_bad_breaker_arguments_are_named(server, cascades):
    url = server.openai_base_url
    with pytest.raises(ConfigError, match="breaker_failures"):
        cascades(url, breaker_failures=-1)
    with pytest.raises(ConfigError, match="breaker_cooldown_s"):
        cascades(url, breaker_cooldown_s=0)


# ---- the moderation server: skipped texts and the breaker in /metrics -----------------
def test_the_server_counts_skipped_texts_and_exports_the_breaker(server, cascades):
    import httpx2
    import openai

    from annotators.testing import Fault
    from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app

    server.add_fault(Fault("server_error", times=10_000))
    eg = cascades(server.openai_base_url, breaker_failures=1, breaker_cooldown_s=600)
    app = create_app(eg.guard, ServeConfig(timeout_ms=10_000), eg)
    with BackgroundServer(app) as url:
        closed = httpx2.get(f"{url}/metrics").text
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        failed = api.moderations.create(input="a mild question").results[0]
        skipped, calm = api.moderations.create(input=["a mild remark", "hello"]).results
        metrics = httpx2.get(f"{url}/metrics").text
    assert "guardrail_judge_breaker_open 0.0" in closed
    assert failed.flagged and "judge error" in dict(failed.guardrail)["error"]
    assert skipped.flagged and dict(skipped.guardrail)["degraded"]
    assert "judge unavailable: 1 consecutive failure," in dict(skipped.guardrail)["error"]
    assert not calm.flagged and _calls(server) == 2
    assert 'guardrail_escalated_total{outcome="failed"} 1.0' in metrics
    assert 'guardrail_escalated_total{outcome="skipped"} 1.0' in metrics
    assert "guardrail_judge_breaker_open 1.0" in metrics


# ---- the command line -----------------------------------------------------------------
OPTIONS = ("--judge-concurrency", "--judge-breaker", "--judge-cooldown")


@pytest.mark.parametrize("command", ["check", "serve"])
def test_the_options_are_in_the_help(command):
    from guardrail_dro.cli import app

    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert all(o in res.output for o in OPTIONS)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--judge-concurrency", "0"), ("--judge-breaker", "-1"), ("--judge-cooldown", "0")],
    ids=["no-concurrency", "negative-breaker", "no-cooldown"],
)
def test_bad_option_values_exit_2_naming_the_option(tmp_path, option, value):
    from guardrail_dro.cli import app

    res = CliRunner().invoke(app, ["check", "--guard", str(tmp_path), option, value, "hi"],
                             env={"COLUMNS": "200"})  # fmt: skip
    assert res.exit_code == 2 and f"'{option}'" in res.output, res.output


def test_check_threads_the_options_to_the_escalating_guard(guard_dir, tmp_path, monkeypatch):
    """Five texts in the band, a judge slower than --judge-timeout, one call at a time:
    two time out, then the breaker decides the other three without a call."""
    from annotators.testing import FakeLLMServer, Fault, keyword_handler
    from guardrail_dro.cli import app

    band = tmp_path / "band.json"
    BAND.model_copy(update={"low": 0.0, "high": 2.0}).save(band)  # every text in it
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": f"message {i}"}) + "\n" for i in range(5)))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer(keyword_handler) as srv:
        srv.add_fault(Fault("slow", times=100, delay=0.5))
        args = ["check", "--guard", str(guard_dir), "--escalate", str(band), "--judge",
                "openai:gpt-4o-mini", "--base-url", srv.openai_base_url, "--file", str(texts),
                "--judge-timeout", "0.1", "--judge-concurrency", "1", "--judge-breaker", "2",
                "--judge-cooldown", "600"]  # fmt: skip
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        errors = [json.loads(line)["error"] for line in res.stdout.splitlines()]
        assert len(errors) == 5 and _calls(srv) <= 2
        assert errors.count("judge timed out after 0.1 s") == 2
        assert sum(e.startswith("judge unavailable: 2 consecutive failures") for e in errors) == 3
        res = CliRunner().invoke(app, [*args[:-2], "--judge-cooldown", "inf"])
    assert res.exit_code == 2 and "--judge-cooldown: a finite number" in res.output, res.output


def test_the_options_default_to_the_library_defaults():
    import inspect

    from guardrail_dro.cli.escalate import JudgeOptions

    params = inspect.signature(EscalatingGuard).parameters
    opts = JudgeOptions()
    assert opts.judge_concurrency == params["concurrency"].default == 8
    assert opts.judge_breaker == params["breaker_failures"].default == 5
    assert opts.judge_cooldown == params["breaker_cooldown_s"].default == 30.0
