"""Classification metrics, overall and per group, for multi-class guards.

The paper's "average" is the group-mean accuracy and its "worst" the minimum over
groups; we report both beside plain sample accuracy (the reference code mixed them
up), plus macro-F1 and the binary toxic-vs-safe decision's precision, recall, FPR.
Pure numpy: no torch needed to score predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset

__all__ = [
    "ACCURACY",
    "HEADLINE",
    "HEADLINE_LABELS",
    "WORST_GROUP_ACCURACY",
    "Metrics",
    "compute_metrics",
    "macro_f1",
    "score_split",
    "toxic_auc",
]

ACCURACY = "accuracy"
WORST_GROUP_ACCURACY = "worst_group_accuracy"
"""The metric that selects models and orders comparison tables (see the module)."""

HEADLINE_LABELS: dict[str, str] = {
    ACCURACY: "acc",
    "group_mean_accuracy": "group-mean acc",
    WORST_GROUP_ACCURACY: "worst-group acc",
    "macro_f1": "macro-F1",
    "toxic_precision": "toxic precision",
    "toxic_recall": "toxic recall",
    "toxic_fpr": "toxic FPR",
    "toxic_roc_auc": "toxic ROC AUC",
}
"""The headline metrics (``Metrics`` fields), in table order, with their column labels."""

HEADLINE: tuple[str, ...] = tuple(HEADLINE_LABELS)
"""The numbers a comparison table shows: ``Metrics.headline()`` and the bench report."""


class Metrics(BaseModel):
    """All metrics of one set of predictions."""

    n: int
    accuracy: float
    group_mean_accuracy: float | None = None
    worst_group_accuracy: float | None = None
    worst_group: str | None = None
    macro_f1: float
    toxic_precision: float | None = None
    toxic_recall: float | None = None
    toxic_fpr: float | None = None
    toxic_roc_auc: float | None = None
    """ROC AUC of the guard's toxic score (the exported model's 1 - P(safe)), toxic
    against safe gold: how well the guard ranks, whatever its threshold. Set where the
    probabilities are known (``score_split(..., proba=)``: bench runs, ``evaluate``);
    None from class predictions alone."""
    group_accuracy: dict[str, float] = {}
    group_size: dict[str, int] = {}

    def headline(self) -> dict[str, float | None]:
        """The numbers a comparison table shows (``HEADLINE``)."""
        return {k: getattr(self, k) for k in HEADLINE}

    def progress(self) -> dict[str, str]:
        """A progress bar's postfix: accuracy, and the worst group's where there are
        groups. Without groups there is no worst group: a 0 there read as a collapse."""
        shown = {"acc": f"{self.accuracy:.3f}"}
        if self.worst_group_accuracy is not None:
            shown["worst"] = f"{self.worst_group_accuracy:.3f}"
        return shown


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    f1s = []
    for c in range(num_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def _safe_div(a: float, b: float) -> float | None:
    return float(a / b) if b else None


def compute_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    num_classes: int,
    groups: np.ndarray | None = None,
    group_names: Sequence[str] | None = None,
    safe_mask: Sequence[bool] | None = None,
) -> Metrics:
    """Score predictions.

    Args:
        y_true, y_pred: class indices, same length.
        groups: group index per item (-1 = no group), or None.
        group_names: names for group indices (default: the index as text).
        safe_mask: per class, whether it is safe; enables the binary toxic metrics when
            it has both safe and toxic classes.

    Example:
        >>> compute_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), num_classes=2).accuracy
        0.6666666666666666
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    correct = y_true == y_pred
    out: dict = {
        "n": len(y_true),
        "accuracy": float(correct.mean()) if len(y_true) else 0.0,
        "macro_f1": macro_f1(y_true, y_pred, num_classes),
    }
    if groups is not None and np.any(groups >= 0):
        groups = np.asarray(groups)
        accs, sizes = {}, {}
        for g in np.unique(groups[groups >= 0]):
            name = group_names[g] if group_names is not None else str(int(g))
            m = groups == g
            accs[name] = float(correct[m].mean())
            sizes[name] = int(m.sum())
        worst = min(accs, key=accs.__getitem__)
        out.update(
            group_accuracy=accs,
            group_size=sizes,
            group_mean_accuracy=float(np.mean(list(accs.values()))),
            worst_group_accuracy=accs[worst],
            worst_group=worst,
        )
    if safe_mask is not None and 0 < sum(safe_mask) < len(safe_mask):
        safe = np.asarray(safe_mask, dtype=bool)
        t_tox = ~safe[y_true]
        p_tox = ~safe[y_pred]
        tp = float(np.sum(t_tox & p_tox))
        out.update(
            toxic_precision=_safe_div(tp, float(np.sum(p_tox))),
            toxic_recall=_safe_div(tp, float(np.sum(t_tox))),
            toxic_fpr=_safe_div(float(np.sum(~t_tox & p_tox)), float(np.sum(~t_tox))),
        )
    return Metrics(**out)


def score_split(
    data: AnnotatedDataset, pred: np.ndarray, *, proba: np.ndarray | None = None
) -> Metrics:
    """Predicted class indices against a split's own gold labels, groups and schema;
    with ``proba`` (N, C), the guard's probabilities (``TrainResult.probabilities``),
    also the ROC AUC of its toxic score (``toxic_roc_auc``)."""
    m = compute_metrics(
        data.gold_array(),
        pred,
        num_classes=data.schema.num_classes,
        groups=data.group_array(),
        group_names=data.groups,
        safe_mask=data.schema.safe_mask(),
    )
    if proba is None:
        return m
    return m.model_copy(update={"toxic_roc_auc": toxic_auc(data, proba)})


def toxic_auc(data: AnnotatedDataset, proba: np.ndarray) -> float | None:
    """ROC AUC of the toxic score 1 - P(safe) of (N, C) class probabilities, toxic
    against safe gold; None without gold of both kinds (or without a safe class). Every
    item needs gold (``gold_array`` raises a DataError naming the first without)."""
    from sklearn.metrics import roc_auc_score

    safe = np.asarray(data.schema.safe_mask(), dtype=bool)
    y = ~safe[data.gold_array()]
    if not safe.any() or y.all() or not y.any():
        return None
    return float(roc_auc_score(y, 1.0 - proba[:, safe].sum(1)))
