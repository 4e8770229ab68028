"""Classifier losses: how the per-item cross-entropies of a batch become one loss.

A ``ClassifierLoss`` is the other half of a method (methods.py pairs it with a target
source): the plain mean, or GroupDRO over groups (Sagawa et al. 2020), which needs a
group for every training item.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from guardrail_dro.errors import DataError
from guardrail_dro.train import objectives as O
from guardrail_dro.train.data_checks import quoted_names
from guardrail_dro.train.run import Run

__all__ = ["ClassifierLoss", "GroupDROLoss", "MeanLoss"]


class ClassifierLoss(ABC):
    """Reduces per-item losses to the classifier's loss.

    The trainer calls ``prepare`` once, before the classifier head exists, then the
    loss once per classifier step, ``keep_best`` at each new best epoch and
    ``restore_best`` once at the end.
    """

    def prepare(self, run: Run) -> None:
        """Read what the loss needs of the training split."""
        return  # a hook: nothing by default

    @abstractmethod
    def __call__(self, per_item: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The loss of a batch: ``per_item`` (B,) losses of the training items ``idx``."""

    def keep_best(self, slot: str = "best") -> None:
        """Copy the loss's state: this epoch is the best one yet (``slot`` "lp": the LP
        stage, full mode's collapse fallback)."""
        return  # a hook: nothing by default

    def restore_best(self, slot: str = "best") -> None:
        """Load the last ``keep_best`` copy of ``slot`` back, once training is over."""
        return  # a hook: nothing by default

    @property
    def group_weights(self) -> torch.Tensor | None:
        """(G,) GroupDRO weights, if the loss has them."""
        return None


class MeanLoss(ClassifierLoss):
    """Empirical risk: the mean over the batch."""

    def __call__(self, per_item: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return per_item.mean()


class GroupDROLoss(ClassifierLoss):
    """GroupDRO: sum_g q_g R_g over the batch's group means, q moved by exponentiated
    gradient towards the groups with the highest loss.

    Train splits often have no groups: then each training item takes the group of the
    nearest valid-group centroid in feature space (pseudo-groups, with a note); so does
    each item whose group valid does not have (``_train_groups``).
    """

    run: Run
    item_groups: torch.Tensor
    """(N,) group index of each training item."""
    _q: torch.Tensor
    _kept: dict[str, torch.Tensor]

    def prepare(self, run: Run) -> None:
        self.run = run
        self.item_groups = self._train_groups(run)
        self._q = torch.full((run.num_groups,), 1.0 / run.num_groups, device=run.device)
        self._kept = {}

    @staticmethod
    @torch.no_grad()
    def _train_groups(run: Run) -> torch.Tensor:
        """(N,) group index of each training item among valid's groups: its own group
        where valid knows it; else (no group, or one valid lacks) the group of the
        nearest valid-group centroid in feature space, with a note saying how many items
        that was and which groups valid lacks. Items of a known group keep it: one
        unknown group does not turn the whole split into pseudo-groups."""
        train, valid, groups, src = run.train, run.valid, run.groups, run.source
        if not groups:
            raise DataError(
                f"{run.settings.method} needs groups on the validation split (--group-col)"
            )
        own = torch.as_tensor(train.group_array(groups), device=src.device)
        guess = own < 0
        if not bool(guess.any()):
            return own
        fv, ft = src.features("valid", None), src.features("train", None)
        gv = torch.as_tensor(valid.group_array(groups), device=src.device)
        cent = torch.stack([fv[gv == k].mean(0) for k in range(len(groups))])
        own[guess] = torch.cdist(ft[guess], cent).argmin(1)
        method, guessed = run.settings.method, int(guess.sum())
        if not train.groups:
            run.notes.append(
                f"{method}: train has no groups; each item takes its nearest "
                "valid-group centroid (pseudo-groups)"
            )
            return own
        known = set(groups)
        unknown = [g for g in train.groups if g not in known]
        blank = sum(it.group is None for it in train)
        why = [f"{blank} without a group"] if blank else []
        if unknown:
            shown = quoted_names(unknown)
            why.append(f"{guessed - blank} in group(s) valid does not have: {shown}")
        run.notes.append(
            f"{method}: {guessed} of {len(train)} train items ({'; '.join(why)}) take the "
            "group of their nearest valid-group centroid (pseudo-groups); the other "
            f"{len(train) - guessed} keep their own group"
        )
        return own

    def __call__(self, per_item: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        run = self.run
        R, n = O.group_mean(per_item, self.item_groups[idx], run.num_groups)
        self._q = O.update_group_weights(
            self._q, run.sync(R), run.settings.group_step, run.sync(n) > 0
        )
        return (self._q * R).sum()

    def keep_best(self, slot: str = "best") -> None:
        self._kept[slot] = self._q.clone()

    def restore_best(self, slot: str = "best") -> None:
        self._q = self._kept[slot]

    @property
    def group_weights(self) -> torch.Tensor:
        return self._q
