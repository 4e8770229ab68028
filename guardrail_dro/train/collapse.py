"""A warning for a model whose decision is (nearly) constant or misses most toxic items.

Accuracy and worst-group accuracy read well on a skewed split whatever the model does:
on a test split that is 97 % safe, a guard that answers "safe" to every text scores
accuracy 0.97 with a toxic recall of 0, and the bench's table said nothing of it. The
warning names the model, its toxic recall and FPR (or the share of its predictions in
one class) and what always predicting the split's most common class scores on the same
items, so that the reader can compare. ``bench``, ``train`` and ``evaluate`` share it;
``evaluate --guard`` too, on the guard's block / allow decisions (``decision_warning``).

The rule, on the split's gold:

- toxic and safe items (a schema with safe classes): flagged when toxic recall minus FPR
  (informedness, Youden's J) is below ``MIN_INFORMEDNESS``, since every constant guard
  scores 0 there whatever the class mix (all safe: 0 - 0; all toxic: 1 - 1), or when
  toxic recall is below ``MIN_TOXIC_RECALL`` (three toxic items in four missed);
- toxic items only: the recall bar alone; safe items only: nothing to miss, no warning;
- no safe class in the schema: the same chance correction over the classes, balanced
  accuracy (mean recall over the gold classes) rescaled so that any constant
  prediction scores 0 and a perfect one 1, below ``MIN_INFORMEDNESS``.

On toxic-questions (every bench in ``benchmarks/results/``, frozen and full mode) each
method's recall - FPR is 0.32 or more and its recall 0.49 or more, but for
``single:label_3``: recall 1.000 and FPR 1.000, the vendor annotator called every item
toxic and its guard blocks everything, which is what the warning is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from guardrail_dro.data.items import AnnotatedDataset, Item
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.metrics import score_split

__all__ = [
    "MIN_INFORMEDNESS",
    "MIN_TOXIC_RECALL",
    "bench_warnings",
    "collapse_warning",
    "decision_warning",
    "informedness",
]

#: Recall - FPR (or balanced accuracy rescaled to chance) below this: a decision that is
#: nearer a constant one (0) than a useful one. A balanced binary accuracy of 0.6.
MIN_INFORMEDNESS = 0.2
#: Toxic recall below this: the guard misses three toxic items in four, or more.
MIN_TOXIC_RECALL = 0.25

Scores = Mapping[str, float | None]
"""``Metrics.headline()``, or a bench method's mean of it over seeds."""


def informedness(gold: np.ndarray, pred: np.ndarray, num_classes: int) -> float | None:
    """Balanced accuracy (mean recall over the classes in ``gold``) rescaled so that any
    constant prediction scores 0 and a perfect one 1; None with one gold class (nothing
    to tell apart). With two classes it is recall - FPR.

    Example:
        >>> informedness(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2)
        0.0
    """
    present = [c for c in range(num_classes) if np.any(gold == c)]
    if len(present) < 2:
        return None
    balanced = float(np.mean([np.mean(pred[gold == c] == c) for c in present]))
    chance = 1.0 / len(present)
    return (balanced - chance) / (1.0 - chance)


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def collapse_warning(
    who: str,
    split: str,
    data: AnnotatedDataset,
    scores: Scores,
    pred: np.ndarray | None = None,
    *,
    valid: Scores | None = None,
) -> str | None:
    """The warning for ``who``'s ``scores`` on ``data`` (the module's rule), or None.

    Args:
        who: the method or model, as the report names it.
        split: the split's name in the message ("test", "valid").
        scores: its metrics on ``data`` (``accuracy``, ``worst_group_accuracy``,
            ``toxic_recall``, ``toxic_fpr``; means over seeds in the bench).
        pred: its predicted class indices, (N,) or (seeds, N): the share it calls toxic,
            and the rule of a schema without safe classes (no warning there without).
        valid: the same metrics on valid, shown beside (where models are selected).
    """
    gold = data.gold_array()
    if not len(gold):
        return None
    preds = None if pred is None else np.asarray(pred).reshape(-1, len(gold))
    schema = data.schema
    recall, fpr = scores.get("toxic_recall"), scores.get("toxic_fpr")
    if schema.is_binary_decision:
        if recall is None:  # no toxic item: nothing it could miss
            return None
        j = None if fpr is None else recall - fpr
        if recall >= MIN_TOXIC_RECALL and (j is None or j >= MIN_INFORMEDNESS):
            return None
        why = (
            "misses most toxic items"
            if recall < MIN_TOXIC_RECALL
            else "its toxic-vs-safe decision is close to constant"
        )
        what = f"toxic recall {recall:.3f}, FPR {_num(fpr)}"
        if j is not None:
            what += f" (recall - FPR {j:.3f}; a constant guard scores 0)"
        toxic = ~np.asarray(schema.safe_mask(), dtype=bool)
        what += f"; {float(np.mean(toxic[gold])):.1%} of the items are toxic"
        if preds is not None:
            what += f", it calls {float(np.mean(toxic[preds])):.1%} toxic"
        if valid is not None and valid.get("toxic_recall") is not None:
            v_recall, v_fpr = valid.get("toxic_recall"), valid.get("toxic_fpr")
            what += f"; on valid: toxic recall {_num(v_recall)}, FPR {_num(v_fpr)}"
    else:
        if preds is None:
            return None
        score = informedness(np.tile(gold, len(preds)), preds.reshape(-1), schema.num_classes)
        if score is None or score >= MIN_INFORMEDNESS:
            return None
        top = np.bincount(preds.reshape(-1), minlength=schema.num_classes)
        why = "its predictions are close to constant"
        what = (
            f"balanced accuracy rescaled to chance {score:.3f} (a constant prediction "
            f"scores 0); {top.max() / top.sum():.1%} of its predictions are "
            f"{schema.classes[int(top.argmax())]!r}"
        )
    common = int(np.bincount(gold, minlength=schema.num_classes).argmax())
    base = score_split(data, np.full(len(gold), common))
    worst, own_worst = base.worst_group_accuracy, scores.get("worst_group_accuracy")
    return (
        f"{who}: {why} on {split}: {what}. Always predicting the most common class, "
        f"{schema.classes[common]!r}, scores accuracy {base.accuracy:.3f}"
        + ("" if worst is None else f" (worst group {worst:.3f})")
        + f" on the same items; {who} scores {_num(scores.get('accuracy'))}"
        + ("" if worst is None else f" ({_num(own_worst)})")
    )


class _Scored(Protocol):
    mean: dict[str, float | None]
    valid_mean: dict[str, float | None]


def bench_warnings(
    test: AnnotatedDataset, results: Mapping[str, _Scored], preds: Mapping[str, np.ndarray]
) -> list[str]:
    """``collapse_warning`` for each bench method on test (means over its seeds; its
    test predictions where the runs kept them), valid beside."""
    out = []
    for method, r in results.items():
        w = collapse_warning(method, "test", test, r.mean, preds.get(method), valid=r.valid_mean)
        if w is not None:
            out.append(w)
    return out


class _Point(Protocol):
    """Binary metrics of block / allow decisions (``serve.calibration.OperatingPoint``)."""

    @property
    def recall(self) -> float | None: ...
    @property
    def fpr(self) -> float | None: ...
    @property
    def accuracy(self) -> float: ...
    @property
    def worst_group_accuracy(self) -> float | None: ...


def decision_warning(
    who: str, split: str, data: AnnotatedDataset, point: _Point, *, valid: _Point | None = None
) -> str | None:
    """``collapse_warning`` for block / allow decisions (an exported guard's, ``evaluate
    --guard``): the same rule on ``point``'s toxic recall and FPR.

    The guard's metrics are binary (its accuracy counts a toxic text blocked as right
    whatever its class), so the items are judged as toxic or safe too: the baseline is
    the more common of always allowing and always blocking, in binary accuracy, where the
    most common of several classes would be no baseline for it.

    Args:
        who: the guard, as the output names it.
        split: the split's name in the message.
        data: the split, with its own schema (a safe class is needed, as by the guard).
        point: the decisions' binary metrics on ``data`` (``OperatingPoint``).
        valid: the validation point recorded with the guard, shown beside.
    """
    scores = {
        "accuracy": point.accuracy,
        "worst_group_accuracy": point.worst_group_accuracy,
        "toxic_recall": point.recall,
        "toxic_fpr": point.fpr,
    }
    shown = None if valid is None else {"toxic_recall": valid.recall, "toxic_fpr": valid.fpr}
    return collapse_warning(who, split, _toxic_or_safe(data), scores, valid=shown)


_TOXIC_OR_SAFE = LabelSchema(classes=("safe", "toxic"), safe=("safe",))


def _toxic_or_safe(data: AnnotatedDataset) -> AnnotatedDataset:
    """``data``'s items with gold ``toxic`` (a class not safe) or ``safe``, groups kept."""
    safe = set(data.schema.safe)
    items = [
        Item(
            item_id=it.item_id,
            text=it.text,
            gold=None if it.gold is None else "safe" if it.gold in safe else "toxic",
            group=it.group,
        )
        for it in data
    ]
    return AnnotatedDataset(items, _TOXIC_OR_SAFE, name=data.name)
