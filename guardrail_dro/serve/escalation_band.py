"""Choosing an escalation band: where a guard's toxic score is unsure enough to ask an
LLM judge (``serve.escalation`` applies it at run time; its docstring says why).

``choose_band`` picks ``low`` and ``high`` on a labelled validation split on which the
judge's own labels are known (the judge annotated it, e.g. with ``guardrail-dro
annotate``): the lowest validation FPR at recall >= ``target_recall`` with at most
``max_defer`` of the texts sent to the judge. Every pair of candidate edges is scored at
once from prefix counts over the texts sorted by score (exact, not a grid search over
thresholds). An empty band (``low == high``) is the guard alone at threshold ``high``;
it is what a budget of 0 gives, so a band is never worse on validation than the guard's
own best threshold for the same recall target.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from guardrail_dro.errors import ConfigError, DataError

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.serve.guard import Guard

__all__ = [
    "BandPoint",
    "EscalationBand",
    "band_predictions",
    "calibrate_escalation",
    "calibration_arrays",
    "choose_band",
    "judge_verdicts",
]

MAX_CUTS = 400
"""Candidate band edges ``choose_band`` tries (evenly spaced over the distinct scores):
400 x 400 pairs are scored at once in numpy, milliseconds for any validation size."""


class BandPoint(BaseModel):
    """Binary metrics of a band (or of the guard alone) on the split it was measured on."""

    model_config = ConfigDict(frozen=True)

    recall: float = Field(description="Share of the toxic texts blocked.")
    fpr: float = Field(description="Share of the safe texts blocked.")
    deferred: float = Field(description="Share of the texts sent to the judge.")
    items: int = Field(description="Texts measured.")


class EscalationBand(BaseModel):
    """Where the guard asks the judge, chosen on validation (module docstring)."""

    model_config = ConfigDict(frozen=True)

    low: float = Field(description="Toxic scores from here up to high go to the judge.")
    high: float = Field(description="Toxic scores from here up are violations (> 1: none).")
    judge: str = Field(description="The annotator whose validation labels chose the band.")
    target_recall: float
    max_defer: float
    valid: BandPoint
    guard_alone: BandPoint | None = Field(
        None, description="The guard's own best threshold for the same recall target."
    )

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.model_dump_json(indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> EscalationBand:
        """Raises ConfigError when the file is missing or not a band."""
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: not an escalation band ({exc})") from exc


def band_predictions(
    scores: np.ndarray, judge_toxic: np.ndarray, low: float, high: float
) -> tuple[np.ndarray, np.ndarray]:
    """(blocked, deferred) boolean arrays of a band applied to toxic scores, the judge's
    verdicts standing in for the texts in the band."""
    s = np.asarray(scores, dtype=np.float64)
    deferred = (s >= low) & (s < high)
    blocked = np.where(deferred, np.asarray(judge_toxic, dtype=bool), s >= high)
    return blocked, deferred


def _above(scores: np.ndarray) -> float:
    """A threshold no score reaches."""
    return math.nextafter(max(1.0, float(np.max(scores, initial=0.0))), math.inf)


def choose_band(
    scores: np.ndarray,
    toxic: np.ndarray,
    judge_toxic: np.ndarray,
    *,
    target_recall: float = 0.90,
    max_defer: float = 0.20,
    judge: str = "judge",
) -> EscalationBand:
    """The band with the lowest FPR at recall >= ``target_recall`` sending at most
    ``max_defer`` of the texts to the judge (ties: fewer deferred, then higher recall).

    Args:
        scores: (N,) the guard's toxic scores on a labelled split.
        toxic: (N,) bool, the split's gold: True where the text is not safe.
        judge_toxic: (N,) bool, the judge's verdict on each text (its label not safe).
        target_recall, max_defer: in [0, 1].

    Raises:
        ConfigError: a target or budget outside [0, 1]. (Some band always qualifies:
            blocking every text has recall 1 and sends none to the judge.)
        DataError: arrays of different lengths, or a split without both safe and toxic
            texts.
    """
    for name, v in (("target_recall", target_recall), ("max_defer", max_defer)):
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], not {v!r}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(toxic, dtype=bool)
    j = np.asarray(judge_toxic, dtype=bool)
    if not len(s) == len(y) == len(j):
        raise DataError(
            f"scores, gold and judge verdicts differ in length: {len(s)}, {len(y)}, {len(j)}"
        )
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        raise DataError(
            f"choosing a band needs safe and toxic texts; this split has {n_pos} toxic "
            f"and {n_neg} safe"
        )
    order = np.argsort(s, kind="stable")
    s, y, j = s[order], y[order], j[order]
    n = len(s)
    # Cut k: the first k texts (the lowest scores) on one side. Only between distinct
    # scores, so texts with equal scores always fall in the same region.
    cuts = np.flatnonzero(np.r_[True, s[1:] > s[:-1], True])
    if len(cuts) > MAX_CUTS:
        cuts = np.unique(cuts[np.linspace(0, len(cuts) - 1, MAX_CUTS).round().astype(int)])

    def prefix(mask: np.ndarray) -> np.ndarray:
        return np.r_[0, np.cumsum(mask)][cuts]

    pos, neg = prefix(y), prefix(~y)
    jpos, jneg = prefix(y & j), prefix(~y & j)
    lo, hi = np.meshgrid(np.arange(len(cuts)), np.arange(len(cuts)), indexing="ij")
    tp = (n_pos - pos[hi]) + (jpos[hi] - jpos[lo])
    fp = (n_neg - neg[hi]) + (jneg[hi] - jneg[lo])
    recall, fpr = tp / n_pos, fp / n_neg
    deferred = (cuts[hi] - cuts[lo]) / n
    ok = (lo <= hi) & (recall >= target_recall - 1e-12) & (deferred <= max_defer + 1e-12)
    # Never empty: both edges at the lowest score block everything (recall 1, no judge).
    key = np.lexsort((-recall[ok], deferred[ok], fpr[ok]))[0]
    a, b = lo[ok][key], hi[ok][key]
    top = _above(s)

    def edge(c: int) -> float:
        return float(s[cuts[c]]) if cuts[c] < n else top

    alone = (lo == hi) & (recall >= target_recall - 1e-12)
    guard_alone = None
    if alone.any():
        k = np.lexsort((-recall[alone], fpr[alone]))[0]
        guard_alone = BandPoint(
            recall=float(recall[alone][k]), fpr=float(fpr[alone][k]), deferred=0.0, items=n
        )
    return EscalationBand(
        low=edge(a),
        high=edge(b),
        judge=judge,
        target_recall=target_recall,
        max_defer=max_defer,
        valid=BandPoint(
            recall=float(recall[a, b]),
            fpr=float(fpr[a, b]),
            deferred=float(deferred[a, b]),
            items=n,
        ),
        guard_alone=guard_alone,
    )


def judge_verdicts(dataset: AnnotatedDataset, judge: str) -> np.ndarray:
    """(N,) int: 1 where ``judge`` labelled the text with a class that is not safe, 0
    with a safe one, -1 where it gave no label.

    Raises:
        DataError: ``judge`` is not one of the dataset's annotators.
    """
    if judge not in dataset.annotators:
        raise DataError(
            f"{dataset.name or 'dataset'}: no annotator {judge!r} (annotators: "
            f"{list(dataset.annotators)}); annotate the split with the judge first "
            "(guardrail-dro annotate)"
        )
    labels = dataset.label_matrix([judge])[:, 0]
    safe = np.asarray(dataset.schema.safe_mask(), dtype=bool)
    return np.where(labels < 0, -1, (~safe[np.maximum(labels, 0)]).astype(int))


def calibration_arrays(
    guard: Guard, valid: AnnotatedDataset, judge: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``choose_band`` reads, from a labelled split: the guard's own toxic scores
    (its decisions on the texts, windows and all), the gold (True: not safe) and the
    judge's verdicts (True: the annotator column ``judge`` gave a class that is not
    safe). Texts the judge did not label, or the guard could not score (degraded), are
    left out.

    Raises:
        DataError: no gold, no such annotator, fewer than 2 texts left.
        ConfigError: the guard's classes are not the split's.
    """
    if tuple(guard.labels) != tuple(valid.schema.classes):
        raise ConfigError(
            f"the guard's classes {list(guard.labels)} are not the split's "
            f"{list(valid.schema.classes)}"
        )
    gold = valid.gold_array()
    verdict = judge_verdicts(valid, judge)
    results = guard.decide_many(valid.texts)
    scores = np.array([r.toxic_score for r in results])
    keep = (verdict >= 0) & np.array([not r.degraded and r.windows > 0 for r in results])
    if keep.sum() < 2:
        raise DataError(
            f"{valid.name or 'dataset'}: {int(keep.sum())} texts both scored and labelled "
            f"by {judge!r}; a band needs more"
        )
    safe = np.asarray(valid.schema.safe_mask(), dtype=bool)
    return scores[keep], ~safe[gold[keep]], verdict[keep] == 1


def calibrate_escalation(
    guard: Guard,
    valid: AnnotatedDataset,
    judge: str,
    *,
    target_recall: float = 0.90,
    max_defer: float = 0.20,
) -> EscalationBand:
    """``choose_band`` on a labelled split (``calibration_arrays``).

    Raises:
        DataError, ConfigError: as ``calibration_arrays`` and ``choose_band``.
    """
    return choose_band(
        *calibration_arrays(guard, valid, judge),
        target_recall=target_recall,
        max_defer=max_defer,
        judge=judge,
    )
