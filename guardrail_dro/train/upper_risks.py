"""The two upper-level risks of the learned target sources (see the shared METHOD.md).

``EstimatorTargets`` (estimator_targets.py) holds what both share: the estimator, its
capacity choice, its GroupDRO steps on valid and its soft labels; a subclass says only
which group risk R_g the upper level minimises:

- ``AgreementRisk`` (``ours-agree``): -log s_phi(x)[y] on valid, without the classifier.
- ``UnrolledRisk`` (``ours``): valid cross-entropy of the classifier after a one-step
  unrolled update on the soft labels (objectives.unrolled_group_risks).
"""

from __future__ import annotations

import torch
from torch import nn

from guardrail_dro.errors import DataError
from guardrail_dro.train import objectives as O
from guardrail_dro.train.estimator_targets import EstimatorTargets
from guardrail_dro.train.run import Run
from guardrail_dro.train.upper_level import AgreementItems

__all__ = ["AgreementRisk", "UnrolledRisk"]


class AgreementRisk(EstimatorTargets):
    """Upper risk: -log s_phi(x)[y] on the valid items some annotator got right."""

    items: AgreementItems

    def prepare(self, run: Run) -> None:
        super().prepare(run)
        self.items = AgreementItems.select(
            self.valid_labels,
            self.valid_gold,
            self.valid_groups,
            self.valid_confidence,
            self.valid_rationale,
        )
        fixable = int(self.items.index.sum())
        dropped = int(O.annotator_mask(self.valid_labels).any(1).sum() - fixable)
        if dropped:
            run.notes.append(
                f"agreement risk: {dropped} valid item(s) where no annotator gave "
                "the gold label are left out of the upper level"
            )
        if not fixable:
            raise DataError(
                f"method {run.settings.method!r} (agreement risk) needs annotator labels on "
                "the validation split that agree with its gold; use 'ours' (classifier risk) "
                "when valid has only gold labels"
            )

    def risks(
        self,
        head: nn.Module,
        feats: torch.Tensor,
        labels: torch.Tensor,
        confidence: torch.Tensor | None,
        rationale: torch.Tensor | None,
        valid_feats: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        run = self.run
        return self.items.risks(self._module, valid_feats, run.num_groups, run.num_classes)


class UnrolledRisk(EstimatorTargets):
    """Upper risk: valid CE of the classifier after one unrolled step (bi-level)."""

    def risks(
        self,
        head: nn.Module,
        feats: torch.Tensor,
        labels: torch.Tensor,
        confidence: torch.Tensor | None,
        rationale: torch.Tensor | None,
        valid_feats: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        run = self.run
        w = self._module(feats, labels, confidence, rationale)
        return O.unrolled_group_risks(
            head,
            w,
            labels,
            feats,
            valid_feats,
            self.valid_gold,
            self.valid_groups,
            num_groups=run.num_groups,
            num_classes=run.num_classes,
            inner_lr=run.settings.inner_lr,
        )
