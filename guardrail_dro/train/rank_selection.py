"""Choose the soft-label estimator's capacity on the validation split alone.

The estimator is fit on the validation split, so how well its weights fit that split
says nothing about how well they generalise: on toxic-questions a rank-32 estimator
put the gold class on top for 95% of valid items and 65% of test items (uniform
weights: 76% and 81%). Two-fold cross-validation inside valid measures generalisation
without touching test: fit on one half, score the held-out half, swap, average.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from guardrail_dro.train import objectives as O
from guardrail_dro.train.model import WeightEstimator
from guardrail_dro.train.upper_level import AgreementItems, upper_step

__all__ = ["choose_estimator_rank", "held_out_agreement"]


def _fit(
    feats: torch.Tensor,
    labels: torch.Tensor,
    gold: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    num_classes: int,
    rank: int,
    *,
    steps: int,
    lr: float,
    group_step: float,
) -> WeightEstimator:
    """An estimator of ``rank`` fit by the training loop's own agreement-risk step."""
    est = WeightEstimator(feats.shape[1], labels.shape[1], rank).to(feats.device)
    opt = torch.optim.Adam(est.parameters(), lr=lr)
    items = AgreementItems.select(labels, gold, groups)
    q = torch.full((num_groups,), 1.0 / num_groups, device=feats.device)
    for _ in range(steps):
        q = upper_step(
            opt, q, partial(items.risks, est, feats, num_groups, num_classes), group_step
        )
    return est.eval()


@torch.no_grad()
def held_out_agreement(
    est: WeightEstimator,
    feats: torch.Tensor,
    labels: torch.Tensor,
    gold: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    num_classes: int,
) -> float:
    """Group-mean accuracy of the soft label's argmax on items the estimator did not see.

    Group-mean rather than worst-group: with half of a small split per fold, the worst
    group holds a handful of items and its accuracy is mostly noise.
    """
    s = O.soft_labels(est(feats, O.annotator_mask(labels)), labels, num_classes)
    labelled = O.annotator_mask(labels).any(1)
    hit = (s.argmax(1) == gold).float()
    acc, n = O.group_mean(hit[labelled], groups[labelled], num_groups)
    return float(acc[n > 0].mean())


def choose_estimator_rank(
    feats: torch.Tensor,
    labels: torch.Tensor,
    gold: torch.Tensor,
    groups: torch.Tensor,
    *,
    num_groups: int,
    num_classes: int,
    candidates: Sequence[int] = (0, 4, 32),
    steps: int = 200,
    lr: float = 1e-2,
    group_step: float = 0.05,
    seed: int = 0,
    tolerance: float = 0.005,
) -> tuple[int, dict[int, float]]:
    """The smallest rank whose 2-fold held-out agreement is within ``tolerance`` of the best.

    Args:
        feats, labels, gold, groups: the validation split (features, (N, K) annotator
            labels with -1 for absent, gold class, group index).

    Returns:
        (chosen rank, held-out score per candidate)
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(feats.shape[0], generator=gen).to(feats.device)
    halves = (perm[: len(perm) // 2], perm[len(perm) // 2 :])
    scores: dict[int, float] = {}
    torch.manual_seed(seed)
    for rank in sorted(candidates):
        total = 0.0
        for fit_idx, score_idx in (halves, halves[::-1]):
            est = _fit(
                feats[fit_idx],
                labels[fit_idx],
                gold[fit_idx],
                groups[fit_idx],
                num_groups,
                num_classes,
                rank,
                steps=steps,
                lr=lr,
                group_step=group_step,
            )
            total += held_out_agreement(
                est,
                feats[score_idx],
                labels[score_idx],
                gold[score_idx],
                groups[score_idx],
                num_groups,
                num_classes,
            )
        scores[rank] = total / 2
    if all(v != v for v in scores.values()):  # every score NaN: nothing to tell them apart
        return min(scores), scores
    scores = {r: (v if v == v else float("-inf")) for r, v in scores.items()}
    best = max(scores.values())
    chosen = next(r for r in sorted(scores) if scores[r] >= best - tolerance)
    return chosen, scores
