"""Annotators as judges: each annotator's own labels scored on the test split.

No training: an LLM (or a person) that labels every text is itself a guard, and the
reference the trained methods are compared with in the bench. Each annotator is scored
on the test items it labelled (``items`` says how many) against the gold labels: plain
multi-class accuracy, and the binary toxic-vs-safe decision (toxic = any class not in
``schema.safe``): accuracy, toxic precision / recall / FPR, and the worst group's binary
accuracy. Binary metrics are None when the schema names no safe class. The numbers come
from ``train.metrics.compute_metrics``, as the trained methods do.

The cost per 1,000 texts is given by the caller (``JudgeInfo.usd_per_1k``): pricing
lives in ``annotators``, which ``guardrail_dro`` never imports (the command line does).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.train.metrics import compute_metrics

__all__ = ["JudgeInfo", "JudgeResult", "judge_table", "score_judge", "score_judges"]


class JudgeInfo(BaseModel):
    """What is known of an annotator beyond its labels."""

    model_config = ConfigDict(frozen=True)

    who: str | None = None
    """A readable name ("GPT-4", "human 1")."""
    model: str | None = None
    """The model id (None: a person, or unknown)."""
    usd_per_1k: float | None = None
    """Estimated USD to label 1,000 texts like the test split's (None: unknown or human)."""


class JudgeResult(BaseModel):
    """One annotator's labels scored as a judge on the test split."""

    annotator: str
    who: str | None = None
    model: str | None = None
    items: int
    """Test items the annotator labelled (the ones scored)."""
    of_items: int
    """Test items in all."""
    accuracy: float | None
    """Multi-class accuracy (every class of the schema)."""
    binary_accuracy: float | None = None
    toxic_precision: float | None = None
    toxic_recall: float | None = None
    toxic_fpr: float | None = None
    worst_group_binary_accuracy: float | None = None
    worst_group: str | None = None
    usd_per_1k: float | None = None


def score_judge(
    test: AnnotatedDataset, annotator: str, info: JudgeInfo | None = None
) -> JudgeResult:
    """Score ``annotator``'s labels on the items of ``test`` it labelled, with the same
    ``compute_metrics`` the trained methods are scored with: once over every class
    (accuracy; toxic precision / recall / FPR), once on the toxic-vs-safe decision
    (binary accuracy, per group).

    Raises:
        DataError: ``test`` lacks gold labels (``gold_array``).
        KeyError: ``annotator`` did not label ``test``.
    """
    info = info or JudgeInfo()
    gold = test.gold_array()
    col = test.label_matrix([annotator])[:, 0]
    seen = col >= 0
    y, p = gold[seen], col[seen]
    out = JudgeResult(
        annotator=annotator,
        who=info.who,
        model=info.model,
        items=int(seen.sum()),
        of_items=len(test),
        accuracy=None,
        usd_per_1k=info.usd_per_1k,
    )
    if not len(y):
        return out
    safe = test.schema.safe_mask()
    m = compute_metrics(y, p, num_classes=test.schema.num_classes, safe_mask=safe)
    out = out.model_copy(update={"accuracy": m.accuracy})
    if not test.schema.is_binary_decision:
        return out
    toxic = ~np.asarray(safe, dtype=bool)
    b = compute_metrics(
        toxic[y].astype(np.int64),
        toxic[p].astype(np.int64),
        num_classes=2,
        groups=test.group_array()[seen],
        group_names=test.groups,
    )
    return out.model_copy(
        update={
            "binary_accuracy": b.accuracy,
            "toxic_precision": m.toxic_precision,
            "toxic_recall": m.toxic_recall,
            "toxic_fpr": m.toxic_fpr,
            "worst_group_binary_accuracy": b.worst_group_accuracy,
            "worst_group": b.worst_group,
        }
    )


def score_judges(
    test: AnnotatedDataset, info: Mapping[str, JudgeInfo] | None = None
) -> dict[str, JudgeResult]:
    """Every annotator of ``test`` as a judge (``score_judge``), by annotator id.

    Without ``info`` for an annotator, its model is the ``model`` its annotations carry
    (what ``annotate`` writes), if any.
    """
    info = info or {}
    out = {}
    for a in test.annotators:
        known = info.get(a)
        if known is None:
            model = next(
                (x.model for it in test for x in it.annotations if x.annotator == a and x.model),
                None,
            )
            known = JudgeInfo(model=model)
        out[a] = score_judge(test, a, known)
    return out


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def judge_table(judges: Mapping[str, JudgeResult]) -> str:
    """A markdown table of the judges, best worst-group binary accuracy first."""
    head = (
        "annotator as judge",
        "items labelled",
        "acc (all classes)",
        "binary acc",
        "worst-group binary acc",
        "toxic precision",
        "toxic recall",
        "toxic FPR",
        "USD / 1k texts",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(judges.values(), key=lambda j: -(j.worst_group_binary_accuracy or 0.0))
    for j in order:
        name = f"`{j.annotator}`" + (f" ({j.who})" if j.who else "")
        if j.usd_per_1k is not None:
            cost = f"{j.usd_per_1k:.2f}"
        else:
            cost = "n/a" if j.model is None else f"no price for {j.model}"
        cells = [
            name,
            f"{j.items} / {j.of_items}",
            _num(j.accuracy),
            _num(j.binary_accuracy),
            _num(j.worst_group_binary_accuracy),
            _num(j.toxic_precision),
            _num(j.toxic_recall),
            _num(j.toxic_fpr),
            cost,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
