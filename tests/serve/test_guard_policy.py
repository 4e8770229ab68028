"""DecisionRule: the decision maths on three-class logits, no model."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail_dro.serve.policy import DecisionRule, Policy

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
