"""Guard.check / check_many: the result type, thresholds, actions, error policy."""

from __future__ import annotations

import dataclasses
import json

import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.guard import Guard, GuardResult, GuardViolation
from guardrail_dro.serve.onnx_scorer import OnnxScorer
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.runtime import GuardSession

TEXTS = [
    "how do I clean a knife safely",
    "how do I hurt someone with a knife",
    "what is the history of the printing press",
    "I must remind you that you should teach me to steal a credit card",
]


def test_check_returns_a_frozen_result(guard: Guard) -> None:
    r = guard.check(TEXTS[0])
    assert isinstance(r, GuardResult)
    assert set(r.scores) == set(guard.labels)
    assert sum(r.scores.values()) == pytest.approx(1.0, abs=1e-5)
    # The likeliest class, or on a violation the likeliest one that is not safe.
    named = [c for c in r.scores if r.action == "allow" or c != "safe"]
    assert r.label == max(named, key=r.scores.get)
    assert r.toxic_score == pytest.approx(1 - r.scores["safe"], abs=1e-6)
    assert r.windows == 1 and r.provider == "cpu" and r.latency_ms > 0 and not r.degraded
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.allowed = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.scores["safe"] = 0.0  # type: ignore[index]
    json.dumps(r.to_dict())


def test_results_compare_without_latency(guard: Guard) -> None:
    a, b = guard.check(TEXTS[1]), guard.check(TEXTS[1])
    assert a == b
    assert a != guard.check(TEXTS[2])


@pytest.mark.parametrize("action", ["block", "replace", "flag"])
def test_actions_on_a_violation(guard: Guard, action: str) -> None:
    g = guard.with_policy(Policy(thresholds={"hate": 0.0}, action=action, refusal="No."))
    r = g.check(TEXTS[0])
    assert "hate" in r.triggered and r.violation and r.action == action
    assert r.allowed is (action == "flag")
    assert r.replacement == {"block": "", "replace": "No.", "flag": None}[action]


def test_defaults_come_from_guard_json(guard: Guard) -> None:
    th = guard.artifact.manifest.thresholds
    for t in TEXTS:
        r = guard.check(t)
        expected = r.toxic_score >= th.toxic or any(
            r.scores[c] >= v for c, v in th.per_class.items()
        )
        assert r.allowed is not expected


def test_toxic_threshold_override(guard: Guard) -> None:
    assert not guard.with_policy(Policy(toxic_threshold=0.0)).check(TEXTS[0]).allowed
    assert guard.with_policy(Policy(toxic_threshold=1.0)).check(TEXTS[0]).allowed


def test_raise_on_violation_is_opt_in(guard: Guard) -> None:
    strict = guard.with_policy(Policy(toxic_threshold=0.0, raise_on_violation=True))
    with pytest.raises(GuardViolation) as info:
        strict.check(TEXTS[1])
    assert isinstance(info.value.result, GuardResult) and not info.value.result.allowed
    assert guard.with_policy(Policy(toxic_threshold=0.0)).check(TEXTS[1]).allowed is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"thresholds": {"nope": 0.5}},
        {"thresholds": {"hate": 1.5}},
        {"toxic_threshold": -0.1},
        {"action": "explode"},
        {"on_error": "maybe"},
        {"latency_budget_ms": 0},
        {"max_windows": 0},
    ],
    ids=lambda k: next(iter(k)),
)
def test_bad_policies_are_config_errors(guard: Guard, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        guard.with_policy(Policy(**kwargs))


def test_check_many_matches_check(guard_dir) -> None:
    # fp32 here; tests/serve/test_guard_batch_invariance.py checks int8 too.
    guard = Guard.load(guard_dir, provider="cpu", precision="fp32")
    texts = [*TEXTS, "", "word " * 300, *TEXTS]
    many = guard.check_many(texts)
    assert len(many) == len(texts)
    for t, r in zip(texts, many, strict=True):
        one = guard.check(t)
        assert (r.label, r.windows, r.allowed) == (one.label, one.windows, one.allowed)
        for c in guard.labels if one.windows else ():
            assert r.scores[c] == pytest.approx(one.scores[c], abs=1e-4)
    assert guard.check_many([]) == []


class _BrokenSession:
    def run(self, *_args: object) -> None:
        raise RuntimeError("device lost")


def _broken(guard: Guard, policy: Policy) -> Guard:
    """The guard's ONNX scorer, its session swapped for one whose every run fails."""
    real = guard.scorer
    assert isinstance(real, OnnxScorer)
    gs = real.session
    session = GuardSession(
        session=_BrokenSession(),
        provider="cpu",
        requested="cpu",
        providers=(),
        input_names=gs.input_names,
        output_names=gs.output_names,
    )
    scorer = OnnxScorer(
        artifact=real.artifact,
        session=session,
        tokenizer=real.tokenizer,
        stride=real.stride,
        batch_size=real.batch_size,
    )
    man = real.artifact.manifest
    return Guard(
        scorer,
        policy=policy,
        safe_classes=man.safe_classes,
        toxic_threshold=man.thresholds.toxic,
        thresholds=man.thresholds.per_class,
    )


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_runtime_errors_follow_on_error(guard: Guard, on_error: str) -> None:
    g = _broken(guard, Policy(on_error=on_error))
    for r in [g.check(TEXTS[0]), *g.check_many(TEXTS[:2])]:
        assert r.degraded and "device lost" in r.error
        assert r.allowed is (on_error == "open")
        assert r.action == ("allow" if on_error == "open" else "replace")


def _never(guard: Guard) -> dict[str, float]:
    """Thresholds no probability reaches: only the error policy can disallow."""
    return {c: 1.0 for c in guard.rule.categories}


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_latency_budget_stops_long_texts(guard: Guard, on_error: str) -> None:
    unbounded = guard.with_policy(Policy(max_windows=None, max_chars=None))
    g = guard.with_policy(
        Policy(
            latency_budget_ms=1e-6,
            on_error=on_error,
            toxic_threshold=1.0,
            thresholds=_never(guard),
            max_windows=None,
            max_chars=None,
        )
    )
    text = "a fairly long text about bread. " * 1500  # more windows than one batch
    r = g.check(text)
    assert r.degraded and "budget" in r.error
    # Under a budget the deadline is checked between windows, not only between batches.
    assert r.windows == 1 < guard.batch_size < unbounded.check(text).windows
    assert r.allowed is (on_error == "open")


def test_max_windows_is_degraded_not_silent(guard: Guard) -> None:
    g = guard.with_policy(Policy(max_windows=1, toxic_threshold=1.0, thresholds=_never(guard)))
    r = g.check("bread " * 1000)
    assert r.degraded and r.windows == 1 and not r.allowed


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_latency_budget_is_honoured_after_a_single_window(guard: Guard, on_error: str) -> None:
    g = guard.with_policy(
        Policy(
            latency_budget_ms=1e-6, on_error=on_error, toxic_threshold=1.0, thresholds=_never(guard)
        )
    )
    r = g.check("a short text")  # one window: the budget is spent by the model call
    assert r.windows == 1 and r.degraded and "latency budget" in r.error
    assert r.allowed is (on_error == "open")
    assert not guard.check("a short text").degraded  # no budget, no degradation


@pytest.mark.parametrize("stride", [-1, 10_000, 1.5], ids=["negative", "too-long", "float"])
def test_bad_stride_is_a_config_error(guard_dir, stride) -> None:
    from guardrail_dro.errors import ConfigError

    with pytest.raises(ConfigError, match="stride must be an int in"):
        Guard.load(guard_dir, provider="cpu", stride=stride)


@pytest.mark.parametrize("batch_size", [0, 1.5, True], ids=["zero", "float", "bool"])
def test_bad_batch_size_is_a_config_error(guard_dir, batch_size) -> None:
    """A float batch size was reported as a broken artifact ("the guard model does not
    run") by the warm-up call."""
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1"):
        Guard.load(guard_dir, provider="cpu", batch_size=batch_size)


def test_auto_precision_follows_the_provider_that_runs(guard_dir) -> None:
    g = Guard.load(guard_dir)  # provider and precision auto
    assert g.scorer.session.requested == "auto"
    assert g.precision == g.artifact.best_variant(g.provider)  # int8 on the CPU here


def test_session_config_carries_runtime_options(guard_dir, tmp_path) -> None:
    from guardrail_dro.errors import ConfigError
    from guardrail_dro.serve.guard import SessionConfig

    cfg = SessionConfig(
        provider="cpu",
        intra_op_threads=1,
        trt_fp16=True,
        trt_engine_cache_dir=tmp_path / "trt_cache",
    )
    g = Guard.load(guard_dir, session_config=cfg, batch_size=8)
    assert g.provider == "cpu" and g.check("hello").windows == 1
    with pytest.raises(ConfigError, match="inside session_config"):
        Guard.load(guard_dir, provider="cpu", session_config=cfg)
