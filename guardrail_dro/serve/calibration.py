"""Operating points of the toxic score: where to put the guard's threshold.

A guard blocks a text when its toxic score (1 - P(safe classes)) reaches a threshold.
Which threshold is a choice between recall (toxic texts blocked) and false positives
(safe texts blocked), so it is made on a labelled validation split, never guessed:

- ``operating_curve(scores, positive, groups)``: every threshold that changes a
  decision, with the binary precision, recall, FPR, accuracy and worst-group accuracy
  there (scikit-learn's ``roc_curve`` counts the hits; per group, sorted searches);
- ``OperatingCurve.choose(objective, target)``: the point an objective picks:
  ``target_recall`` (the lowest FPR with recall >= target), ``target_fpr`` (the highest
  recall with FPR <= target), ``worst_group_accuracy`` (the default: the best binary
  accuracy of the worst group) or ``worst_group_balanced_accuracy`` (the best balanced
  accuracy, the mean of recall and 1 - FPR, of the worst group); ties go to the better
  overall accuracy, then to the lower FPR;
- ``OperatingCurve.compact()``: about 150-300 points kept so that every target on a 0.01
  grid still picks exactly the point the full curve picks; ``guard.json`` stores this,
  so ``Policy(target_recall=...)`` moves the guard along it at load time without data;
- ``binary_metrics(blocked, positive, groups)``: the same numbers for decisions made
  elsewhere (``guardrail-dro evaluate --guard``); None where a split lacks a kind.

Plain accuracy weighs toxic and safe texts by their share in the validation split; a
red-team split is mostly toxic (toxic-questions valid: 84%), so its accuracy-best point
blocked 59% of the safe test questions there. Balanced accuracy ignores the class mix
(test recall 0.78 at FPR 0.27 there): the choice for mostly-safe traffic.

Thresholds sit halfway between consecutive distinct scores, so a decision never hangs
on the last bit of a float that another runtime may round the other way.

Pure numpy and pydantic at import (the serving side reads the stored curve);
scikit-learn loads only when a curve is computed (the ``export`` and ``train`` extras).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardrail_dro.errors import ConfigError, require

__all__ = [
    "DEFAULT_OBJECTIVE",
    "OBJECTIVES",
    "Calibration",
    "Objective",
    "OperatingCurve",
    "OperatingPoint",
    "binary_metrics",
    "operating_curve",
    "softmax",
    "toxic_scores",
]

Objective = Literal[
    "worst_group_balanced_accuracy", "worst_group_accuracy", "target_recall", "target_fpr", "fixed"
]
OBJECTIVES: tuple[str, ...] = (
    "worst_group_balanced_accuracy",
    "worst_group_accuracy",
    "target_recall",
    "target_fpr",
)
#: The objective when the user names none: the issue's measure, and the one whose int8
#: gate passes on toxic-questions (at the balanced point every int8 recipe moved one
#: text of a 74-text worst group: 1.35 points, over the 1-point gate).
DEFAULT_OBJECTIVE = "worst_group_accuracy"
_UNTARGETED = ("worst_group_balanced_accuracy", "worst_group_accuracy")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities of (N, C) logits in float64: the one softmax the guard's
    decision (``DecisionRule``), calibration and the int8 gate all use, so a threshold
    chosen on one is the threshold applied by the others."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def toxic_scores(logits: np.ndarray, safe: np.ndarray) -> np.ndarray:
    """1 - P(safe classes) per row of (N, C) logits, computed as ``DecisionRule`` does."""
    return np.maximum(1.0 - softmax(logits)[:, np.asarray(safe, dtype=bool)].sum(axis=1), 0.0)


class OperatingPoint(BaseModel):
    """Binary metrics of one threshold (blocked = toxic score >= threshold); None: undefined."""

    model_config = ConfigDict(frozen=True)

    threshold: float = Field(ge=0, le=1)
    precision: float | None = Field(description="Blocked texts that are toxic (None: none).")
    recall: float | None = Field(description="Toxic texts blocked (None: no toxic texts).")
    fpr: float | None = Field(description="Safe texts blocked (None: no safe texts).")
    accuracy: float = Field(description="Binary accuracy (toxic blocked, safe allowed).")
    worst_group_accuracy: float | None = Field(None, description="Lowest per-group accuracy.")
    worst_group: str | None = None
    worst_group_balanced_accuracy: float | None = Field(
        None, description="Lowest per-group mean of recall and 1 - FPR (of the terms a group has)."
    )

    @property
    def balanced_accuracy(self) -> float:
        """The mean of recall and 1 - FPR (accuracy as if toxic and safe were equally
        common), or the one of the two a split of one kind has."""
        safe = None if self.fpr is None else 1 - self.fpr
        terms = [t for t in (self.recall, safe) if t is not None]
        return sum(terms) / len(terms)


class OperatingCurve(BaseModel):
    """One column per metric, one entry per threshold, thresholds descending (so recall
    and FPR never decrease along the curve)."""

    model_config = ConfigDict(frozen=True)

    threshold: tuple[float, ...]
    precision: tuple[float, ...]  # 1.0 where none blocked (old readers need one); point: None
    recall: tuple[float, ...]
    fpr: tuple[float, ...]
    accuracy: tuple[float, ...]
    worst_group_accuracy: tuple[float, ...] = ()
    worst_group: tuple[str, ...] = ()
    worst_group_balanced_accuracy: tuple[float, ...] = ()  # absent in older guard.json files
    positives: int = Field(ge=1, description="Toxic texts in the split.")
    negatives: int = Field(ge=1, description="Safe texts in the split.")

    @model_validator(mode="after")
    def _check(self) -> OperatingCurve:
        n = len(self.threshold)
        cols = (self.precision, self.recall, self.fpr, self.accuracy)
        grouped = (self.worst_group_accuracy, self.worst_group, self.worst_group_balanced_accuracy)
        if n == 0 or any(len(c) != n for c in cols) or any(len(c) not in (0, n) for c in grouped):
            raise ValueError("an operating curve needs >= 1 point and columns of equal length")
        if any(a < b for a, b in zip(self.threshold, self.threshold[1:], strict=False)):
            raise ValueError("operating curve thresholds must be in descending order")
        return self

    def __len__(self) -> int:
        return len(self.threshold)

    def point(self, i: int) -> OperatingPoint:
        grouped = bool(self.worst_group_accuracy)
        return OperatingPoint(
            threshold=self.threshold[i],
            precision=None if self.recall[i] == self.fpr[i] == 0 else self.precision[i],
            recall=self.recall[i],
            fpr=self.fpr[i],
            accuracy=self.accuracy[i],
            worst_group_accuracy=self.worst_group_accuracy[i] if grouped else None,
            worst_group=self.worst_group[i] if grouped else None,
            worst_group_balanced_accuracy=self.worst_group_balanced_accuracy[i]
            if self.worst_group_balanced_accuracy
            else None,
        )

    def index(self, objective: str = DEFAULT_OBJECTIVE, target: float | None = None) -> int:
        """The index of the point ``objective`` picks (see the module docstring).

        Raises:
            ConfigError: an unknown objective, a target missing or outside (0, 1], an FPR
                target no threshold reaches.
        """
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {list(OBJECTIVES)}, not {objective!r}")
        if objective in _UNTARGETED:
            if target is not None:
                raise ConfigError(f"the {objective} objective takes no target")
            # Without groups the whole split is the one group.
            if objective == "worst_group_accuracy":
                worst = np.asarray(self.worst_group_accuracy or self.accuracy)
            elif self.worst_group_balanced_accuracy:
                worst = np.asarray(self.worst_group_balanced_accuracy)
            else:
                worst = (np.asarray(self.recall) + 1.0 - np.asarray(self.fpr)) / 2
            return _best_worst_group(worst, np.asarray(self.accuracy))
        if target is None or isinstance(target, bool) or not 0 < target <= 1:
            raise ConfigError(f"{objective} needs a target in (0, 1], not {target!r}")
        recall, fpr = np.asarray(self.recall), np.asarray(self.fpr)
        if objective == "target_recall":
            # Recall and FPR only grow along the curve: the first point reaching the
            # target has the lowest FPR; among points with that FPR, the last has the
            # most recall.
            i = int(np.argmax(recall >= target - 1e-12))
            if recall[i] < target - 1e-12:  # a compacted curve that stops short
                i = len(recall) - 1
            return int(np.flatnonzero(fpr == fpr[i])[-1])
        ok = np.flatnonzero(fpr <= target + 1e-12)
        if not len(ok):
            raise ConfigError(
                f"no threshold reaches FPR <= {target} on this curve (lowest: {fpr.min():.4f})"
            )
        return int(np.flatnonzero(recall == recall[ok[-1]])[0])

    def choose(
        self, objective: str = DEFAULT_OBJECTIVE, target: float | None = None
    ) -> OperatingPoint:
        """The point ``objective`` picks; raises as ``index``."""
        return self.point(self.index(objective, target))

    def compact(self, keep: Sequence[int] = ()) -> OperatingCurve:
        """At most ~300 points: for every target on a 0.01 grid the point each target
        objective picks, so choosing on the compact curve with such a target gives the
        full curve's point; ``keep``; and 100 evenly spaced points for the picture."""
        grid = np.round(np.linspace(0.01, 1.0, 100), 2)
        idx = {*np.linspace(0, len(self) - 1, 100).round().astype(int).tolist(), *keep}
        idx |= {self.index("target_recall", float(t)) for t in grid}
        fpr = np.asarray(self.fpr)
        idx |= {self.index("target_fpr", float(t)) for t in grid if fpr.min() <= t}
        sel = sorted(idx)
        cols = {
            name: tuple(getattr(self, name)[i] for i in sel) if getattr(self, name) else ()
            for name in (
                "threshold",
                "precision",
                "recall",
                "fpr",
                "accuracy",
                "worst_group_accuracy",
                "worst_group",
                "worst_group_balanced_accuracy",
            )
        }
        return OperatingCurve(**cols, positives=self.positives, negatives=self.negatives)


def _best_worst_group(worst: np.ndarray, overall: np.ndarray) -> int:
    """Best worst-group accuracy, ties to the best overall accuracy, then to the lowest
    FPR (the first such point: FPR never decreases along the curve)."""
    best = np.flatnonzero(np.isclose(worst, worst.max(), rtol=0, atol=1e-12))
    best = best[np.isclose(overall[best], overall[best].max(), rtol=0, atol=1e-12)]
    return int(best[0])


def _as_inputs(scores, positive, groups):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(positive).reshape(-1).astype(bool)
    if len(s) != len(y):
        raise ConfigError(f"{len(s)} scores but {len(y)} gold labels")
    if len(s) and not np.isfinite(s).all():
        raise ConfigError("toxic scores must be finite")
    g = None if groups is None else np.asarray(groups).reshape(-1)
    if g is not None and len(g) != len(s):
        raise ConfigError(f"{len(s)} scores but {len(g)} group ids")
    return s, y, g


def operating_curve(
    scores: np.ndarray,
    positive: np.ndarray,
    groups: np.ndarray | None = None,
    group_names: Sequence[str] | None = None,
) -> OperatingCurve:
    """Every threshold that changes a decision on this split, with its metrics.

    Args:
        scores: (N,) toxic scores in [0, 1].
        positive: (N,) bool: the gold class is not safe.
        groups: (N,) int group index per text (-1: none; counted overall only), or None.
        group_names: names of the group indices (default their numbers).

    Raises:
        ConfigError: lengths differ, scores not finite, or the split lacks toxic or safe
            texts (no recall or no FPR to measure).

    Example:
        >>> c = operating_curve(np.array([0.9, 0.6, 0.2]), np.array([1, 0, 0]))
        >>> c.choose("target_recall", 1.0).fpr
        0.0
    """
    require("sklearn", "export")
    from sklearn.metrics import roc_curve

    s, y, g = _as_inputs(scores, positive, groups)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        raise ConfigError(
            f"calibration needs toxic and safe texts with gold labels; this split has "
            f"{n_pos} toxic and {n_neg} safe"
        )
    fpr, tpr, cuts = roc_curve(y, s, drop_intermediate=False)
    # cuts[0] is inf (nothing blocked), then the distinct scores descending; each
    # threshold goes halfway down to the next lower score (0 below the lowest).
    distinct = cuts[1:]
    lower = np.append(distinct[1:], 0.0)
    thr = np.concatenate([[(1.0 + distinct[0]) / 2], (distinct + lower) / 2])
    if distinct[0] >= 1.0:  # a score of exactly 1 cannot be left unblocked
        fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]
    tp, fp = tpr * n_pos, fpr * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    accuracy = (tp + n_neg - fp) / (n_pos + n_neg)
    worst_acc: tuple[float, ...] = ()
    worst_name: tuple[str, ...] = ()
    worst_bal: tuple[float, ...] = ()
    if g is not None and (g >= 0).any():
        ids = np.unique(g[g >= 0])
        names = [str(group_names[k]) if group_names else str(k) for k in ids]
        accs = np.stack([_group_accuracy(s[g == k], y[g == k], thr) for k in ids])
        which = accs.argmin(axis=0)
        worst_acc = tuple(accs.min(axis=0).tolist())
        worst_name = tuple(names[k] for k in which)
        bals = np.stack([_group_balanced(s[g == k], y[g == k], thr) for k in ids])
        worst_bal = tuple(bals.min(axis=0).tolist())
    return OperatingCurve(
        threshold=tuple(np.clip(thr, 0.0, 1.0).tolist()),
        precision=tuple(precision.tolist()),
        recall=tuple(tpr.tolist()),
        fpr=tuple(fpr.tolist()),
        accuracy=tuple(accuracy.tolist()),
        worst_group_accuracy=worst_acc,
        worst_group=worst_name,
        worst_group_balanced_accuracy=worst_bal,
        positives=n_pos,
        negatives=n_neg,
    )


def _group_accuracy(s: np.ndarray, y: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Binary accuracy of one group at every threshold (blocked: score >= threshold)."""
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    tp = len(pos) - np.searchsorted(pos, thr, side="left")
    tn = np.searchsorted(neg, thr, side="left")
    return (tp + tn) / len(s)


def _group_balanced(s: np.ndarray, y: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Balanced accuracy of one group at every threshold: the mean of its recall and its
    1 - FPR, or the one of the two it has (a group with only toxic texts: its recall)."""
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    terms = []
    if len(pos):
        terms.append((len(pos) - np.searchsorted(pos, thr, side="left")) / len(pos))
    if len(neg):
        terms.append(np.searchsorted(neg, thr, side="left") / len(neg))
    return np.mean(terms, axis=0)


def binary_metrics(
    blocked: np.ndarray,
    positive: np.ndarray,
    groups: np.ndarray | None = None,
    group_names: Sequence[str] | None = None,
    *,
    threshold: float = 0.5,
) -> OperatingPoint:
    """The operating point of decisions already made (``blocked``), e.g. by a ``Guard``
    at ``threshold``. A ratio with nothing to count is None, not a 0 or 1 that reads as
    a result: recall on safe texts only, FPR on toxic only, precision with none blocked.

    Raises:
        ConfigError: lengths differ, or no texts.
    """
    require("sklearn", "export")
    from sklearn.metrics import accuracy_score, confusion_matrix

    b, y, g = _as_inputs(blocked, positive, groups)
    if not len(y):
        raise ConfigError("binary metrics need texts with gold labels; this split has none")
    b = b.astype(bool)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, b, labels=[False, True]).ravel())
    worst, worst_name, worst_bal = None, None, None
    if g is not None and (g >= 0).any():
        ks = np.unique(g[g >= 0])
        accs = {int(k): float(accuracy_score(y[g == k], b[g == k])) for k in ks}
        k = min(accs, key=accs.__getitem__)
        worst, worst_name = accs[k], str(group_names[k]) if group_names else str(k)
        # per group: the mean of the recall and 1 - FPR it has (one score as threshold)
        worst_bal = min(
            float(_group_balanced(b[g == k].astype(float), y[g == k], np.array([0.5]))[0])
            for k in ks
        )
    return OperatingPoint(
        threshold=threshold,
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / (tp + fn) if tp + fn else None,
        fpr=fp / (fp + tn) if fp + tn else None,
        accuracy=(tp + tn) / len(y),
        worst_group_accuracy=worst,
        worst_group=worst_name,
        worst_group_balanced_accuracy=worst_bal,
    )


class Calibration(BaseModel):
    """How the guard's toxic threshold was chosen (``guard.json``'s ``calibration``)."""

    model_config = ConfigDict(frozen=True)

    calibrated: bool = Field(description="False: the threshold was not chosen on data.")
    objective: Objective | None = None
    target: float | None = Field(None, description="The target recall or FPR, if any.")
    split: str | None = Field(None, description="The validation data it was chosen on.")
    split_hash: str | None = Field(None, description="That split's content hash.")
    items: int = Field(0, ge=0, description="Texts in that split.")
    point: OperatingPoint | None = Field(None, description="Validation metrics at the threshold.")
    curve: OperatingCurve | None = Field(None, description="The compact validation curve.")
    per_class: str = Field("", description="What was measured about per-class thresholds.")
    note: str = ""
