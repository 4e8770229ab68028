"""Target sources: where the classifier's target for each training item comes from.

A ``TargetSource`` is one half of a method (methods.py pairs it with a classifier
loss). This module holds the interface and the fixed sources, whose targets are
computed once before training from the annotator labels (or the validation gold); the
learned sources, whose targets come from the soft-label weight estimator, are in
estimator_targets.py (shared part) and upper_risks.py (their two upper-level risks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import torch
from torch import nn

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError
from guardrail_dro.train import baselines as B
from guardrail_dro.train.data_checks import check_gold_split, check_train_left
from guardrail_dro.train.run import Run, Settings

if TYPE_CHECKING:
    from accelerate import Accelerator

    from guardrail_dro.train.model import WeightEstimator
    from guardrail_dro.train.result import TrainResult

__all__ = [
    "DawidSkene",
    "FixedTargets",
    "MajorityVote",
    "SingleAnnotator",
    "TargetSource",
    "UniformSoft",
    "ValidGold",
]


class TargetSource(ABC):
    """Where the targets of the training items come from.

    The trainer calls, in this order: ``split`` (which items train, which select),
    ``item_targets`` (before the classifier head exists), ``prepare`` (after the head
    drew its initial weights, so a source that draws random numbers draws them after
    it), ``warm_start`` (full mode's LP stage), ``distribute`` (distributed runs only),
    then ``batch`` once per classifier step, ``keep_best`` at each new best epoch and
    ``restore_best`` once at the end.
    """

    needs_annotators: ClassVar[bool] = True
    """Whether the training split must carry annotator labels."""
    learned: ClassVar[bool] = False
    """Whether the targets come from a learned soft-label weight estimator."""
    version: ClassVar[int] = 1
    """Raised when what the source computes changes, so that the bench retrains its
    methods' stored runs (``bench_runs.method_key``) and no other method's."""

    @classmethod
    def from_argument(cls, argument: str | None) -> Self:
        """The source of a method name, given the part after ``:`` (``single:<a>``)."""
        if argument is not None:
            raise ConfigError(f"{cls.__name__} takes no argument, got {argument!r}")
        return cls()

    def split(
        self,
        train: AnnotatedDataset,
        valid: AnnotatedDataset,
        settings: Settings,
        rng: np.random.Generator,
        notes: list[str],
    ) -> tuple[AnnotatedDataset, AnnotatedDataset]:
        """(training split, selection split): by default train without the items whose
        text is also in valid (``drop_overlap``), selected on the whole of valid.

        Raises:
            DataError: no train item is left once those are dropped.
        """
        if settings.drop_overlap:
            train, dropped = train.without_overlap(valid)
            check_train_left(train, dropped)
            if dropped:
                notes.append(f"{dropped} train item(s) also in valid were left out (drop_overlap)")
        return train, valid

    def check_data(self, train: AnnotatedDataset) -> None:
        """Raise ConfigError now if the source cannot work on ``train`` (an annotator it
        names is not there): the bench checks every method before the first trains."""
        return  # a hook: most sources work on any training split

    def key_part(self) -> str | None:
        """What decides this source's targets beyond the method's name and the shared
        config (a file it reads), for the bench's stored runs to match; None for most."""
        return None

    @abstractmethod
    def item_targets(self, run: Run) -> np.ndarray:
        """(N, C) targets of ``run.train``; an all-zero row marks an item without a usable
        label, which the trainer leaves out."""

    def prepare(self, run: Run) -> None:
        """Build what the source learns; called once the classifier head exists."""
        return  # a hook: nothing by default

    def warm_start(self, lp: TrainResult | None, run: Run) -> None:
        """Start from what full mode's LP stage (the same method's frozen-mode fit)
        learned, or from scratch where there is none (``lp`` None: frozen mode, or full
        mode with ``probe_epochs=0``); called after ``prepare``. Fixed targets have
        nothing to learn."""
        return  # a hook: nothing by default

    def distribute(self, accelerator: Accelerator) -> None:
        """Wrap what the source trains for a distributed run (DDP)."""
        return  # a hook: nothing by default

    @abstractmethod
    def batch(self, head: nn.Module, feats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, C) targets of the training items ``idx`` with features ``feats``.

        ``head`` is the plain classifier head (not a DDP wrapper), for sources whose
        upper level looks through the classifier.
        """

    def keep_best(self, slot: str = "best") -> None:
        """Copy what the source learned so far: this epoch is the best one yet
        (``slot`` "lp": the LP stage, full mode's collapse fallback)."""
        return  # a hook: nothing by default

    def restore_best(self, slot: str = "best") -> None:
        """Load the last ``keep_best`` copy of ``slot`` back, once training is over."""
        return  # a hook: nothing by default

    @property
    def estimator(self) -> WeightEstimator | None:
        """The soft-label weight estimator, for learned sources."""
        return None

    @property
    def group_weights(self) -> torch.Tensor | None:
        """(G,) GroupDRO weights of the source's upper level, if it has one."""
        return None

    def train_soft_labels(self, run: Run, item_targets: np.ndarray) -> np.ndarray:
        """(N, C) targets of the training split as the head last trained on them: the
        fixed ``item_targets`` here; learned sources give their current soft labels."""
        return item_targets

    def annotator_weights(self, run: Run) -> dict[str, dict[str, float]] | None:
        """Mean learned weight of each annotator over the valid items of each group."""
        return None


class FixedTargets(TargetSource):
    """Targets computed once from the training split, served by index."""

    _targets: torch.Tensor

    @abstractmethod
    def compute(self, run: Run) -> np.ndarray:
        """(N, C) float32 targets of ``run.train``."""

    def item_targets(self, run: Run) -> np.ndarray:
        targets = self.compute(run)
        self._targets = torch.as_tensor(targets, device=run.device)
        return targets

    def batch(self, head: nn.Module, feats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self._targets[idx]


def _labels(run: Run) -> np.ndarray:
    return run.train.label_matrix(run.annotators)


class UniformSoft(FixedTargets):
    """Uniform over the annotators present: the empirical label distribution."""

    def compute(self, run: Run) -> np.ndarray:
        return B.uniform_soft_targets(_labels(run), run.num_classes)


class MajorityVote(FixedTargets):
    """Majority vote: one-hot on the plurality class, a tie's mass shared by the tied."""

    version = 2
    """2 (2026-12-04): ties share their mass (before, crowd-kit broke them by label
    order)."""

    def compute(self, run: Run) -> np.ndarray:
        return B.majority_vote_targets(_labels(run), run.num_classes)


class DawidSkene(FixedTargets):
    """Dawid-Skene posterior class probabilities (crowd-kit)."""

    def compute(self, run: Run) -> np.ndarray:
        return B.dawid_skene_targets(_labels(run), run.num_classes)


class SingleAnnotator(FixedTargets):
    """One annotator's labels, one-hot; the items it did not label are left out."""

    def __init__(self, annotator: str) -> None:
        self.annotator = annotator

    @classmethod
    def from_argument(cls, argument: str | None) -> Self:
        if not argument:
            raise ConfigError("a single-annotator method needs an annotator: single:<annotator>")
        return cls(argument)

    def check_data(self, train: AnnotatedDataset) -> None:
        if self.annotator not in train.annotators:
            raise ConfigError(
                f"single:{self.annotator}: no annotator {self.annotator!r} in "
                f"{train.name or 'train'}; annotators are {list(train.annotators)}"
            )

    def compute(self, run: Run) -> np.ndarray:
        if self.annotator not in run.annotators:
            raise ConfigError(
                f"{run.settings.method}: no annotator {self.annotator!r}; "
                f"annotators are {list(run.annotators)}"
            )
        column = run.annotators.index(self.annotator)
        return B.single_annotator_targets(_labels(run), run.num_classes, column)


class ValidGold(FixedTargets):
    """The validation gold: train on 80 % of valid, select on the other 20 %.

    An upper bound on what the small gold split alone can teach, not a crowd method.
    """

    needs_annotators = False

    def split(
        self,
        train: AnnotatedDataset,
        valid: AnnotatedDataset,
        settings: Settings,
        rng: np.random.Generator,
        notes: list[str],
    ) -> tuple[AnnotatedDataset, AnnotatedDataset]:
        check_gold_split(valid)  # raises: too few items for both parts
        perm = rng.permutation(len(valid))
        cut = max(1, int(0.8 * len(valid)))
        notes.append("gold: trained on 80% of valid, selected on the other 20%")
        return (
            valid.subset(perm[:cut], name="valid-80"),
            valid.subset(perm[cut:], name="valid-20"),
        )

    def compute(self, run: Run) -> np.ndarray:
        return np.eye(run.num_classes, dtype=np.float32)[run.train.gold_array()]
