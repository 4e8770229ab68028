"""DecisionRule: the decision maths on three-class logits, no model."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail_dro.serve.decision import DecisionRule
from guardrail_dro.serve.policy import Policy

LABELS = ("safe", "hate", "fraud")


def rule(**policy) -> DecisionRule:
    return DecisionRule.build(
        labels=LABELS,
        safe=("safe",),
        toxic=0.5,
        per_class={"hate": 0.5, "fraud": 0.5},
        policy=Policy(**policy),
    )


def logits(*rows: tuple[float, float, float]) -> np.ndarray:
    return np.log(np.asarray(rows, dtype=np.float64))  # softmax(log p) == p


def test_safe_text_is_allowed() -> None:
    r = rule().decide(logits((0.8, 0.1, 0.1)))
    assert r.allowed and r.action == "allow" and r.triggered == ()
    assert r.toxic_score == pytest.approx(0.2) and r.scores["safe"] == pytest.approx(0.8)


def test_toxic_sum_blocks_without_a_single_category() -> None:
    r = rule().decide(logits((0.4, 0.3, 0.3)))
    assert not r.allowed and r.triggered == () and r.toxic_score == pytest.approx(0.6)


def test_per_class_override_triggers() -> None:
    r = rule(thresholds={"fraud": 0.25}, toxic_threshold=0.9).decide(logits((0.6, 0.1, 0.3)))
    assert r.triggered == ("fraud",) and r.action == "replace" and not r.allowed


def test_worst_window_decides_and_triggered_is_the_union() -> None:
    r = rule(action="flag").decide(logits((0.9, 0.05, 0.05), (0.3, 0.6, 0.1), (0.3, 0.1, 0.6)))
    assert r.allowed and r.action == "flag" and r.windows == 3
    assert r.worst_window in (1, 2) and r.triggered == ("hate", "fraud")


def test_incomplete_without_violation_is_degraded() -> None:
    closed = rule().decide(logits((0.9, 0.05, 0.05)), complete=False, error="budget")
    opened = rule(on_error="open").decide(logits((0.9, 0.05, 0.05)), complete=False, error="b")
    assert closed.degraded and not closed.allowed and closed.error == "budget"
    assert opened.degraded and opened.allowed
    found = rule().decide(logits((0.1, 0.8, 0.1)), complete=False, error="budget")
    assert not found.degraded and not found.allowed and found.error is None


@pytest.mark.parametrize("action", ["block", "replace", "flag"])
@pytest.mark.parametrize("complete", [True, False])
def test_the_one_window_path_decides_as_the_numpy_path(action: str, complete: bool) -> None:
    """``decide`` takes a plain-Python path for one window (most checks); on random
    logits, thresholds and safe sets it must give the numpy path's result: same
    decision, label, triggered classes, and scores within float rounding."""
    rng = np.random.default_rng(0)
    labels = tuple(f"c{i}" for i in range(15))
    for trial in range(300):
        n_safe = int(rng.integers(0, 3))  # 0: no class known safe
        safe = labels[:n_safe]
        per_class = {c: float(rng.uniform(0.05, 0.9)) for c in labels if rng.random() < 0.5}
        r = DecisionRule.build(
            labels=labels,
            safe=safe,
            toxic=float(rng.uniform(0.05, 0.95)),
            per_class=per_class,
            policy=Policy(action=action, on_error="closed" if trial % 2 else "open"),
        )
        z = rng.normal(0, 3, size=(1, 15))
        if trial % 7 == 0:
            z[0, 3] = z[0, 5] = z.max() + 1  # a tie: the first index wins in both
        kw = dict(complete=complete, error=None if complete else "budget", latency_ms=1.0)
        fast, slow = r.decide(z, **kw), r._decide_windows(z, **kw)
        assert fast.windows == slow.windows == 1
        assert (fast.allowed, fast.action, fast.label, fast.label_name, fast.triggered) == (
            slow.allowed,
            slow.action,
            slow.label,
            slow.label_name,
            slow.triggered,
        ), trial
        assert (fast.degraded, fast.error, fast.replacement) == (
            slow.degraded,
            slow.error,
            slow.replacement,
        )
        assert fast.toxic_score == pytest.approx(slow.toxic_score, abs=1e-12)
        assert list(fast.scores) == list(slow.scores)
        np.testing.assert_allclose(
            list(fast.scores.values()), list(slow.scores.values()), rtol=0, atol=1e-12
        )
