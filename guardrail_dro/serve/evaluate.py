"""A guard's own decisions on a labelled split, as binary metrics at its operating point.

``evaluate_guard(guard, data)`` runs ``Guard.decide_many`` (windows, the variant and the
policy the guard serves with) on every text and measures, against the gold labels
(toxic = a gold class that is not safe): precision, recall, FPR, binary accuracy, the
worst group, and the ROC AUC of the toxic score. ``guardrail-dro evaluate --guard``
prints it beside the validation point recorded in ``guard.json``, so whether the
calibration transferred is one look.

A split of one kind is measured too: a file of users' benign messages gives the FPR (the
share the guard blocks) and accuracy; recall, ROC AUC and the curve need toxic texts too,
so they are None (null in JSON), as FPR is on toxic texts only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from guardrail_dro.errors import ConfigError, require
from guardrail_dro.serve.calibration import (
    OperatingCurve,
    OperatingPoint,
    binary_metrics,
    operating_curve,
)

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.serve.guard import Guard

__all__ = ["GuardEvaluation", "evaluate_guard"]


class GuardEvaluation(BaseModel):
    """What ``evaluate_guard`` measured (``evaluate --guard --out`` writes it as JSON)."""

    model_config = ConfigDict(frozen=True)

    split: str
    items: int
    precision_variant: str | None
    objective: str | None = Field(
        description="How the threshold evaluated was chosen: guard.json's objective, or the "
        "Policy's target_recall / target_fpr / fixed toxic_threshold that moved it."
    )
    target: float | None = Field(None, description="That objective's target, if any.")
    calibrated: bool
    point: OperatingPoint
    valid_point: OperatingPoint | None
    roc_auc: float | None = Field(description="None: the split has one kind of text only.")
    curve: OperatingCurve | None = Field(description="None: the split has one kind only.")
    scores: tuple[float, ...] = Field((), exclude=True, repr=False)  # toxic score per text

    def rows(self) -> list[tuple[str, OperatingPoint]]:
        """(name, point) for a table: this split's point, then the validation one."""
        rows = [(self.split, self.point)]
        if self.valid_point is not None:
            rows.append(("valid (guard.json)", self.valid_point))
        return rows


def evaluate_guard(guard: Guard, data: AnnotatedDataset) -> GuardEvaluation:
    """Binary metrics of ``guard``'s decisions on ``data`` (gold labels needed; groups
    give the worst group).

    Raises:
        ConfigError: classes that differ from the guard's, a guard without a safe class,
            an empty split.
        DataError: an item without a gold label.
    """
    require("sklearn", "export")
    from sklearn.metrics import roc_auc_score

    if tuple(data.schema.classes) != tuple(guard.labels):
        raise ConfigError(
            f"the data's classes {list(data.schema.classes)} are not the guard's "
            f"{list(guard.labels)}"
        )
    safe = np.asarray(guard.rule.safe)
    if not safe.any():
        raise ConfigError("the guard knows no safe class: there is no toxic / safe decision")
    positive = ~safe[data.gold_array()]
    groups, names = (data.group_array(), list(data.groups)) if data.has_groups else (None, None)
    results = guard.decide_many(data.texts)
    blocked = np.array([r.violation for r in results], dtype=bool)
    scores = np.array([r.toxic_score for r in results], dtype=np.float64)
    point = binary_metrics(
        blocked, positive, groups, names, threshold=float(guard.rule.toxic_threshold)
    )
    both = bool(positive.any() and not positive.all())  # a ranking needs both kinds
    cal = guard.artifact.manifest.calibration if guard.artifact is not None else None
    objective: str | None = cal.objective if cal is not None and cal.calibrated else None
    target = cal.target if cal is not None and cal.calibrated else None
    pol = guard.policy  # a policy's point, not guard.json's, is the one evaluated
    if pol.target_recall is not None:
        objective, target = "target_recall", pol.target_recall
    elif pol.target_fpr is not None:
        objective, target = "target_fpr", pol.target_fpr
    elif pol.toxic_threshold is not None:
        objective, target = "fixed", None
    return GuardEvaluation(
        split=data.name or "data",
        items=len(data),
        precision_variant=guard.precision,
        objective=objective,
        target=target,
        calibrated=bool(cal is not None and cal.calibrated),
        point=point,
        valid_point=_valid_point(cal, point.threshold),
        roc_auc=float(roc_auc_score(positive, scores)) if both else None,
        curve=operating_curve(scores, positive, groups, names).compact() if both else None,
        scores=tuple(scores.tolist()),
    )


def _valid_point(cal, threshold: float) -> OperatingPoint | None:
    """guard.json's validation point at ``threshold`` (the recorded one, or the curve's
    point a ``Policy`` target moved to); None when the guard has neither."""
    if cal is None:
        return None
    if cal.point is not None and cal.point.threshold == threshold:
        return cal.point
    if cal.curve is not None and threshold in cal.curve.threshold:
        return cal.curve.point(cal.curve.threshold.index(threshold))
    return None
