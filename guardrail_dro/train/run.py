"""What the parts of a method (target source, classifier loss) see of a training run.

The trainer builds one ``Run`` after the splits and their features are ready and hands
it to the parts. The parts read the configuration and the feature source through the
``Settings`` and ``Features`` protocols rather than by importing config.py and
features.py: config.py validates method names against the method table, so a part that
imported it back would close an import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from guardrail_dro.data.items import AnnotatedDataset

if TYPE_CHECKING:
    from pathlib import Path

    from accelerate import Accelerator

__all__ = ["Features", "Run", "Settings"]


class Settings(Protocol):
    """The ``TrainConfig`` fields that the parts of a method read."""

    @property
    def method(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def drop_overlap(self) -> bool: ...
    @property
    def group_step(self) -> float: ...
    @property
    def estimator_rank(self) -> int | None: ...
    @property
    def estimator_lr(self) -> float: ...
    @property
    def estimator_weight_decay(self) -> float: ...
    @property
    def estimator_steps(self) -> int: ...
    @property
    def inner_lr(self) -> float: ...
    @property
    def estimator_shrinkage(self) -> float | None: ...
    @property
    def estimator_reliability(self) -> bool: ...
    @property
    def use_confidence(self) -> str: ...
    @property
    def use_rationale(self) -> str: ...
    @property
    def ft_estimator(self) -> str: ...
    @property
    def cache_dir(self) -> Path | None: ...
    @property
    def progress(self) -> bool: ...


class Features(Protocol):
    """What the parts use of a ``features.FeatureSource``."""

    @property
    def device(self) -> torch.device: ...
    @property
    def dim(self) -> int: ...
    def features(self, split: str, idx: torch.Tensor | None) -> torch.Tensor: ...
    def embed_other(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class Run:
    """One training run: its splits, their features, and the notes it reports.

    ``train`` and ``select`` are the splits the target source chose (see
    ``TargetSource.split``); ``valid`` is always the whole validation split, the upper
    level's data. ``notes`` collects what the user should know, in the order it happened.
    """

    settings: Settings
    train: AnnotatedDataset
    valid: AnnotatedDataset
    select: AnnotatedDataset
    source: Features
    annotators: tuple[str, ...]
    notes: list[str]
    accelerator: Accelerator | None = None

    @property
    def device(self) -> torch.device:
        return self.source.device

    @property
    def groups(self) -> tuple[str, ...]:
        """The validation split's groups: the ones every group risk and metric uses."""
        return self.valid.groups

    @property
    def num_groups(self) -> int:
        """G, at least 1: without groups every item falls in one group."""
        return max(len(self.groups), 1)

    @property
    def num_classes(self) -> int:
        return self.valid.schema.num_classes

    def sync(self, t: torch.Tensor) -> torch.Tensor:
        """Mean over the processes of a distributed run, so that every rank takes the same
        GroupDRO step (each saw a different batch); ``t`` itself when alone."""
        acc = self.accelerator
        if acc is None or acc.num_processes < 2:
            return t
        reduced: torch.Tensor = acc.reduce(t.detach().clone(), reduction="mean")
        return reduced

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, through accelerate when it drives the run."""
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()
