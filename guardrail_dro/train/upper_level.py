"""The estimator's upper-level step, shared by the training loop and rank selection.

One step = group risks of the current estimator -> GroupDRO's exponentiated-gradient
update of the group weights q -> one optimizer step on sum_g q_g R_g. The training
loop takes it once per classifier step (agreement or unrolled risk); rank selection
takes it ``steps`` times on half of valid (agreement risk) to score a candidate
(rank, shrinkage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from guardrail_dro.train import objectives as O

__all__ = ["AgreementItems", "upper_step"]

Risks = Callable[[], tuple[torch.Tensor, torch.Tensor]]
"""Computes (G,) group risks, differentiable in the estimator, and (G,) item counts."""


def _alone(t: torch.Tensor) -> torch.Tensor:
    return t


def _backward(loss: torch.Tensor) -> None:
    loss.backward()


def upper_step(
    optimizer: torch.optim.Optimizer,
    q: torch.Tensor,
    risks: Risks,
    group_step: float,
    *,
    sync: Callable[[torch.Tensor], torch.Tensor] = _alone,
    backward: Callable[[torch.Tensor], None] = _backward,
    penalty: Callable[[], None] | None = None,
) -> torch.Tensor:
    """One GroupDRO step of the estimator; returns the new group weights.

    Args:
        optimizer: the estimator's optimizer.
        q: (G,) current group weights (not modified).
        risks: computes this step's group risks and counts.
        group_step: eta_q of the exponentiated-gradient update.
        sync: averages a tensor over the processes of a distributed run, so every rank
            moves q the same way; identity when alone.
        backward: ``loss.backward()`` or accelerate's.
        penalty: adds a prior's gradient (the estimator's shrinkage of per-annotator
            deviations) to ``.grad`` after the backward pass, or None.
    """
    optimizer.zero_grad()
    R, n = risks()
    q = O.update_group_weights(q, sync(R), group_step, sync(n) > 0)
    backward((q * R).sum())
    if penalty is not None:
        penalty()
    optimizer.step()
    return q


@dataclass(frozen=True)
class AgreementItems:
    """The items of a split that the agreement risk can score, selected once.

    Only items where some annotator gave the gold class carry signal (see
    ``objectives.fixable_items``); their labels, gold and groups do not change during
    training, so they are indexed once instead of at every step.
    """

    index: torch.Tensor
    """(N,) bool over the split: the fixable items."""
    labels: torch.Tensor
    gold: torch.Tensor
    groups: torch.Tensor
    present: torch.Tensor
    """(M, K) bool: which annotators labelled each fixable item."""
    confidence: torch.Tensor | None = None
    """(M, K) the annotators' confidences on them (NaN = none), or None."""
    rationale: torch.Tensor | None = None
    """(M, K, P) their rationale features (0 = none), or None."""

    @classmethod
    def select(
        cls,
        labels: torch.Tensor,
        gold: torch.Tensor,
        groups: torch.Tensor,
        confidence: torch.Tensor | None = None,
        rationale: torch.Tensor | None = None,
    ) -> AgreementItems:
        """From a split's (N, K) labels, (N,) gold classes, (N,) group indices and
        optionally (N, K) confidences and (N, K, P) rationale features."""
        fix = O.fixable_items(labels, gold)
        L = labels[fix]
        conf = confidence[fix] if confidence is not None else None
        rat = rationale[fix] if rationale is not None else None
        return cls(fix, L, gold[fix], groups[fix], O.annotator_mask(L), conf, rat)

    def risks(
        self, estimator: nn.Module, feats: torch.Tensor, num_groups: int, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Agreement group risks of ``estimator`` given the (N, D) features of the split."""
        w = estimator(feats[self.index], self.labels, self.confidence, self.rationale)
        return O.agreement_group_risks(
            w, self.labels, self.gold, self.groups, num_groups, num_classes
        )
