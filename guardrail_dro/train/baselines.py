"""Training targets of the baselines: fixed soft labels computed from annotator labels.

Each builder maps the (N, K) label matrix (-1 = absent) to (N, C) targets; items that
no annotator labelled get an all-zero row and are left out of training by the trainer.
Label aggregation uses crowd-kit (majority vote, Dawid-Skene) rather than hand-written
versions.
"""

from __future__ import annotations

import warnings

import numpy as np

from guardrail_dro.errors import DependencyError

__all__ = [
    "dawid_skene_targets",
    "majority_vote_targets",
    "single_annotator_targets",
    "uniform_soft_targets",
]


def _long_frame(labels: np.ndarray):
    try:
        import pandas as pd
    except ImportError as exc:
        raise DependencyError("pandas is needed: pip install 'guardrail-dro[train]'") from exc
    rows, cols = np.nonzero(labels >= 0)
    # Integer labels: crowd-kit's MajorityVote crashes on categorical columns.
    return pd.DataFrame({"task": rows, "worker": cols, "label": labels[rows, cols].astype(int)})


def _crowdkit():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from crowdkit.aggregation import DawidSkene, MajorityVote
    except ImportError as exc:
        raise DependencyError("crowd-kit is needed: pip install 'guardrail-dro[train]'") from exc
    return DawidSkene, MajorityVote


def uniform_soft_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Each present annotator's vote counts equally: the empirical label distribution."""
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    rows, cols = np.nonzero(labels >= 0)
    np.add.at(out, (rows, labels[rows, cols]), 1.0)
    return out / np.maximum(out.sum(1, keepdims=True), 1.0)


def majority_vote_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot majority vote (crowd-kit; its tie-break is deterministic per label set)."""
    _, MajorityVote = _crowdkit()
    df = _long_frame(labels)
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    if df.empty:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mv = MajorityVote().fit_predict(df)
    out[mv.index.to_numpy(dtype=int), mv.to_numpy(dtype=int)] = 1.0
    return out


def dawid_skene_targets(labels: np.ndarray, num_classes: int, n_iter: int = 100) -> np.ndarray:
    """Dawid-Skene posterior class probabilities per item (crowd-kit), as soft targets."""
    DawidSkene, _ = _crowdkit()
    df = _long_frame(labels)
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    if df.empty:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probas = DawidSkene(n_iter=n_iter).fit_predict_proba(df)
    tasks = probas.index.to_numpy(dtype=int)
    for col in probas.columns:
        out[tasks, int(col)] = probas[col].to_numpy(dtype=np.float32)
    return out


def single_annotator_targets(labels: np.ndarray, num_classes: int, column: int) -> np.ndarray:
    """One annotator's labels, one-hot; items it did not label get a zero row."""
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    rows = np.nonzero(labels[:, column] >= 0)[0]
    out[rows, labels[rows, column]] = 1.0
    return out
