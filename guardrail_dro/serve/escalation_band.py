"""Choosing an escalation band: where a guard's toxic score is unsure enough to ask an
LLM judge (``serve.escalation`` applies it at run time; its docstring says why).

``choose_band`` picks ``low`` and ``high`` on a labelled validation split on which the
judge's own labels are known (the judge annotated it, e.g. with ``guardrail-dro
annotate``): the lowest validation FPR at recall >= ``target_recall`` with at most
``max_defer`` of the texts sent to the judge. The search is exact over every pair of
edges between distinct scores: for each upper edge the best lower edge is found by a
binary search over prefix counts of the texts sorted by score (O(n log n)). An empty
band (``low == high``) is the guard alone at threshold ``high``; it is what a budget of
0 gives, so on validation a band is never worse than the guard's own best threshold for
the same recall target.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guardrail_dro.errors import ConfigError, DataError
from guardrail_dro.serve.escalation_guard import (
    GuardIdentity,
    band_guard,
    guard_safe_classes,
    judge_schema,
)

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.serve.guard import Guard

__all__ = [
    "BandPoint",
    "EscalationBand",
    "GuardIdentity",
    "band_guard",
    "band_notes",
    "band_predictions",
    "calibrate_escalation",
    "calibration_arrays",
    "choose_band",
    "guard_safe_classes",
    "judge_schema",
    "judge_verdicts",
]


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

    low: float = Field(
        ge=0, allow_inf_nan=False, description="Toxic scores from here up to high go to the judge."
    )
    high: float = Field(
        ge=0,
        allow_inf_nan=False,
        description="Toxic scores from here up are violations (> 1: none).",
    )
    judge: str = Field(description="The annotator whose validation labels chose the band.")
    target_recall: float = Field(ge=0, le=1)
    max_defer: float = Field(ge=0, le=1)
    valid: BandPoint
    guard_alone: BandPoint | None = Field(
        None, description="The guard's own best threshold for the same recall target."
    )
    guard: GuardIdentity | None = Field(
        None, description="The guard whose scores chose the band (None: not recorded)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> EscalationBand:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self

    def save(self, path: str | Path) -> Path:
        """Write the band as JSON to ``path`` (its folder made if need be)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.model_dump_json(indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> EscalationBand:
        """Raises ConfigError when the file is missing or not a band."""
        p = Path(path)
        try:
            return cls.model_validate_json(p.read_text())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "the file"
            raise ConfigError(
                f"{p}: not an escalation band ({exc.error_count()} problem(s); first: "
                f"{where}: {first['msg']}); write one with guardrail-dro escalation --out"
            ) from None
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
    guard: GuardIdentity | None = None,
) -> EscalationBand:
    """The band with the lowest FPR at recall >= ``target_recall`` sending at most
    ``max_defer`` of the texts to the judge (ties: fewer deferred, then higher recall).

    Args:
        scores: (N,) the guard's toxic scores on a labelled split.
        toxic: (N,) bool, the split's gold: True where the text is not safe.
        judge_toxic: (N,) bool, the judge's verdict on each text (its label not safe).
        target_recall, max_defer: in [0, 1].
        judge, guard: the judge's and the guard's names, recorded in the band
            (``GuardIdentity.of(guard)``: applied to another, ``EscalatingGuard`` warns).

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
    if not np.isfinite(s).all():
        raise DataError(f"{int((~np.isfinite(s)).sum())} toxic scores are not finite numbers")
    s = np.maximum(s, 0.0)  # as the guard's own score (float rounding: -2.2e-16), edges >= 0
    order = np.argsort(s, kind="stable")
    s, y, j = s[order], y[order], j[order]
    n = len(s)
    # Cut k: the first k texts (the lowest scores) on one side. Only between distinct
    # scores, so texts with equal scores always fall in the same region.
    cuts = np.flatnonzero(np.r_[True, s[1:] > s[:-1], True])

    def prefix(mask: np.ndarray) -> np.ndarray:
        return np.r_[0, np.cumsum(mask)][cuts]

    pos, neg = prefix(y), prefix(~y)
    jpos, jneg = prefix(y & j), prefix(~y & j)
    need = math.ceil(target_recall * n_pos - 1e-9)  # toxic texts a band must block
    budget = math.floor(max_defer * n + 1e-9)  # texts it may send to the judge
    # For an upper edge hi, every lower edge lo <= hi in reach of the budget with enough
    # recall qualifies, and the largest of them has the fewest false positives (the
    # judge's and the guard's false positives only grow as lo moves down) and the
    # fewest judge calls: so one lo per hi, found by binary search (exact for any
    # number of distinct scores, O(n log n)).
    hi = np.arange(len(cuts))
    # Recall: (n_pos - pos[hi]) + jpos[hi] - jpos[lo] >= need, i.e. jpos[lo] <= limit[hi].
    limit = (n_pos - pos + jpos) - need
    lo_recall = np.searchsorted(jpos, limit, side="right") - 1
    lo = np.minimum(lo_recall, hi)
    lo_budget = np.searchsorted(cuts, cuts - budget, side="left")
    ok = (lo >= lo_budget) & (lo >= 0)
    # Never empty: both edges at the lowest score block everything (recall 1, no judge).
    lo_c = np.maximum(lo, 0)
    tp = (n_pos - pos) + (jpos - jpos[lo_c])
    fp = (n_neg - neg) + (jneg - jneg[lo_c])
    calls = cuts - cuts[lo_c]
    key = np.lexsort((-tp[ok], calls[ok], fp[ok]))[0]
    b = int(hi[ok][key])
    a = int(lo_c[b])
    top = _above(s)

    def edge(c: int) -> float:
        return float(s[cuts[c]]) if cuts[c] < n else top

    alone_tp, alone_fp = n_pos - pos, n_neg - neg
    alone = alone_tp >= need
    k = np.lexsort((-alone_tp[alone], alone_fp[alone]))[0]
    guard_alone = BandPoint(
        recall=float(alone_tp[alone][k] / n_pos),
        fpr=float(alone_fp[alone][k] / n_neg),
        deferred=0.0,
        items=n,
    )
    return EscalationBand(
        low=edge(a),
        high=edge(b),
        judge=judge,
        target_recall=target_recall,
        max_defer=max_defer,
        valid=BandPoint(
            recall=float(tp[b] / n_pos),
            fpr=float(fp[b] / n_neg),
            deferred=float(calls[b] / n),
            items=n,
        ),
        guard_alone=guard_alone,
        guard=guard,
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
    (``band_guard``'s, windows and all: load the guard with the precision you will
    serve), the gold (True: not safe) and the judge's verdicts (True: the annotator
    column ``judge`` gave a class that is not safe). Texts the judge did not label, or
    the guard could not score (degraded), are left out.

    Raises:
        DataError: no gold, no such annotator, fewer than 2 texts left, not both safe
            and toxic texts among those the judge labelled (before any is scored).
        ConfigError: the guard's classes are not the split's.
    """
    if tuple(guard.labels) != tuple(valid.schema.classes):
        raise ConfigError(
            f"the guard's classes {list(guard.labels)} are not the split's "
            f"{list(valid.schema.classes)}"
        )
    gold = valid.gold_array()
    verdict = judge_verdicts(valid, judge)
    safe = np.asarray(valid.schema.safe_mask(), dtype=bool)
    labelled = verdict >= 0  # what the data alone can refuse, refused before the model runs
    n, toxic = int(labelled.sum()), int((~safe[gold[labelled]]).sum())
    if n < 2:
        raise DataError(
            f"{valid.name or 'dataset'}: {n} texts labelled by {judge!r}; a band needs more"
        )
    if toxic in (0, n):
        raise DataError(
            f"{valid.name or 'dataset'}: choosing a band needs safe and toxic texts; the {n} "
            f"texts labelled by {judge!r} have {toxic} toxic and {n - toxic} safe"
        )
    results = band_guard(guard, 1.0).decide_many(valid.texts)
    scores = np.array([r.toxic_score for r in results])
    keep = labelled & np.array([not r.degraded and r.windows > 0 for r in results])
    if keep.sum() < 2:
        raise DataError(
            f"{valid.name or 'dataset'}: {int(keep.sum())} texts both scored and labelled "
            f"by {judge!r}; a band needs more"
        )
    return scores[keep], ~safe[gold[keep]], verdict[keep] == 1


#: Below these a band's recall and FPR are rough (as ``train``'s note on a small valid).
MIN_BAND_TEXTS, MIN_BAND_CLASS = 100, 10


def band_notes(
    total: int,
    gold: np.ndarray,
    band: EscalationBand,
    *,
    unlabelled: int = 0,
    widest: EscalationBand | None = None,
    judge: np.ndarray | None = None,
) -> list[str]:
    """What a user should know about a band chosen on ``gold`` (True: not safe; the
    texts ``calibration_arrays`` kept of ``total``): texts left out, too few texts or of
    one kind to measure recall / FPR, a band that blocks most safe texts (and whether a
    larger budget would help: ``widest``, the band with no budget limit; else why not:
    ``judge``, the judge's verdicts on the same texts)."""
    notes = []
    kept = len(gold)
    if kept < total:
        why = f"{unlabelled} not labelled by the judge" if unlabelled else ""
        rest = total - kept - unlabelled
        why += (", " if why and rest else "") + (f"{rest} not scored by the guard" if rest else "")
        notes.append(f"the band is chosen on {kept} of {total} texts ({why})")
    toxic = int(gold.sum())
    if kept < MIN_BAND_TEXTS or min(toxic, kept - toxic) < MIN_BAND_CLASS:
        notes.append(
            f"{kept} texts ({kept - toxic} safe, {toxic} toxic) are too few to measure a "
            f"band's recall and FPR (under {MIN_BAND_TEXTS} texts or {MIN_BAND_CLASS} of a "
            "kind): give a larger --valid labelled by the judge"
        )
    if band.valid.fpr > 0.5:
        greedy = f"the band blocks {band.valid.fpr:.1%} of the safe texts to reach recall "
        greedy += f"{band.target_recall}: lower --target-recall"
        if widest is None or widest.valid.fpr < band.valid.fpr:
            if band.max_defer < 1:
                greedy += " or raise --max-defer"
            if widest is not None:
                greedy += (
                    f" (with no limit: {widest.valid.fpr:.1%}, {widest.valid.deferred:.0%} sent)"
                )
        elif judge is not None and toxic:
            recall = float(judge[gold].mean())
            greedy += "; a larger --max-defer would not help: " + (
                f"the judge's own recall on these texts is {recall:.3f}, so the toxic texts "
                "it misses are blocked on the guard's score alone, with the safe texts "
                "scoring as high"
                if recall < band.target_recall
                else f"the judge alone blocks {judge[~gold].mean():.1%} of the safe texts"
            )
        notes.append(greedy)
    return notes


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
        guard=GuardIdentity.of(guard),
    )
