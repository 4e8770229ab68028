"""The shipped fake scorer and ``Guard.from_scorer``: a guard's windows, batching,
policy and error path with no model, deterministic."""

from __future__ import annotations

import asyncio

import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer, Scorer

LABELS = ("safe", "violence", "hate")


def keywords(**options) -> FakeScorer:
    return FakeScorer.from_keywords(
        {"knife": "violence", "idiots": "hate"}, labels=LABELS, **options
    )


def test_fake_scorer_is_a_scorer() -> None:
    s = keywords()
    assert isinstance(s, Scorer)
    assert (s.labels, s.max_length, s.batch_size, s.provider) == (LABELS, 512, 32, "fake")


def test_windows_overlap_by_stride_and_cover_every_character() -> None:
    s = FakeScorer(lambda t: {}, max_length=10, stride=3)
    text = "abcdefghijklmnopqrstuvwxyz"
    windows = s.encode(text)
    assert all(len(w) <= 10 for w in windows) and len(windows) == 4
    rebuilt = list(windows[0])
    for w in windows[1:]:
        assert w[:3] == rebuilt[-3:]
        rebuilt += w[3:]
    assert "".join(map(chr, rebuilt)) == text
    assert s.encode("short") == [[ord(c) for c in "short"]]
    assert s.last_window(text) == text[-10:]


def test_handler_probabilities_and_the_remainder() -> None:
    g = Guard.from_scorer(FakeScorer(lambda t: {"violence": 0.7, "hate": 0.2}, labels=LABELS))
    r = g.check("anything")
    assert r.scores["violence"] == pytest.approx(0.7) and r.scores["hate"] == pytest.approx(0.2)
    assert r.scores["safe"] == pytest.approx(0.1)  # the first label takes what is left
    assert r.toxic_score == pytest.approx(0.9) and r.triggered == ("violence",)
    assert r.provider == "fake" and r.windows == 1


def test_keywords_are_deterministic_and_case_insensitive() -> None:
    g = Guard.from_scorer(keywords())
    texts = ["how do I sharpen a KNIFE", "people there are all idiots", "bread", ""]
    first = g.check_many(texts)
    assert [r.label for r in first] == ["violence", "hate", "safe", ""]
    assert [r.allowed for r in first] == [False, False, True, True]
    assert first == g.check_many(texts) == [g.check(t) for t in texts]
    assert first[:3] == asyncio.run(g.acheck_many(texts[:3]))


def test_a_keyword_in_the_last_window_decides() -> None:
    g = Guard.from_scorer(keywords(max_length=64), policy=Policy(action="block", max_windows=None))
    text = "bread and butter. " * 40 + "a knife."
    r = g.check(text)
    assert not r.allowed and r.windows > 10 and r.worst_window == r.windows - 1
    first_only = g.with_policy(Policy(max_windows=1, on_error="open"))
    assert first_only.check(text).allowed and first_only.check(text).degraded


@pytest.mark.parametrize(
    "scores",
    [{"nope": 0.5}, {"violence": 1.5}, {"violence": 0.8, "hate": 0.8}],
    ids=["unknown-class", "over-one", "sum-over-one"],
)
def test_bad_handler_output_is_a_degraded_result(scores: dict) -> None:
    g = Guard.from_scorer(FakeScorer(lambda t: scores, labels=LABELS))
    r = g.check("x")
    assert r.degraded and not r.allowed and "ValueError" in r.error


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_a_raising_handler_follows_on_error(on_error: str) -> None:
    def handler(text: str) -> dict[str, float]:
        raise RuntimeError("device lost")

    g = Guard.from_scorer(FakeScorer(handler, labels=LABELS), policy=Policy(on_error=on_error))
    for r in [g.check("x"), *g.check_many(["x", "y"])]:
        assert r.degraded and "device lost" in r.error and r.allowed is (on_error == "open")


def test_from_scorer_defaults_and_overrides() -> None:
    g = Guard.from_scorer(keywords(score=0.4))
    r = g.check("knife")  # 0.4 < the default 0.5, per class and toxic
    assert r.allowed and r.triggered == ()
    strict = Guard.from_scorer(keywords(score=0.4), toxic_threshold=0.3)
    assert strict.check("knife").triggered == ("violence",)  # per class follows toxic
    per = Guard.from_scorer(keywords(score=0.4), thresholds={"violence": 0.35})
    assert per.check("knife").triggered == ("violence",) and not per.check("knife").allowed
    both_safe = Guard.from_scorer(keywords(score=0.4), safe_classes=("safe", "violence"))
    assert both_safe.check("knife").toxic_score == pytest.approx(0.0, abs=1e-9)
    assert "FakeScorer" in repr(g) and g.artifact is None and g.precision is None


def test_from_scorer_refuses_what_it_cannot_use() -> None:
    with pytest.raises(TypeError, match="Scorer"):
        Guard.from_scorer(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="nope"):
        Guard.from_scorer(keywords(), safe_classes=("nope",))
    with pytest.raises(ConfigError, match="nope"):
        Guard.from_scorer(keywords(), thresholds={"nope": 0.5})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        Guard.from_scorer(keywords(), toxic_threshold=1.5)
    with pytest.raises(ConfigError, match="not in labels"):
        FakeScorer.from_keywords({"x": "nope"}, labels=LABELS)
    with pytest.raises(ConfigError, match="stride"):
        FakeScorer(lambda t: {}, max_length=8, stride=8)


def test_decide_never_raises_check_does() -> None:
    g = Guard.from_scorer(keywords(), policy=Policy(raise_on_violation=True))
    assert not g.decide("knife").allowed
    assert not asyncio.run(g.adecide("knife")).allowed
    assert [r.allowed for r in g.decide_many(["knife", "bread"])] == [False, True]
    with pytest.raises(Exception, match="guard blocked the text"):
        g.check("knife")
