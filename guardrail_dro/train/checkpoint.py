"""Full mode's checkpoints: the best epoch so far and the collapse test that decides when
the LP stage (the frozen fit) is kept instead of the best tuned epoch.

Why a module of its own: the rule is shared by the trainer and by
``benchmarks/bench_lp_select.py``, which replays it on a held-out half of valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from guardrail_dro.train.config import LP_COLLAPSE
from guardrail_dro.train.metrics import Metrics

__all__ = ["Checkpoint", "collapsed"]


@dataclass
class Checkpoint:
    """The best epoch so far (the parts keep their own copies: ``keep_best``)."""

    key: tuple[float, float]
    epoch: int
    metrics: Metrics
    head: dict[str, torch.Tensor]
    source: dict[str, torch.Tensor] | None


def collapsed(tuned: Metrics, lp: Metrics) -> bool:
    """Whether the chosen tuned epoch fell below the LP stage on valid by more than
    ``LP_COLLAPSE`` in accuracy or worst-group accuracy (full mode, ``lp_select="tuned"``)."""
    for name, margin in LP_COLLAPSE.items():
        t, p = getattr(tuned, name), getattr(lp, name)
        if t is not None and p is not None and p - t > margin:
            return True
    return False
