"""Training targets of the baselines: fixed soft labels computed from annotator labels.

Each builder maps the (N, K) label matrix (-1 = absent) to (N, C) targets; items that
no annotator labelled get an all-zero row and are left out of training by the trainer.
Dawid-Skene is crowd-kit's; majority vote is the plurality with ties shared (crowd-kit's
breaks them by label order, see ``majority_vote_targets``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from guardrail_dro.errors import DependencyError

__all__ = [
    "SINGLE_CANDIDATES",
    "SINGLE_MIN_ITEMS",
    "dawid_skene_targets",
    "majority_vote_targets",
    "one_label_annotators",
    "single_annotator_targets",
    "single_candidates",
    "uniform_soft_targets",
]


def _long_frame(labels: np.ndarray):
    try:
        import pandas as pd
    except ImportError as exc:
        raise DependencyError("pandas is needed: pip install 'guardrail-dro[train]'") from exc
    rows, cols = np.nonzero(labels >= 0)
    # Integer labels: crowd-kit's aggregators crash on categorical columns.
    return pd.DataFrame({"task": rows, "worker": cols, "label": labels[rows, cols].astype(int)})


def _dawid_skene():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from crowdkit.aggregation import DawidSkene
    except ImportError as exc:
        raise DependencyError("crowd-kit is needed: pip install 'guardrail-dro[train]'") from exc
    return DawidSkene


def uniform_soft_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Each present annotator's vote counts equally: the empirical label distribution."""
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    rows, cols = np.nonzero(labels >= 0)
    np.add.at(out, (rows, labels[rows, cols]), 1.0)
    return out / np.maximum(out.sum(1, keepdims=True), 1.0)


def majority_vote_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Majority vote: the most voted class; a tie shares the item's mass evenly.

    Why not crowd-kit's ``MajorityVote``: it breaks ties by label order, so on a schema
    whose safe class is the last index every safe-vs-toxic tie became safe
    (toxic-questions train: 30 % safe targets against 19 % of plurality-first votes; 17 %
    of its items tie). A classifier then learned the schema's order: a logistic
    regression on those targets scored 0.616 test accuracy against 0.660 with ties
    shared (0.657 with seeded random tie-breaks). A tie is no evidence for either class,
    so no class is favoured by where it sits in the schema.
    """
    votes = uniform_soft_targets(labels, num_classes)
    top = (votes == votes.max(1, keepdims=True)) & (votes > 0)
    return (top / np.maximum(top.sum(1, keepdims=True), 1)).astype(np.float32)


def dawid_skene_targets(labels: np.ndarray, num_classes: int, n_iter: int = 100) -> np.ndarray:
    """Dawid-Skene posterior class probabilities per item (crowd-kit), as soft targets."""
    DawidSkene = _dawid_skene()
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


#: ``best-single`` trains at most this many annotators' classifiers (the bench's own
#: ``single:<a>`` rows stop at the same count).
SINGLE_CANDIDATES = 12
#: ... and only annotators with at least this many labelled training items: a classifier
#: taught by a handful of labels is no candidate for the best one.
SINGLE_MIN_ITEMS = 20


def single_candidates(
    labels: np.ndarray,
    num_classes: int,
    *,
    limit: int = SINGLE_CANDIDATES,
    min_items: int = SINGLE_MIN_ITEMS,
    names: Sequence[str] | None = None,
) -> tuple[list[int], str | None]:
    """The annotator columns worth a ``best-single`` run, best first, and what was skipped.

    Never an annotator that gave every item it labelled the same class
    (``one_label_annotators``): its classifier can only learn to predict that class, a
    wasted run whose row read like a real candidate; unless every annotator did, when
    they are trained all the same and the note says so. Then, on a crowd of at most
    ``limit`` annotators, every other one. Otherwise the training cost must
    not grow with the crowd (670 sparse annotators once took a bench past 27 GB): only
    annotators with ``min_items`` labelled items, ranked by a cheap proxy computed from
    the labels alone, agreement with the other annotators' majority on the items they
    share (leave-one-out; a tie in that majority credits its share; ties in the ranking:
    more items first), and the first ``limit`` of them.

    Args:
        names: the annotators' names, by column, for the note (else it counts them).

    Returns:
        (column indices, a note saying what was skipped and why, or None)
    """
    k = labels.shape[1]
    one = one_label_annotators(labels)
    if one and len(one) == k:  # no annotator to choose instead: trained, not silently
        return _all_one_label(labels, limit, min_items, names)
    if k <= limit:
        return [a for a in range(k) if a not in one], _one_label_note(one, names)
    present = labels >= 0
    counts = present.sum(0)
    votes = np.zeros((labels.shape[0], num_classes), dtype=np.int64)
    rows, cols = np.nonzero(present)
    np.add.at(votes, (rows, labels[rows, cols]), 1)
    score = np.full(k, -1.0)
    for a in np.nonzero(counts >= min_items)[0]:
        r = np.nonzero(present[:, a])[0]
        mine = labels[r, a]
        others = votes[r].copy()
        others[np.arange(len(r)), mine] -= 1
        shared = others.sum(1) > 0
        # A tie among the others' top classes credits its share (as majority_vote_targets
        # shares a tie's mass), not the class that comes first in the schema.
        top = others[shared] == others[shared].max(1, keepdims=True)
        agree = top[np.arange(int(shared.sum())), mine[shared]] / top.sum(1)
        score[a] = float(agree.mean()) if shared.any() else 0.0
    eligible = [int(a) for a in np.nonzero(counts >= min_items)[0]]
    useless = [a for a in eligible if a in one]
    eligible = [a for a in eligible if a not in one]
    eligible.sort(key=lambda a: (-score[a], -counts[a], a))
    chosen = eligible[:limit]
    few, ranked_out = k - len(eligible) - len(useless), len(eligible) - len(chosen)
    same = f", {len(useless)} that gave every item the same label skipped" if useless else ""
    note = (
        f"trained {len(chosen)} of {k} annotators: {few} with fewer than {min_items} "
        f"training items skipped{same}, {ranked_out} more ranked below the {limit} that agree "
        "most with the other annotators' majority on train"
    )
    return chosen, note


def one_label_annotators(labels: np.ndarray) -> list[int]:
    """The annotator columns of ``labels`` (-1 = absent) that label some item and give
    every item they label the same class."""
    present = labels >= 0
    if not present.any():
        return []
    hi = np.where(present, labels, -1).max(0)
    lo = np.where(present, labels, hi.max() + 1).min(0)
    return [int(a) for a in np.nonzero(present.any(0) & (hi == lo))[0]]


def _one_label_note(cols: list[int], names: Sequence[str] | None) -> str | None:
    """Which annotators ``single_candidates`` skipped for giving one label only, and why."""
    if not cols:
        return None
    shown = "" if names is None else " (" + ", ".join(repr(names[a]) for a in cols) + ")"
    return (
        f"skipped {len(cols)} annotator(s){shown} that gave every training item they "
        "labelled the same class: a classifier taught one class can only predict it"
    )


def _all_one_label(
    labels: np.ndarray, limit: int, min_items: int, names: Sequence[str] | None
) -> tuple[list[int], str]:
    """Every annotator gave one label only: they are trained all the same (there is no
    other to choose), as ``single_candidates`` would otherwise (at most ``limit``, those
    that label most), with a note that says what their classifiers can do."""
    k, counts = labels.shape[1], (labels >= 0).sum(0)
    cols = list(range(k))
    if k > limit:
        cols = sorted((a for a in cols if counts[a] >= min_items), key=lambda a: -counts[a])
    if k == 1:
        who = "the only annotator" + ("" if names is None else f", {names[0]!r},")
        what = "its classifier can only predict that class"
    else:
        who = f"every one of the {k} annotators"
        what = "each classifier can only predict its annotator's class"
    return cols[:limit], (
        f"trained anyway: {who} gave every training item it labelled the same class, so {what}"
    )
