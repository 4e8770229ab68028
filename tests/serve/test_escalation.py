"""Escalation to an LLM judge: the band's choice (exact, against brute force) and the
cascade at run time, with the real OpenAI SDK over HTTP to the fake server and a real
ONNX guard for the calibration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from guardrail_dro.errors import ConfigError, DataError
from guardrail_dro.serve.escalation import (
    EscalatingGuard,
    EscalationBand,
    band_predictions,
    calibrate_escalation,
    choose_band,
)
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import OnError, Policy
from guardrail_dro.serve.scorer import FakeScorer


def _split(n: int, seed: int, judge_acc: float = 0.85):
    rng = np.random.default_rng(seed)
    toxic = rng.random(n) < 0.6
    scores = np.clip(rng.normal(np.where(toxic, 0.65, 0.4), 0.2), 0, 1).round(3)
    judge = np.where(rng.random(n) < judge_acc, toxic, ~toxic)
    return scores, toxic, judge


def _brute(scores, toxic, judge, target, budget):
    """Lowest FPR over every (low, high) pair of score values (and above them all)."""
    edges = [*np.unique(scores).tolist(), 2.0]
    best = None
    for lo, hi in itertools.combinations_with_replacement(edges, 2):
        blocked, deferred = band_predictions(scores, judge, lo, hi)
        rec, fpr = blocked[toxic].mean(), blocked[~toxic].mean()
        if rec >= target and deferred.mean() <= budget + 1e-12:
            best = fpr if best is None else min(best, fpr)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [0.0, 0.1, 0.3])
def test_band_is_the_best_one_and_keeps_its_promises(seed, budget):
    scores, toxic, judge = _split(60, seed)
    band = choose_band(scores, toxic, judge, target_recall=0.8, max_defer=budget)
    blocked, deferred = band_predictions(scores, judge, band.low, band.high)
    # What the band says about its split is what applying it gives.
    assert band.valid.recall == pytest.approx(blocked[toxic].mean())
    assert band.valid.fpr == pytest.approx(blocked[~toxic].mean())
    assert band.valid.deferred == pytest.approx(deferred.mean())
    assert band.valid.recall >= 0.8 and band.valid.deferred <= budget
    assert band.valid.fpr == pytest.approx(_brute(scores, toxic, judge, 0.8, budget))
    if budget == 0:
        assert band.low == band.high and band.valid == band.guard_alone


def test_a_budget_never_costs_and_a_good_judge_pays():
    scores, toxic, judge = _split(500, 3, judge_acc=0.95)
    fprs = [
        choose_band(scores, toxic, judge, target_recall=0.9, max_defer=b).valid.fpr
        for b in (0.0, 0.1, 0.2, 0.4)
    ]
    assert fprs == sorted(fprs, reverse=True) and fprs[-1] < fprs[0] - 0.1
    perfect = choose_band(scores, toxic, toxic, target_recall=0.9, max_defer=1.0)
    # FPR 0 at the recall asked for, with the fewest judge calls that give it.
    assert perfect.valid.fpr == 0.0 and 0.9 <= perfect.valid.recall < 1.0
    assert perfect.valid.deferred < 1.0


def test_band_notes_say_what_the_band_was_chosen_on():
    from guardrail_dro.serve.escalation_band import band_notes

    scores, toxic, judge = _split(500, 3, judge_acc=0.95)
    band = choose_band(scores, toxic, judge, target_recall=0.9, max_defer=0.2)
    assert band_notes(500, toxic, band) == []  # enough texts of both kinds, all kept
    dropped = band_notes(560, toxic, band, unlabelled=54)
    assert dropped == ["the band is chosen on 500 of 560 texts (54 not labelled by the "
                       "judge, 6 not scored by the guard)"]  # fmt: skip
    few = band_notes(6, toxic[:6], choose_band(scores[:6], toxic[:6], judge[:6]))
    assert any("6 texts" in n and "too few" in n for n in few)
    greedy = choose_band(scores, toxic, judge, target_recall=1.0, max_defer=0.0)
    assert greedy.valid.fpr > 0.5
    assert any("lower --target-recall" in n for n in band_notes(500, toxic, greedy))


def test_ties_are_never_split():
    scores = np.array([0.2, 0.5, 0.5, 0.5, 0.9])
    toxic = np.array([False, True, False, True, True])
    band = choose_band(scores, toxic, toxic, target_recall=1.0, max_defer=1.0)
    blocked, deferred = band_predictions(scores, toxic, band.low, band.high)
    assert len(set(deferred[1:4])) == 1  # the three 0.5s share a fate
    assert (blocked == toxic).all()


def _pairwise(scores, toxic, judge, target, budget):
    """(FPR, deferred, recall) of the best band over every pair of cut points at once
    (quadratic memory: the reference for the binary search)."""
    o = np.argsort(scores, kind="stable")
    s, y, j = scores[o], toxic[o], judge[o]
    cuts = np.flatnonzero(np.r_[True, s[1:] > s[:-1], True])

    def prefix(m):
        return np.r_[0, np.cumsum(m)][cuts]

    pos, neg, jp, jn = prefix(y), prefix(~y), prefix(y & j), prefix(~y & j)
    lo, hi = np.meshgrid(np.arange(len(cuts)), np.arange(len(cuts)), indexing="ij")
    tp = y.sum() - pos[hi] + jp[hi] - jp[lo]
    fp = (~y).sum() - neg[hi] + jn[hi] - jn[lo]
    d = cuts[hi] - cuts[lo]
    ok = (lo <= hi) & (tp >= np.ceil(target * y.sum() - 1e-9))
    ok &= d <= np.floor(budget * len(s) + 1e-9)
    k = np.lexsort((-tp[ok], d[ok], fp[ok]))[0]
    return fp[ok][k] / (~y).sum(), d[ok][k] / len(s), tp[ok][k] / y.sum()


@pytest.mark.parametrize("seed", range(4))
def test_the_search_is_exact_on_many_distinct_scores(seed):
    scores, toxic, judge = _split(1500, seed, judge_acc=0.8)
    scores = scores + np.random.default_rng(seed).random(1500) * 1e-3  # ~1500 distinct
    band = choose_band(scores, toxic, judge, target_recall=0.9, max_defer=0.25)
    got = (band.valid.fpr, band.valid.deferred, band.valid.recall)
    assert got == pytest.approx(_pairwise(scores, toxic, judge, 0.9, 0.25))
    alone = _pairwise(scores, toxic, judge, 0.9, 0.0)
    assert band.guard_alone is not None and band.guard_alone.fpr == pytest.approx(alone[0])


def test_bad_targets_and_splits_are_named():
    scores, toxic, judge = _split(50, 0)
    with pytest.raises(ConfigError, match="max_defer"):
        choose_band(scores, toxic, judge, max_defer=1.5)
    everything = choose_band(scores, toxic, np.zeros(50, bool), target_recall=1.0, max_defer=0)
    assert everything.valid.recall == 1.0 and everything.low == everything.high
    with pytest.raises(DataError, match="safe and toxic"):
        choose_band(scores, np.ones(50, bool), judge)
    with pytest.raises(DataError, match="length"):
        choose_band(scores, toxic[:-1], judge)
    with pytest.raises(DataError, match="1 toxic scores are not finite"):
        choose_band(np.r_[scores[:-1], np.nan], toxic, judge)


# ---- run time: a fake-scored guard, the real OpenAI SDK, the fake LLM server ----------
LABELS = ("safe", "toxic")


def _probs(text: str) -> dict[str, float]:
    """'idiot' is sure, 'mild' is unsure (in the band), 'edge' sits on the band's lower
    edge (0.3), the rest is clearly safe."""
    if "idiot" in text:
        return {"toxic": 0.95}
    if "mild" in text:
        return {"toxic": 0.5}
    if "edge" in text:
        return {"toxic": 0.3}
    return {"toxic": 0.05}


BAND = EscalationBand(
    low=0.3,
    high=0.8,
    judge="openai:gpt-4o-mini",
    target_recall=0.9,
    max_defer=0.2,
    valid={"recall": 0.9, "fpr": 0.2, "deferred": 0.15, "items": 100},
)


def _cascade(server, policy: Policy | None = None, band=BAND, scorer=None, **kw):
    from annotators.openai_annotator import OpenAIAnnotator
    from annotators.retry import RetryPolicy

    scorer = scorer or FakeScorer(_probs, labels=LABELS)
    guard = Guard.from_scorer(scorer, policy=policy)
    judge = OpenAIAnnotator("gpt-4o-mini", api_key="sk-test", base_url=server.openai_base_url)
    fast = RetryPolicy(max_attempts=2, initial=0.001, max_backoff=0.005, retry_after_cap=0.01)
    made = EscalatingGuard(guard, judge, band, retry=fast, **kw)
    _MADE.append(made)
    return made


_MADE: list[EscalatingGuard] = []


@pytest.fixture(autouse=True)
def _close_cascades():
    """Close every cascade a test made: their sync loops and the judge's connections."""
    yield
    while _MADE:
        _MADE.pop().close()


@pytest.fixture
def server():
    from annotators.testing import FakeLLMServer, keyword_handler

    with FakeLLMServer(keyword_handler) as srv:
        yield srv


def test_only_the_band_reaches_the_judge_and_its_label_decides(server):
    eg = _cascade(server)
    texts = ["what time is it", "you idiot", "a mild but stupid remark", "a mild question"]
    out = eg.check_many(texts)
    assert [o.escalated for o in out] == [False, False, True, True]
    assert [o.allowed for o in out] == [True, False, False, True]
    assert sum(server.calls.values()) == 2  # the sure texts never cost a call
    blocked = out[2].result
    assert blocked.action == "replace" and blocked.label == "toxic" and not blocked.degraded
    assert out[2].guard.allowed  # the guard alone, at the band's upper edge, let it pass
    assert out[2].judge is not None and out[2].judge.label == "toxic"
    assert eg.check("you idiot").result == out[1].result  # outside the band: the guard's
    assert (eg.checks, eg.escalations, eg.judge_failures) == (5, 2, 0)


def test_a_judge_that_cannot_answer_leaves_it_to_the_error_policy(server):
    closed = _cascade(server).check("a mild bomb question")  # the judge refuses
    assert closed.escalated and not closed.allowed and closed.result.degraded
    assert "refused" in (closed.result.error or "")
    opened = _cascade(server, Policy(on_error=OnError.OPEN)).check("a mild bomb question")
    assert opened.allowed and opened.result.degraded


def test_the_edges_belong_where_the_band_says(server):
    eg = _cascade(server)
    edge = eg.upper.decide("an edge case, stupid").toxic_score
    on_edge = _cascade(server, band=BAND.model_copy(update={"low": edge}))
    out = on_edge.check("an edge case, stupid")  # exactly the lower edge: the judge's
    assert out.escalated and not out.allowed and not out.result.degraded
    top = _cascade(server, band=BAND.model_copy(update={"high": eg.upper.decide("you idiot")
                                                        .toxic_score}))  # fmt: skip
    assert not top.check("you idiot").escalated  # exactly the upper edge: the guard's


def test_a_long_texts_most_toxic_window_decides(server):
    scorer = FakeScorer(_probs, labels=LABELS, max_length=24, stride=4)
    text = "what a calm afternoon " * 3 + "a mild but stupid remark " + "so calm " * 3
    eg = _cascade(server, scorer=scorer)
    assert eg.upper.decide(text).windows > 2
    out = eg.check(text)
    assert out.escalated and out.result.toxic_score == pytest.approx(0.5)
    assert not out.allowed  # the judge saw the whole text ("stupid")


def test_a_failed_judge_fails_closed_even_when_violations_are_only_flagged(server):
    out = _cascade(server, Policy(action="flag")).check("a mild bomb question")
    assert out.result.degraded and not out.allowed and out.result.action == "block"
    flagged = _cascade(server, Policy(action="flag")).check("a mild but stupid remark")
    assert flagged.allowed and flagged.result.action == "flag"  # judged: the policy's action


def test_a_text_asked_again_reuses_the_judges_answer(server):
    eg = _cascade(server)
    first = eg.check("a mild but stupid remark")
    again = eg.check_many(["a mild but stupid remark", "a mild question", "a mild question"])
    assert sum(server.calls.values()) == 2  # one call per distinct text in the band
    assert again[0].remembered and not first.remembered and again[0].judge == first.judge
    assert again[0].result.allowed is first.result.allowed is False
    assert [o.allowed for o in again[1:]] == [True, True]  # duplicates in flight: one call
    assert (eg.escalations, eg.remembered) == (4, 1) and len(eg.memo) == 2
    forgetful = _cascade(server, memo=0)
    forgetful.check("a mild but stupid remark")
    forgetful.check("a mild but stupid remark")
    assert sum(server.calls.values()) == 4 and len(forgetful.memo) == 0


def test_the_memo_keeps_answers_only_and_forgets_the_least_recent(server):
    eg = _cascade(server, memo=2)
    refused = eg.check("a mild bomb question")  # the keyword judge refuses it
    assert refused.result.degraded
    eg.check("a mild bomb question")  # a failure is asked again, never remembered
    assert sum(server.calls.values()) == 2 and len(eg.memo) == 0
    for text in ("a mild one", "a mild two", "a mild one", "a mild three"):
        eg.check(text)
    assert sum(server.calls.values()) == 5  # "one" was remembered, then used again
    assert eg.memo.recall("a mild two") is None  # the least recently used went first
    assert eg.memo.recall("a mild one") is not None
    with pytest.raises(ConfigError, match="memo"):
        _cascade(server, memo=-1)


@pytest.mark.asyncio
async def test_a_slow_call_shared_in_flight_keeps_each_waiters_time_limit(server):
    import asyncio
    import time

    server.latency = 0.4
    eg = _cascade(server)
    r = eg.upper.decide("a mild question")
    near = time.perf_counter() + 0.1
    hurried, patient = await asyncio.gather(
        eg.resolve(["a mild question"], [r], deadline=near),
        eg.resolve(["a mild question"], [r]),
    )
    assert hurried[0].result.degraded and "timed out" in (hurried[0].result.error or "")
    assert patient[0].allowed and not patient[0].result.degraded
    assert sum(server.calls.values()) == 1 and eg.memo.recall("a mild question") is not None


@pytest.mark.asyncio
async def test_a_call_no_one_waits_for_is_cancelled(server):
    import asyncio
    import time

    server.latency = 0.5
    eg = _cascade(server)
    r = eg.upper.decide("a mild question")
    first = await eg.resolve(["a mild question"], [r], deadline=time.perf_counter() + 0.1)
    assert first[0].result.degraded
    await asyncio.sleep(0.05)  # the cancellation reaches the call in a few loop turns
    assert eg.memo.in_flight == 0  # cut off with its caller, not run on for 0.5 s
    await asyncio.sleep(0.6)  # had it run on, it would have answered by now
    assert len(eg.memo) == 0
    before = sum(server.calls.values())  # 0 or 1: the cut-off call may never have landed
    again = await eg.resolve(["a mild question"], [r])
    assert not again[0].remembered and again[0].allowed
    assert sum(server.calls.values()) == before + 1  # a call of its own


@pytest.mark.asyncio
async def test_a_text_arriving_as_a_shared_call_is_cancelled_gets_its_own_call(server):
    import time

    server.latency = 0.5
    eg = _cascade(server, concurrency=1, timeout_s=0.2)
    r = eg.upper.decide("a mild question")
    # the second copy waits for the gate while the first gives up and cancels the call
    both = await eg.resolve(["a mild question"] * 2, [r, r])
    assert all(o.result.degraded and "timed out" in (o.result.error or "") for o in both)
    patient = _cascade(server)
    cut = await patient.resolve(["a mild remark"], [r], deadline=time.perf_counter() + 0.1)
    retried = await patient.acheck("a mild remark")  # at once: a call of its own
    assert cut[0].result.degraded and retried.allowed and not retried.result.degraded


@pytest.mark.asyncio
async def test_aclose_closes_the_judge_of_an_async_only_cascade(server):
    eg = _cascade(server)
    assert (await eg.acheck("a mild question")).escalated
    assert eg.judge._clients._client is not None  # the SDK client of this loop
    await eg.aclose()
    assert eg.judge._clients._client is None


def test_a_loop_thread_refuses_to_close_from_inside_its_own_loop():
    from guardrail_dro.serve.judging import LoopThread

    lt = LoopThread("t")

    async def closes_itself() -> None:
        lt.close(asyncio_sleep0)

    with pytest.raises(RuntimeError, match="from inside a call on its own loop"):
        lt.run(closes_itself())
    assert lt.run(asyncio_sleep0()) is None and lt.close(asyncio_sleep0)
    assert not lt.close(asyncio_sleep0)  # nothing running any more


async def asyncio_sleep0() -> None:
    import asyncio

    await asyncio.sleep(0)


def test_closing_while_a_sync_check_waits_raises_instead_of_hanging(server):
    import threading
    import time

    server.latency = 2.0
    eg = _cascade(server)
    got: list[BaseException] = []

    def worker() -> None:
        try:
            eg.check("a mild question")
        except RuntimeError as exc:
            got.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    deadline = time.monotonic() + 5
    while eg.memo.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    eg.close()
    t.join(timeout=5)
    assert not t.is_alive() and len(got) == 1 and "closed" in str(got[0])
    assert eg.memo.in_flight == 0
    server.latency = 0.0
    assert eg.check("a mild question").allowed  # a later check starts a new loop


@pytest.mark.asyncio
async def test_no_time_left_means_no_call(server):
    import time

    eg = _cascade(server)
    r = eg.upper.decide("a mild question")
    (out,) = await eg.resolve(["a mild question"], [r], deadline=time.perf_counter() - 1)
    assert out.escalated and not out.allowed and "no time left" in (out.result.error or "")
    assert sum(server.calls.values()) == 0


def test_a_slow_judge_is_cut_off(server):
    server.latency = 0.5
    out = _cascade(server, timeout_s=0.05).check("a mild question")
    assert not out.allowed and out.result.degraded and "timed out" in (out.result.error or "")
    assert out.judge is None


@pytest.mark.asyncio
async def test_async_checks_and_sync_checks_inside_a_running_loop(server):
    eg = _cascade(server)
    res = await eg.acheck("a mild but stupid remark")
    assert res.escalated and not res.allowed
    inside = eg.check("a mild but stupid remark")  # a sync rail in async code: it blocks
    assert inside.escalated and not inside.allowed
    many = await eg.acheck_many(["a mild question"] * 3)
    assert all(r.allowed and r.escalated for r in many)


def test_sync_checks_from_many_threads_share_one_judge_client(server):
    from concurrent.futures import ThreadPoolExecutor

    server.latency = 0.02
    eg = _cascade(server)
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(eg.check, ["a mild but stupid remark", "a mild question"] * 12))
    assert all(o.escalated and not o.result.degraded for o in out)
    assert [o.allowed for o in out] == [False, True] * 12


def test_a_judge_that_raises_is_left_to_the_error_policy(server):
    class Broken:
        name, model = "broken", "none"

        def cache_params(self):
            return {}

        async def call(self, prompt, schema):
            raise RuntimeError("no SDK here")

        async def aclose(self):
            return None

    eg = _cascade(server)
    broken = EscalatingGuard(eg.guard, Broken(), BAND)
    _MADE.append(broken)
    out = broken.check("a mild question")
    assert out.escalated and not out.allowed and out.result.degraded
    assert "no SDK here" in (out.result.error or "")


def test_a_score_of_exactly_one_under_an_open_top_band_goes_to_the_judge(server):
    class Certain(FakeScorer):
        def logits(self, rows):  # P(safe) = exp(-60): 1 - P(safe) is exactly 1.0
            return np.array([[-60.0, 0.0]] * len(rows))

    open_top = BAND.model_copy(update={"high": 2.0})
    eg = _cascade(server, band=open_top, scorer=Certain(_probs, labels=LABELS))
    out = eg.check("a harmless question")  # the judge (keyword rule) says safe
    assert out.result.toxic_score == 1.0 and out.escalated and out.allowed
    assert out.result.triggered == () and out.result.to_openai_moderation()["flagged"] is False


def test_a_three_class_text_on_the_lower_edge_keeps_its_own_scores(server):
    def probs(text):
        return {"a": 0.32, "b": 0.2}

    scorer = FakeScorer(probs, labels=("safe", "a", "b"))
    probe = Guard.from_scorer(scorer)
    edge = probe.decide("x").toxic_score
    band = BAND.model_copy(update={"low": edge})
    eg = _cascade(server, band=band, scorer=scorer)  # the judge's "safe"/"toxic": "toxic" is
    out = eg.check("a stupid question")  # not a class here: invalid, fail closed
    assert out.escalated and not out.allowed and out.result.degraded
    assert out.result.toxic_score == edge and out.result.label == "a"


# ---- calibration on a real ONNX guard ----------------------------------------------
def test_calibration_uses_the_guards_own_scores(guard, synthetic):
    valid = synthetic["valid"]
    judge = valid.annotators[0]
    band = calibrate_escalation(guard, valid, judge, target_recall=0.8, max_defer=0.3)
    scores = np.array([r.toxic_score for r in guard.decide_many(valid.texts)])
    safe = np.asarray(valid.schema.safe_mask())
    labels = valid.label_matrix([judge])[:, 0]
    keep = labels >= 0
    toxic = ~safe[valid.gold_array()]
    blocked, deferred = band_predictions(scores[keep], ~safe[labels[keep]], band.low, band.high)
    assert band.valid.items == int(keep.sum())
    assert band.valid.recall == pytest.approx(blocked[toxic[keep]].mean())
    assert band.valid.deferred == pytest.approx(deferred.mean()) and band.judge == judge
    with pytest.raises(DataError, match="no annotator 'gpt-9'"):
        calibrate_escalation(guard, valid, "gpt-9")


def test_band_files_round_trip_and_bad_ones_are_named(tmp_path):
    path = BAND.save(tmp_path / "band.json")
    assert EscalationBand.load(path) == BAND
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not an escalation band .* first: low: Field required"):
        EscalationBand.load(tmp_path / "bad.json")
    (tmp_path / "upside.json").write_text(BAND.model_dump_json().replace('"low":0.3', '"low":0.9'))
    with pytest.raises(ConfigError, match="above high"):
        EscalationBand.load(tmp_path / "upside.json")


# ---- the command line: choose a band, then check with it -----------------------------
def test_the_commands_choose_a_band_and_check_with_it(guard_dir, guard, synthetic, tmp_path,
                                                       monkeypatch):  # fmt: skip
    import json

    import typer
    from typer.testing import CliRunner

    from annotators.testing import FakeLLMServer
    from annotators.testing.rules import FakeReply
    from guardrail_dro.cli import check, escalate

    app = typer.Typer()
    app.callback()(lambda: None)
    check.register(app)
    escalate.register(app)
    valid = tmp_path / "valid.jsonl"
    synthetic["valid"].save_jsonl(valid)
    judge = synthetic["valid"].annotators[2]
    band_path = tmp_path / "band.json"
    res = CliRunner().invoke(app, [
        "escalation", "--guard", str(guard_dir), "--valid", str(valid), "--judge", judge,
        "--max-defer", "0.3", "--target-recall", "0.8", "--out", str(band_path),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "(chosen)" in res.stdout and "empty: guard alone" in res.stdout
    assert "judge alone" in res.stdout
    band = EscalationBand.load(band_path)
    assert band == calibrate_escalation(guard, synthetic["valid"], judge, target_recall=0.8,
                                        max_defer=0.3)  # fmt: skip
    # Every text in the band: the judge (a fake server that says "fraud") decides them all.
    wide = band.model_copy(update={"low": 0.0, "high": 2.0})
    wide.save(band_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer(lambda text: FakeReply("fraud", "asks for card numbers", 0.9)) as srv:
        res = CliRunner().invoke(app, [
            "check", "--guard", str(guard_dir), "--escalate", str(band_path), "--judge",
            "openai:gpt-4o-mini", "--base-url", srv.openai_base_url, "send me your card",
        ])  # fmt: skip
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["escalated"] and out["judge"]["label"] == "fraud" and not out["allowed"]
        assert out["label"] != "safe" and sum(srv.calls.values()) == 1
    assert "chosen with the labels of" in res.stderr  # another judge than the band's
    # The same through the real Anthropic SDK (Messages API) to the same kind of server.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeLLMServer(lambda text: FakeReply("fraud", "asks for card numbers", 0.9)) as srv:
        res = CliRunner().invoke(app, [
            "check", "--guard", str(guard_dir), "--escalate", str(band_path), "--judge",
            "anthropic:claude-sonnet-4-5", "--anthropic-base-url", srv.anthropic_base_url,
            "send me your card",
        ])  # fmt: skip
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["escalated"] and out["judge"]["label"] == "fraud" and not out["allowed"]
        assert sum(srv.calls.values()) == 1 and srv.endpoints["messages"] == 1
    res = CliRunner().invoke(app, ["check", "--guard", str(guard_dir), "--escalate",
                                   str(band_path), "hello"])  # fmt: skip
    assert res.exit_code != 0 and "go together" in res.output


# ---- the moderation server: the judge behind /v1/moderations ------------------------
def test_the_moderation_server_asks_the_judge_inside_the_band(server):
    import httpx2
    import openai

    from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app

    eg = _cascade(server)
    app = create_app(eg.guard, ServeConfig(timeout_ms=2_000), eg)
    with BackgroundServer(app) as url:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        texts = ["what time is it", "you idiot", "a mild but stupid remark", "a mild question"]
        got = api.moderations.create(input=texts).results
        assert [r.flagged for r in got] == [False, True, True, False]
        assert sum(server.calls.values()) == 2
        assert dict(got[2].guardrail)["label"] == "toxic"
        assert [dict(r.guardrail)["escalated"] for r in got] == [False, False, True, True]
        again = api.moderations.create(input="a mild but stupid remark").results[0]
        assert again.flagged and sum(server.calls.values()) == 2  # from the memo
        server.latency = 3.0  # slower than the request's 2 s: cut off, fail closed
        slow = api.moderations.create(input="another mild question").results[0]
        assert slow.flagged and dict(slow.guardrail)["degraded"]
        assert "judge timed out" in dict(slow.guardrail)["error"]
        metrics = httpx2.get(f"{url}/metrics").text
    assert 'guardrail_escalated_total{outcome="judged"} 2.0' in metrics
    assert 'guardrail_escalated_total{outcome="failed"} 1.0' in metrics
    assert 'guardrail_escalated_total{outcome="remembered"} 1.0' in metrics
    other = Guard.from_scorer(FakeScorer(_probs, labels=LABELS))
    with pytest.raises(ConfigError, match="must wrap the guard served"):
        create_app(other, ServeConfig(), eg)


# ---- the chat rails: a wrapped OpenAI client whose input rail asks the judge --------
def test_a_wrapped_client_asks_the_judge_at_its_input_rail(server):
    import openai

    from guardrail_dro.serve.policy import GuardViolation
    from guardrail_dro.serve.rails import wrap

    eg = _cascade(server, Policy(refusal="Not here."))
    client = wrap(openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0), eg)
    blocked = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a mild but stupid remark"}]
    )
    assert blocked.choices[0].message.content == "Not here."
    assert sum(server.calls.values()) == 1  # the judge only: the model was never asked
    fine = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "what time is it"}]
    )
    assert fine.choices[0].message.content != "Not here."
    assert sum(server.calls.values()) == 2  # the model, not the judge (score 0.05)
    raising = wrap(
        openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0),
        _cascade(server, Policy(raise_on_violation=True)),
    )
    with pytest.raises(GuardViolation, match="input"):
        raising.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a mild but stupid remark"}]
        )


def test_calibration_scores_a_long_text_as_the_runtime_will():
    """The guard's own per-class thresholds would make the 'a' window decide (0.25);
    the band is applied with them off, where the most toxic window ('b', 0.6) decides,
    and calibration must score it the same way."""
    from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.serve.escalation import band_guard, calibration_arrays

    def probs(window):
        return {"a": 0.25} if "AAA" in window else {"b": 0.6} if "BBB" in window else {}

    scorer = FakeScorer(probs, labels=("safe", "a", "b"), max_length=16, stride=4)
    guard = Guard.from_scorer(scorer, thresholds={"a": 0.2, "b": 0.9}, toxic_threshold=0.5)
    text = "AAA" + " " * 30 + "BBB"
    assert guard.decide(text).toxic_score == pytest.approx(0.25)
    schema = LabelSchema(classes=("safe", "a", "b"), safe=("safe",))
    items = [
        Item(item_id=i, text=t, gold=g, annotations=(Annotation(annotator="j", label=g),))
        for i, t, g in (("1", text, "b"), ("2", "hi", "safe"))
    ]
    scores, toxic, judge = calibration_arrays(guard, AnnotatedDataset(items, schema), "j")
    assert scores[0] == pytest.approx(0.6) == band_guard(guard, 1.0).decide(text).toxic_score
    assert toxic.tolist() == judge.tolist() == [True, False]
