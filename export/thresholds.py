"""The guard's thresholds, chosen on the validation split at export (``guard.json``).

``export_onnx`` scores the validation texts with the fp32 ONNX graph (the parity
reference), then ``calibrate``:

1. per-class thresholds: a class triggering on its own probability only matters when it
   blocks a text the toxic score let through. One shared threshold for every non-safe
   class is tried on a grid (``PER_CLASS_GRID``), the toxic threshold re-chosen for each;
   it is kept only when it raises the default objective's best value on valid, else
   dropped (``per_class`` empty: no per-class trigger); under ``target_fpr``, one whose
   FPR floor is above the target is replaced (``_per_class_for_fpr``). The measurement
   is written to ``guard.json`` (``calibration.per_class``).
2. the toxic threshold: the point of the validation operating curve
   (``guardrail_dro.serve.calibration``) the objective picks: ``target_recall``,
   ``target_fpr``, a ``fixed`` threshold the user gave, ``worst_group_balanced_accuracy``,
   or the default (``worst_group_accuracy``: why in ``serve.calibration``);
3. ``decision_function``: the guard's own decision (``DecisionRule``) at that point, for
   the int8 gate (``Validator.decide``), so the gate checks the decisions a user gets.

Without validation data (or without its gold labels) the threshold stays 0.5 and
``guard.json`` says it is uncalibrated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.artifact import Thresholds
from guardrail_dro.serve.calibration import (
    DEFAULT_OBJECTIVE,
    OBJECTIVES,
    Calibration,
    binary_metrics,
    operating_curve,
    softmax,
)
from guardrail_dro.serve.decision import DecisionRule
from guardrail_dro.serve.policy import Action, Policy

__all__ = [
    "PER_CLASS_GRID",
    "calibrate",
    "check_both_kinds",
    "check_objective",
    "decision_function",
    "describe",
    "uncalibrated",
]

#: Shared per-class thresholds tried on valid (0.05 .. 0.95).
PER_CLASS_GRID: tuple[float, ...] = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2).tolist())


def check_objective(
    *,
    target_recall: float | None,
    target_fpr: float | None,
    threshold: float | None,
    valid: bool,
) -> None:
    """Refuse a conflicting choice before any slow work.

    Raises:
        ConfigError: more than one of the three, a value outside (0, 1] ([0, 1] for a
            threshold), or a target without validation data to reach it on.
    """
    given = {
        k: v
        for k, v in (
            ("target_recall", target_recall),
            ("target_fpr", target_fpr),
            ("threshold", threshold),
        )
        if v is not None
    }
    if len(given) > 1:
        raise ConfigError(f"give one of target_recall, target_fpr, threshold; not {list(given)}")
    for name, value in given.items():
        low_ok = name == "threshold"
        if isinstance(value, bool) or not (0 <= value <= 1) or (value == 0 and not low_ok):
            raise ConfigError(f"{name} must be in {'[0' if low_ok else '(0'}, 1], not {value!r}")
    if not valid and (target_recall is not None or target_fpr is not None):
        raise ConfigError(
            "target_recall / target_fpr are reached on validation data: give the validation "
            "split (--valid) with gold labels"
        )


def _scores(probs: np.ndarray, safe: np.ndarray, per_class: float | None) -> np.ndarray:
    """The score whose threshold reproduces ``DecisionRule``: 1 - P(safe), or 1 (always
    blocked) where a non-safe class reaches the shared per-class threshold."""
    toxic = np.maximum(1.0 - probs[:, safe].sum(axis=1), 0.0)  # as DecisionRule: never < 0
    if per_class is None:
        return toxic
    return np.where(probs[:, ~safe].max(axis=1) >= per_class, 1.0, toxic)


def _per_class(
    probs, safe, positive, groups, names, objective: str = DEFAULT_OBJECTIVE
) -> tuple[float | None, str]:
    def best(tau: float | None) -> tuple[float, float]:
        curve = operating_curve(_scores(probs, safe, tau), positive, groups, names)
        p = curve.choose(objective)
        if objective == "worst_group_accuracy":
            return (p.worst_group_accuracy or p.accuracy), p.accuracy
        value = p.worst_group_balanced_accuracy
        return (p.balanced_accuracy if value is None else value), p.accuracy

    base = best(None)
    scored = [(best(t), t) for t in PER_CLASS_GRID]
    (top, tau) = max(scored, key=lambda st: (st[0], -st[1]))
    kind = "balanced" if objective == "worst_group_balanced_accuracy" else ""
    what = " ".join(x for x in ("worst-group" if groups is not None else "overall", kind) if x)
    # A tie on the objective is decided by overall binary accuracy: say so, as "0.8276
    # on valid, without one 0.8276" read as a threshold kept for nothing.
    tie = (
        f" (tied: overall binary accuracy {top[1]:.4f} with it, {base[1]:.4f} without)"
        if f"{top[0]:.4f}" == f"{base[0]:.4f}"
        else ""
    )
    if top <= base:
        return None, (
            f"dropped: a shared per-class threshold ({PER_CLASS_GRID[0]}-{PER_CLASS_GRID[-1]}) "
            f"gives at best {what} binary accuracy {top[0]:.4f} on valid (at {tau}), "
            f"without one {base[0]:.4f}{tie}"
        )
    return tau, (
        f"kept at {tau}: {what} binary accuracy {top[0]:.4f} on valid, without one "
        f"{base[0]:.4f}{tie}"
    )


def _per_class_for_fpr(
    probs, safe, positive, groups, names, target: float, kept: float
) -> tuple[float | None, str]:
    """The per-class threshold when the one the objective keeps (``kept``) leaves no
    point at FPR <= ``target``: a trigger blocks a text whatever the toxic threshold, so
    it sets a floor under the curve's FPR (kept at 0.5 on toxic-questions: a floor of
    0.244 on valid, and ``--target-fpr 0.10`` failed). Then none or another of the grid,
    whichever gives the target point the most recall on valid (ties: the lower FPR).

    Judging every target's trigger by its own point instead was measured and not kept
    (one model, toxic-questions, 2026-12-07): at recall 0.90 it chose 0.65 over 0.5 on
    valid (FPR 0.329 against 0.354) and on test did worse (0.455 against 0.412)."""

    def point(tau: float | None):
        curve = operating_curve(_scores(probs, safe, tau), positive, groups, names)
        try:
            return curve.choose("target_fpr", target)
        except ConfigError:  # the trigger's floor is above the target
            return None

    found = [(p.recall, -p.fpr, t) for t in (None, *PER_CLASS_GRID) if (p := point(t))]
    floor = (
        f"the per-class threshold {kept} that the objective keeps leaves no point at "
        f"FPR <= {target:g} on valid"
    )
    if not found:
        return kept, f"kept at {kept}: {floor}, nor does any other"  # calibrate then says so
    recall, fpr, tau = max(found, key=lambda f: f[:2])
    how = "dropped" if tau is None else f"kept at {tau}"
    return tau, f"{how}: {floor}; the target point there: recall {recall:.4f}, FPR {-fpr:.4f}"


def check_both_kinds(valid) -> None:
    """Refuse a gold-labelled split without both toxic and safe texts: an operating point
    needs both. ``calibrate`` checks it, and ``export``'s command first of all, so the
    ONNX conversion is not spent on a split that cannot calibrate it.

    Raises:
        ConfigError: naming the split and its counts; or a split where some texts have
            a gold label and some do not (without this, such a split was left
            uncalibrated, "no gold labels", on one blank cell).
    """
    schema = valid.schema
    missing = [it.item_id for it in valid.items if it.gold is None]
    # None at all: uncalibrated, saying so; some: refused (a gap, not a choice).
    if schema.safe and missing and len(missing) < len(valid.items):
        raise ConfigError(
            f"{valid.name or 'the validation split'}: {len(missing)} of {len(valid.items)} "
            f"texts have no gold label (first: {missing[:3]}); calibration needs every "
            "validation text labelled: label them or drop them from --valid"
        )
    if not (valid.has_gold and schema.safe):
        return
    gold = valid.gold_array()
    safe = np.array([c in schema.safe for c in schema.classes])[gold[gold >= 0]]
    if safe.any() and not safe.all():
        return
    raise ConfigError(
        f"{valid.name or 'the validation split'}: calibration needs toxic and safe texts "
        f"with gold labels; this split has {int((~safe).sum())} toxic and {int(safe.sum())} safe"
    )


def calibrate(
    logits: np.ndarray,
    valid,
    schema: LabelSchema,
    *,
    target_recall: float | None = None,
    target_fpr: float | None = None,
    threshold: float | None = None,
    objective: str | None = None,
) -> tuple[Thresholds, Calibration]:
    """Thresholds and their record for ``guard.json``, chosen on ``valid``.

    Args:
        logits: (N, C) fp32 ONNX logits of ``valid.texts``.
        valid: the validation ``AnnotatedDataset`` (gold labels; groups if it has them).
        schema: the model's label schema (its safe classes).
        target_recall, target_fpr, threshold: at most one (``check_objective``); none:
            ``objective``.
        objective: ``worst_group_accuracy`` (default) or ``worst_group_balanced_accuracy``.

    Raises:
        ConfigError: as ``check_objective``; a target on a split without gold, a split
            without toxic or without safe texts.
    """
    check_objective(
        target_recall=target_recall, target_fpr=target_fpr, threshold=threshold, valid=True
    )
    if not schema.safe:
        return uncalibrated(
            schema,
            threshold,
            "the label schema names no safe class",
            "every class counts as harmful, so a text is blocked whenever one class's "
            "probability crosses the threshold; retrain with the safe classes named "
            "(--safe or --schema) for a guard with a toxic score",
        )
    check_both_kinds(valid)  # a split partly gold-labelled is refused, not left uncalibrated
    if not valid.has_gold:
        if target_recall is not None or target_fpr is not None:
            raise ConfigError("target_recall / target_fpr need gold labels in the validation split")
        return uncalibrated(
            schema,
            threshold,
            "the validation split has no gold labels",
            "give --valid a split with gold labels (--gold-col) to calibrate it",
        )
    safe = np.array([c in schema.safe for c in schema.classes])
    positive = ~safe[valid.gold_array()]
    groups, names = (valid.group_array(), list(valid.groups)) if valid.has_groups else (None, None)
    probs = softmax(logits)
    if objective is None:
        objective = DEFAULT_OBJECTIVE
    if objective not in OBJECTIVES or objective.startswith("target_"):
        raise ConfigError(
            f"objective must be worst_group_balanced_accuracy or worst_group_accuracy, "
            f"not {objective!r} (targets: target_recall= / target_fpr=)"
        )
    tau, per_class_note = _per_class(probs, safe, positive, groups, names, objective)
    scores = _scores(probs, safe, tau)
    full = operating_curve(scores, positive, groups, names)
    if target_fpr is not None and tau is not None and min(full.fpr) > target_fpr + 1e-12:
        tau, per_class_note = _per_class_for_fpr(
            probs, safe, positive, groups, names, target_fpr, tau
        )
        scores = _scores(probs, safe, tau)
        full = operating_curve(scores, positive, groups, names)
    target: float | None = None
    if target_recall is not None:
        objective, target = "target_recall", target_recall
    elif target_fpr is not None:
        objective, target = "target_fpr", target_fpr
    if threshold is None:
        i = full.index(objective, target)
        point = full.point(i)
    else:  # the user's threshold, measured; the curve point with the same decisions
        objective = "fixed"
        point = binary_metrics(scores >= threshold, positive, groups, names, threshold=threshold)
        i = int(
            np.argmin(
                np.abs(np.asarray(full.recall) - point.recall)
                + np.abs(np.asarray(full.fpr) - point.fpr)
            )
        )
    toxic = [c for c in schema.classes if c not in schema.safe]
    thresholds = Thresholds(
        toxic=point.threshold, per_class={c: tau for c in toxic} if tau is not None else {}
    )
    record = Calibration(
        calibrated=True,
        objective=objective,
        target=target,
        split=valid.name or None,
        split_hash=valid.content_hash(),
        items=len(valid),
        point=point,
        curve=full.compact(keep=[i]),
        per_class=per_class_note,
        note=f"chosen on {len(valid)} validation texts scored by the fp32 ONNX model",
    )
    return thresholds, record


def uncalibrated(
    schema: LabelSchema,
    threshold: float | None = None,
    why: str = "no validation split",
    fix: str = "export with --valid to calibrate it",
) -> tuple[Thresholds, Calibration]:
    """The flat default (0.5, or ``threshold``) for the toxic score and every class,
    recorded as not chosen on data; ``fix`` says what would calibrate it (a user who
    gave --valid must not be told to give --valid)."""
    value = 0.5 if threshold is None else float(threshold)
    return Thresholds.default_for(schema, value), Calibration(
        calibrated=False,
        objective="fixed",
        note=f"uncalibrated: {why}; threshold {value} was not chosen on data ({fix})",
    )


def decision_function(
    schema: LabelSchema, thresholds: Thresholds
) -> Callable[[np.ndarray], np.ndarray]:
    """Logits (N, C) -> blocked (N,) bool, by the guard's own ``DecisionRule`` (each row
    one single-window text), for ``Validator.decide``."""
    rule = DecisionRule.build(
        labels=schema.classes,
        safe=schema.safe,
        toxic=thresholds.toxic,
        per_class=thresholds.per_class,
        policy=Policy(action=Action.BLOCK),
    )

    def decide(logits: np.ndarray) -> np.ndarray:
        rows = np.asarray(logits)
        return np.array([not rule.decide(row[None, :]).allowed for row in rows], dtype=bool)

    return decide


def describe(calibration: Calibration) -> str:
    """One line on how the toxic threshold was chosen (the export prints it)."""
    p = calibration.point
    if not calibration.calibrated or p is None:
        return calibration.note
    target = f" {calibration.target}" if calibration.target is not None else ""
    worst = (
        f", worst-group accuracy {p.worst_group_accuracy:.3f} ({p.worst_group})"
        if p.worst_group_accuracy is not None
        else ""
    )
    if p.worst_group_balanced_accuracy is not None:
        worst += f", worst-group balanced accuracy {p.worst_group_balanced_accuracy:.3f}"
    # A point that blocks nothing (a low FPR target can pick it) has no precision.
    precision = "n/a (none blocked)" if p.precision is None else f"{p.precision:.3f}"
    return (
        f"toxic threshold {p.threshold:.4f} ({calibration.objective}{target}) on valid: "
        f"recall {p.recall:.3f}, FPR {p.fpr:.3f}, precision {precision}, "
        f"binary accuracy {p.accuracy:.3f}{worst}; per-class thresholds {calibration.per_class}"
    )
