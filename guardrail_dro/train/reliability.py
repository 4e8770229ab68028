"""How far each annotator's label can be trusted, from the labels alone (no gold).

The soft-label estimator learns its weights on the validation split, where a sparse
crowd's annotator appears a handful of times. The training split holds many more of
each annotator's labels, without gold: enough for a Dawid-Skene model (crowd-kit) to
say, per annotator, how its labels relate to the likely true class. This module turns
that into a (K, C) table ``r[k, y]`` = log-odds that the true class is y when annotator
k says y, which the estimator (model.WeightEstimator) uses as a shared feature with one
learned scale, so the valid gold only has to decide how much to believe it.

Per-annotator confusion matrices of a sparse annotator are themselves noise (a worker
with 20 labels has 36 cells to fill), so each row is shrunk toward the crowd's pooled
confusion with ``prior_items`` pseudo-items (empirical Bayes): an annotator seen a few
times inherits the crowd's reliability, one seen hundreds of times has its own.
"""

from __future__ import annotations

import numpy as np

from guardrail_dro.train.baselines import dawid_skene_targets

__all__ = ["annotator_reliability"]

#: Pseudo-items of the crowd's pooled confusion added to every annotator's row.
PRIOR_ITEMS = 5.0
#: The table is clipped to +-CLIP log-odds: a class never seen must not be infinite.
CLIP = 5.0


def annotator_reliability(
    labels: np.ndarray, num_classes: int, *, prior_items: float = PRIOR_ITEMS
) -> np.ndarray:
    """(K, C) log-odds that the true class is y when annotator k says y.

    Args:
        labels: (N, K) class indices, -1 where absent (the training split).
        num_classes: C.
        prior_items: pseudo-items of the pooled confusion per annotator and true class.

    Returns:
        float32 (K, C); all zeros (no opinion) when no item has two labels to compare.
    """
    k = labels.shape[1]
    out = np.zeros((k, num_classes), dtype=np.float32)
    present = labels >= 0
    if not (present.sum(1) >= 2).any():
        return out
    post = dawid_skene_targets(labels, num_classes).astype(np.float64)  # (N, C)
    rows, cols = np.nonzero(present)
    said = labels[rows, cols]
    # counts[k, c, y]: expected number of items of true class c on which k said y.
    counts = np.zeros((k, num_classes, num_classes))
    for c in range(num_classes):
        np.add.at(counts[:, c, :], (cols, said), post[rows, c])
    pooled = counts.sum(0) + 1e-3
    pooled /= pooled.sum(1, keepdims=True)
    conf = counts + prior_items * pooled[None]
    conf /= conf.sum(2, keepdims=True)  # P(says y | true c), per annotator
    labelled = present.any(1)
    prior = post[labelled].mean(0) + 1e-6
    prior /= prior.sum()
    joint = prior[None, :, None] * conf  # (K, c, y): P(true c, says y)
    diag = np.einsum("kcc->kc", joint)  # P(true y, says y)
    right = diag / joint.sum(1)  # P(true y | says y)
    right = np.clip(right, 1e-6, 1 - 1e-6)
    out[:] = np.clip(np.log(right / (1 - right)), -CLIP, CLIP)
    return out
