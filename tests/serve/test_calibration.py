"""Operating curves and the points objectives pick: small cases checked by hand, the
compact curve against the full one, and ``Policy(target_recall=...)`` on a guard."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.calibration import (
    Calibration,
    OperatingCurve,
    binary_metrics,
    operating_curve,
    toxic_scores,
)
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy, threshold_for_target
from guardrail_dro.serve.scorer import FakeScorer

pytest.importorskip("sklearn")

# Six texts, two groups of three. Blocking goes down the scores one text at a time.
SCORES = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
TOXIC = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
GROUPS = np.array([0, 0, 0, 1, 1, 1])


@pytest.fixture()
def curve() -> OperatingCurve:
    return operating_curve(SCORES, TOXIC, GROUPS, ["a", "b"])


def test_curve_by_hand(curve: OperatingCurve) -> None:
    # Thresholds halfway between consecutive scores; the first blocks nothing.
    assert curve.threshold == pytest.approx([0.95, 0.85, 0.75, 0.55, 0.35, 0.2, 0.05])
    assert curve.recall == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert curve.fpr == pytest.approx([0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert curve.precision == pytest.approx([1, 1, 1, 2 / 3, 3 / 4, 3 / 5, 1 / 2])
    assert curve.accuracy == pytest.approx([3 / 6, 4 / 6, 5 / 6, 4 / 6, 5 / 6, 4 / 6, 3 / 6])
    # group a = (0.9 toxic, 0.8 toxic, 0.7 safe), b = (0.4 toxic, 0.3 safe, 0.1 safe)
    assert curve.worst_group_accuracy == pytest.approx(
        [1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 1 / 3]
    )
    assert curve.worst_group[0] == "a" and curve.worst_group[2] == "b"
    assert curve.worst_group[-1] == "b"
    assert (curve.positives, curve.negatives) == (3, 3)


def test_worst_group_balanced_accuracy_by_hand(curve: OperatingCurve) -> None:
    # a: recall 0, 1/2, 1, 1, ...; 1 - FPR 1, 1, 1, 0, ... -> 0.5, 0.75, 1, 0.5, 0.5, 0.5, 0.5
    # b: recall 0 until 0.35, then 1; 1 - FPR 1 ... 1, 0.5, 0 -> 0.5, 0.5, 0.5, 0.5, 1, 0.75, 0.5
    assert curve.worst_group_balanced_accuracy == pytest.approx([0.5] * 7)
    # all tied: the better overall accuracy (5/6 at 0.75 and 0.35), then the lower FPR
    assert curve.choose("worst_group_balanced_accuracy").threshold == pytest.approx(0.75)


def test_balanced_objective_does_not_follow_the_class_mix() -> None:
    """Four toxic texts and one safe, the safe one scored second: plain accuracy blocks
    everything (4/5 right, FPR 1); balanced accuracy blocks the top text only."""
    c = operating_curve(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 0, 1, 1, 1], bool))
    # balanced: 0.5, 0.625, 0.125, 0.25, 0.375, 0.5
    assert c.choose().fpr == 1.0  # the default: plain (worst-group) accuracy
    best = c.choose("worst_group_balanced_accuracy")
    assert (best.threshold, best.recall, best.fpr) == pytest.approx((0.85, 0.25, 0.0))
    assert best.balanced_accuracy == pytest.approx(0.625)
    # a stored curve without the column (older guard.json) falls back to overall balanced
    old = c.model_copy(update={"worst_group_balanced_accuracy": ()})
    assert old.choose("worst_group_balanced_accuracy").threshold == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("objective", "target", "threshold"),
    [
        # worst group 2/3 at points 1-5; of those, overall 5/6 at 2 and 4: 2 has FPR 0
        ("worst_group_accuracy", None, 0.75),
        ("target_recall", 0.6, 0.75),  # recall 2/3 first reached with FPR 0
        ("target_recall", 1.0, 0.35),  # recall 1 needs one safe text blocked
        ("target_fpr", 0.5, 0.35),  # FPR 1/3 allows recall 1
        ("target_fpr", 0.2, 0.75),  # FPR 0: recall 2/3 at best
    ],
    ids=["default", "recall-0.6", "recall-1", "fpr-0.5", "fpr-0.2"],
)
def test_objectives_pick_by_hand(
    curve: OperatingCurve, objective: str, target: float | None, threshold: float
) -> None:
    assert curve.choose(objective, target).threshold == pytest.approx(threshold)


def test_target_recall_prefers_more_recall_at_equal_fpr() -> None:
    # Recall 0.5 is reached at FPR 0 by blocking 0.9; blocking 0.8 too keeps FPR 0.
    c = operating_curve(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0]))
    p = c.choose("target_recall", 0.5)
    assert (p.recall, p.fpr) == (1.0, 0.0)


def test_thresholds_reproduce_the_curve_decisions() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(400), 2)  # many ties
    toxic = rng.random(400) < 0.3 + 0.5 * scores
    groups = rng.integers(0, 4, 400)
    c = operating_curve(scores, toxic, groups)
    for i in range(0, len(c), 7):
        p = binary_metrics(scores >= c.threshold[i], toxic, groups, threshold=c.threshold[i])
        assert p == c.point(i)


def test_compact_curve_picks_what_the_full_curve_picks() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random(3000)
    toxic = rng.random(3000) < scores
    full = operating_curve(scores, toxic, rng.integers(0, 5, 3000))
    small = full.compact(keep=[full.index()])
    assert len(small) <= 300 < len(full)
    assert small.choose() == full.choose()
    for t in np.round(np.linspace(0.01, 1, 100), 2):
        assert small.choose("target_recall", t) == full.choose("target_recall", t)
        if min(full.fpr) <= t:
            assert small.choose("target_fpr", t) == full.choose("target_fpr", t)


def test_binary_metrics_by_hand() -> None:
    blocked = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    p = binary_metrics(blocked, TOXIC, GROUPS, ["a", "b"], threshold=0.3)
    # tp 2 (0.9, 0.4), fn 1 (0.8), fp 1 (0.7), tn 2
    assert (p.recall, p.fpr, p.precision, p.accuracy) == pytest.approx((2 / 3, 1 / 3, 2 / 3, 4 / 6))
    assert p.worst_group_accuracy == pytest.approx(1 / 3) and p.worst_group == "a"
    # a: recall 1/2, 1 - FPR 0 -> 0.25; b: recall 1, 1 - FPR 1 -> 1
    assert p.worst_group_balanced_accuracy == pytest.approx(0.25)
    assert p.threshold == 0.3


def test_toxic_scores_match_softmax() -> None:
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert toxic_scores(logits, np.array([1, 0, 0])) == pytest.approx(1 - probs[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": [0.1, 0.2], "positive": [1, 1]}, "0 safe"),
        ({"scores": [0.1, 0.2], "positive": [0, 0]}, "0 toxic"),
        ({"scores": [0.1, 0.2], "positive": [0, 1, 1]}, "2 scores but 3 gold"),
        ({"scores": [0.1, np.nan], "positive": [0, 1]}, "finite"),
    ],
    ids=["no-safe", "no-toxic", "lengths", "nan"],
)
def test_bad_curve_input_is_named(kwargs, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        operating_curve(np.array(kwargs["scores"]), np.array(kwargs["positive"]))


@pytest.mark.parametrize(
    ("objective", "target", "match"),
    [
        ("best", None, "objective must be one of"),
        ("target_recall", None, r"needs a target in \(0, 1\]"),
        ("target_recall", 0.0, r"needs a target in \(0, 1\]"),
        ("target_fpr", 1.5, r"needs a target in \(0, 1\]"),
        ("worst_group_accuracy", 0.5, "takes no target"),
    ],
)
def test_bad_objective_is_named(curve: OperatingCurve, objective, target, match) -> None:
    with pytest.raises(ConfigError, match=match):
        curve.choose(objective, target)


def test_unreachable_fpr_is_named() -> None:
    # A safe text scoring exactly 1 cannot be left unblocked: FPR 0.5 at least.
    c = operating_curve(np.array([1.0, 0.2, 0.9]), np.array([0, 0, 1]))
    assert min(c.fpr) == 0.5
    with pytest.raises(ConfigError, match=r"no threshold reaches FPR <= 0.1 .*lowest: 0.5"):
        c.choose("target_fpr", 0.1)


def test_threshold_for_target_needs_a_curve(curve: OperatingCurve) -> None:
    with pytest.raises(ConfigError, match="lacks .*re-export with --valid"):
        threshold_for_target(None, 0.9, None)
    with pytest.raises(ConfigError, match="exactly one"):
        threshold_for_target(curve, 0.9, 0.1)
    assert threshold_for_target(curve, None, 0.5) == pytest.approx(0.35)


def test_calibration_round_trips_json(curve: OperatingCurve) -> None:
    cal = Calibration(
        calibrated=True,
        objective="target_recall",
        target=0.9,
        items=6,
        point=curve.choose("target_recall", 0.9),
        curve=curve.compact(),
    )
    assert Calibration.model_validate_json(cal.model_dump_json()) == cal


def test_curve_refuses_unsorted_or_ragged_columns(curve: OperatingCurve) -> None:
    raw = curve.model_dump()
    with pytest.raises(ValueError, match="descending"):
        OperatingCurve(**{**raw, "threshold": tuple(reversed(raw["threshold"]))})
    with pytest.raises(ValueError, match="equal length"):
        OperatingCurve(**{**raw, "recall": raw["recall"][:-1]})


# ---- Policy(target_recall / target_fpr) -------------------------------------------------


# A toxic score per text: the fake scorer gives "toxic" the number written in the text.
def _scorer() -> FakeScorer:
    return FakeScorer(lambda t: {"toxic": float(t)} if t.strip() else {})


def test_policy_target_moves_the_guard_along_the_curve(curve: OperatingCurve) -> None:
    guard = Guard(
        _scorer(),
        policy=Policy(),
        safe_classes=("safe",),
        toxic_threshold=0.75,
        thresholds={},
        curve=curve,
    )
    assert guard.check("0.5").allowed  # 0.5 < 0.75: the exported threshold
    strict = guard.with_policy(Policy(target_recall=1.0))  # threshold 0.35
    assert not strict.check("0.5").allowed
    assert strict.check("0.3").allowed
    assert guard.with_policy(Policy(target_fpr=0.2)).check("0.5").allowed  # 0.75


def test_policy_target_without_curve_is_a_clear_error() -> None:
    guard = Guard.from_scorer(_scorer())
    with pytest.raises(ConfigError, match="validation operating curve"):
        guard.with_policy(Policy(target_recall=0.9))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_recall": 0.9, "toxic_threshold": 0.5}, "not toxic_threshold and target_recall"),
        ({"target_recall": 0.9, "target_fpr": 0.1}, "not target_recall and target_fpr"),
        ({"target_recall": 0}, r"target_recall must be in \(0, 1\]"),
        ({"target_fpr": 1.5}, r"target_fpr must be a number in \[0, 1\]"),
    ],
    ids=["recall+threshold", "recall+fpr", "zero", "range"],
)
def test_policy_refuses_conflicting_points(kwargs, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Policy(**kwargs)
