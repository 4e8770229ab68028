"""Background-safe text in training: lower-level items with a fixed target, and the
choice of their weight and amount on valid and on held-out background.

Why: toxic-questions' safe class is borderline red-team questions, so a guard trained on
it alone blocks ordinary chat. Background texts (``data.background``) are safe by
construction, so each joins the classifier's batches with "safe" as its target (the
loss ``-log P(safe classes)``: the cross-entropy to the safe class when the schema has
one, as toxic-questions does; with several, any of them) and no annotators, for every
method: a method's targets and loss are untouched (the method table and the trainer
loop stay free of method names), the background only adds items to each classifier
step. With ``B`` annotated items, ``b``
background items and weight ``w`` a step's loss is

    (B * L_method + w * sum_j -log P_safe(x_j)) / (B + b)

which is the plain mean over the joined batch when the method's loss is a mean and
``w = 1``. Background items do not enter the upper level of ``ours`` (they have no
annotators to weigh; their target does not depend on the estimator).

Harmful-by-construction text (``background_harmful``) is the mirror: it joins each
step as ``-log(1 - P(safe))`` at ``harmful_weight``. Why: the annotated data covers the
harm kinds its authors collected (toxic-questions has little on weapon modification,
grooming or eating disorders), and safe background alone only teaches the guard what
to let through; harmful text of other kinds teaches it that those are not safe, without
claiming which unsafe class each one is (the annotated items keep teaching the classes,
so a blocked result's label is still the most likely unsafe class). It needs safe
background beside it (``TrainConfig``): harmful text alone would push everything the
dataset lacks toward unsafe.

Weight and amount are chosen by ``choose_background`` (see ``RULE``); the choice, the
grid and the held-out block rates go into the model manifest. The harmful weight is
fixed (``harmful_weight``, 1 by default): the held-out harmful block rate is reported,
not selected on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel, Field

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.train.background_data import leaving_out, load, splits
from guardrail_dro.train.metrics import Metrics
from guardrail_dro.train.run import Features

__all__ = [
    "BLOCK_RATE_BOUND",
    "FRACTIONS",
    "GUARD_THRESHOLD",
    "RULE",
    "WEIGHTS",
    "BackgroundChoice",
    "BackgroundTerm",
    "GridPoint",
    "block_rate",
    "choose",
    "join",
    "leaving_out",
    "load",
    "measure",
    "splits",
    "terms",
    "valid_threshold",
]

GUARD_THRESHOLD = 0.5
"""The toxic-score threshold ``export`` writes by default (guard.json thresholds.toxic)."""

WEIGHTS = (1.0, 2.0, 4.0)
"""Background weights tried when ``background_weight`` is unset."""

FRACTIONS = (0.5, 1.0)
"""Shares of the background's train part tried when ``background_fraction`` is unset."""

BLOCK_RATE_BOUND = 0.02
"""Largest acceptable share of held-out background text blocked (see ``RULE``)."""

RULE = (
    "among the grid settings whose held-out background block rate (the worse of the "
    f"guard's default threshold {GUARD_THRESHOLD} and the threshold with the best valid "
    f"worst-group binary accuracy) is at most {BLOCK_RATE_BOUND:.0%}, the best valid "
    "worst-group accuracy (then accuracy, then the smaller weight and amount); when no "
    "setting is under the bound, the lowest block rate"
)
"""The stated selection rule. Why: the valid metric is what every other choice in the
trainer optimises, but valid has no ordinary chat, so it cannot see over-blocking; the
held-out background can, and a guard that blocks ordinary chat is not deployable
whatever its valid accuracy. Both thresholds count because the guard's threshold is
either export's default or one chosen on valid."""


class GridPoint(BaseModel):
    """One setting of the grid and what it scored."""

    weight: float
    fraction: float
    items: int
    valid_worst_group_accuracy: float | None
    valid_accuracy: float
    heldout_block_rate: float
    """At the worse of the two thresholds (``RULE``)."""

    @classmethod
    def of(cls, b: BackgroundChoice, m: Metrics) -> GridPoint:
        """The grid point of a run with background ``b`` and valid metrics ``m``."""
        worse = max(b.heldout_block_rate, b.heldout_block_rate_at_valid_threshold or 0.0)
        return cls(
            weight=b.weight,
            fraction=b.fraction,
            items=b.items,
            valid_worst_group_accuracy=m.worst_group_accuracy,
            valid_accuracy=m.accuracy,
            heldout_block_rate=worse,
        )


class BackgroundChoice(BaseModel):
    """What the model manifest records of the background text."""

    sources: list[str]
    weight: float
    fraction: float
    items: int = Field(description="background texts that trained")
    heldout_items: int
    threshold: float = Field(description="the guard's default toxic threshold")
    heldout_block_rate: float = Field(description="at ``threshold``")
    valid_threshold: float | None = Field(
        None, description="the threshold of best valid worst-group binary accuracy"
    )
    heldout_block_rate_at_valid_threshold: float | None = None
    chosen_by: str = Field(description="the rule, or 'set' when both values were given")
    grid: list[GridPoint] = Field(default_factory=list)
    harmful_sources: list[str] = Field(default_factory=list)
    harmful_weight: float | None = None
    harmful_items: int = Field(0, description="harmful background texts that trained")
    harmful_heldout_items: int = 0
    harmful_heldout_block_rate: float | None = Field(
        None, description="share of held-out harmful text blocked at ``threshold``"
    )
    harmful_heldout_block_rate_at_valid_threshold: float | None = None

    def summary(self) -> str:
        """One line for the console."""
        cal = (
            f", {self.heldout_block_rate_at_valid_threshold:.1%} at the valid-chosen "
            f"threshold {self.valid_threshold:.2f}"
            if self.valid_threshold is not None
            and self.heldout_block_rate_at_valid_threshold is not None
            else ""
        )
        how = (
            "set"
            if self.chosen_by == "set"
            else f"chosen among {len(self.grid)} settings on valid and held-out background"
        )
        line = (
            f"background-safe text: weight {self.weight:g}, amount {self.fraction:.0%} "
            f"({self.items} texts; {how}); held-out background blocked "
            f"{self.heldout_block_rate:.1%} of {self.heldout_items} at threshold "
            f"{self.threshold:g}{cal}"
        )
        if self.harmful_heldout_block_rate is not None:
            at_valid = self.harmful_heldout_block_rate_at_valid_threshold
            cal_bad = (
                f" ({at_valid:.1%} at the valid-chosen threshold)" if at_valid is not None else ""
            )
            line += (
                f"; harmful text: weight {self.harmful_weight:g} ({self.harmful_items} "
                f"texts), held-out harmful blocked {self.harmful_heldout_block_rate:.1%} "
                f"of {self.harmful_heldout_items}{cal_bad}"
            )
        return line


class BackgroundTerm:
    """Serves the background items of each classifier step and scores their loss.

    Each step takes the next ``per_step`` items of a seeded permutation of the background
    (a new permutation once it is used up), sized so that an epoch of the training split
    goes once through the background. A safe term's loss is ``-log P(safe classes)``
    (the hard-target cross-entropy when the schema has one safe class); a harmful
    term's (``harmful=True``) is ``-log(1 - P(safe))``: it moves mass off the safe
    classes without choosing which unsafe class a harmful text belongs to (its kind is
    unknown; the annotated items teach the classes).
    """

    def __init__(
        self,
        n: int,
        *,
        train_items: int,
        batch_size: int,
        safe_mask: list[bool],
        weight: float,
        seed: int,
        device: torch.device,
        harmful: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError("a background term needs at least one background item")
        self.n = n
        self.per_step = max(1, math.ceil(n * batch_size / max(train_items, 1)))
        self.weight = weight
        self.harmful = harmful
        mask = torch.as_tensor(safe_mask, dtype=torch.bool, device=device)
        if not mask.any() or mask.all():
            raise ValueError("a background term needs both safe and unsafe classes")
        self.safe = mask
        self._gen = torch.Generator().manual_seed(seed + (2 if harmful else 1))
        self._order = torch.randperm(n, generator=self._gen)
        self._at = 0

    def next_index(self) -> torch.Tensor:
        """The background items of this step."""
        if self._at + self.per_step > self.n:
            self._order = torch.randperm(self.n, generator=self._gen)
            self._at = 0
        idx = self._order[self._at : self._at + self.per_step]
        self._at += self.per_step
        return idx

    def losses(self, logits: torch.Tensor) -> torch.Tensor:
        """(b,) per-item loss of this term's items' ``logits`` (b, C)."""
        total = torch.logsumexp(logits, -1)
        kept = self.safe if not self.harmful else ~self.safe
        # -log P(kept classes): the safe class(es), or every unsafe class together
        return total - torch.logsumexp(logits[:, kept], -1)


def terms(
    data: dict[str, AnnotatedDataset | None],
    weights: dict[str, float],
    *,
    train_items: int,
    batch_size: int,
    safe_mask: list[bool],
    seed: int,
    device: torch.device,
) -> dict[str, BackgroundTerm]:
    """The loop's background terms: one per split of ``data`` ("background" safe,
    "harmful" harmful) that is present, at its weight in ``weights``."""
    return {
        split: BackgroundTerm(
            len(items),
            train_items=train_items,
            batch_size=batch_size,
            safe_mask=safe_mask,
            weight=weights[split],
            seed=seed,
            device=device,
            harmful=split == "harmful",
        )
        for split, items in data.items()
        if items is not None
    }


def join(
    method_loss: torch.Tensor,
    batch: int,
    terms: list[BackgroundTerm],
    logits: list[torch.Tensor],
) -> torch.Tensor:
    """A step's loss: the method's loss over ``batch`` annotated items joined with each
    term's items (``logits[k]`` (b_k, C) for ``terms[k]``) at the term's weight:
    ``(B * L + sum_k w_k * sum_j loss_kj) / (B + sum_k b_k)``."""
    num = batch * method_loss
    den = batch
    for term, lg in zip(terms, logits, strict=True):
        num = num + term.weight * term.losses(lg).sum()
        den += lg.shape[0]
    return num / den


def toxic_scores(probs: np.ndarray, safe_mask: np.ndarray) -> np.ndarray:
    """1 - P(safe classes): the guard's toxic score."""
    return 1.0 - probs[:, safe_mask].sum(1)


def block_rate(toxic: np.ndarray, threshold: float) -> float:
    """Share of texts the guard blocks: toxic score at or over the threshold."""
    return float((toxic >= threshold).mean()) if len(toxic) else 0.0


def valid_threshold(toxic: np.ndarray, is_toxic: np.ndarray, groups: np.ndarray) -> float:
    """The toxic threshold with the best worst-group binary accuracy on valid (then the
    best overall binary accuracy); every group is one group when ``groups`` is all -1."""
    cands = np.unique(np.concatenate([toxic, [GUARD_THRESHOLD]]))
    keys = []
    present = [g for g in np.unique(groups) if g >= 0] or [None]
    for t in cands:
        correct = (toxic >= t) == is_toxic
        worst = min(
            float(correct.mean() if g is None else correct[groups == g].mean()) for g in present
        )
        keys.append((round(worst, 6), round(float(correct.mean()), 6)))
    return float(cands[max(range(len(cands)), key=keys.__getitem__)])


def choose(points: list[GridPoint], bound: float = BLOCK_RATE_BOUND) -> int:
    """Index of the grid point ``RULE`` picks."""

    def quality(i: int) -> tuple[float, float, float, float]:
        p = points[i]
        worst = p.valid_worst_group_accuracy
        return (
            round(worst if worst is not None else p.valid_accuracy, 6),
            round(p.valid_accuracy, 6),
            -p.weight,
            -p.fraction,
        )

    under = [i for i, p in enumerate(points) if p.heldout_block_rate <= bound]
    if under:
        return max(under, key=quality)
    return min(
        range(len(points)),
        key=lambda i: (round(points[i].heldout_block_rate, 6), *(-x for x in quality(i))),
    )


@torch.no_grad()
def measure(
    head: torch.nn.Module,
    src: Features,
    valid: AnnotatedDataset,
    groups: tuple[str, ...],
    *,
    sources: tuple[str, ...],
    weight: float,
    fraction: float,
    harmful: tuple[str, ...] | None = None,
    harmful_weight: float = 1.0,
) -> BackgroundChoice:
    """Held-out background block rates of a trained head at the guard's default
    threshold and at the threshold chosen on valid (best worst-group binary accuracy);
    with ``harmful`` (its sources), the held-out harmful text's too.

    ``src`` serves the ``valid``, ``background`` and ``background_heldout`` splits, and
    ``harmful`` / ``harmful_heldout`` with harmful text.
    """
    safe = np.asarray(valid.schema.safe_mask())
    head.eval()

    def toxic(split: str) -> np.ndarray:
        probs = torch.softmax(head(src.features(split, None)), -1).cpu().numpy()
        return toxic_scores(probs, safe)

    heldout = toxic("background_heldout")
    thr = valid_threshold(toxic("valid"), ~safe[valid.gold_array()], valid.group_array(groups))
    extra = {}
    if harmful:
        bad = toxic("harmful_heldout")
        extra = {
            "harmful_sources": list(harmful),
            "harmful_weight": harmful_weight,
            "harmful_items": len(src.features("harmful", None)),
            "harmful_heldout_items": len(bad),
            "harmful_heldout_block_rate": block_rate(bad, GUARD_THRESHOLD),
            "harmful_heldout_block_rate_at_valid_threshold": block_rate(bad, thr),
        }
    return BackgroundChoice(
        sources=list(sources),
        weight=weight,
        fraction=fraction,
        items=len(src.features("background", None)),
        heldout_items=len(heldout),
        threshold=GUARD_THRESHOLD,
        heldout_block_rate=block_rate(heldout, GUARD_THRESHOLD),
        valid_threshold=thr,
        heldout_block_rate_at_valid_threshold=block_rate(heldout, thr),
        chosen_by="set",
        **extra,
    )
