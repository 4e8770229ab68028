"""Checks of the splits a run trains and selects on, made once the method has split them.

User-supplied splits can be legal and still unable to support what a run does with
them: a train split that is all overlap with valid, a valid split too small to select
on, classes or annotators one split has and the other does not. Reading the files
cannot tell (each split is fine alone); the trainer can, once it knows the method. The
functions here are pure: they read datasets and return notes for the run's manifest,
or raise a ``DataError`` that names what was wrong and what to do, before anything is
embedded or trained.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from guardrail_dro.data.names import quoted_names
from guardrail_dro.errors import DataError

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.train.targets import TargetSource

__all__ = [
    "GOLD_MIN_VALID",
    "MIN_GROUP_ITEMS",
    "MIN_VALID_ITEMS",
    "check_gold_split",
    "check_train_annotators",
    "check_train_left",
    "class_notes",
    "quoted_names",
    "setup_notes",
    "ungrouped_note",
    "valid_annotator_notes",
    "valid_size_notes",
]

MIN_VALID_ITEMS = 100
"""Below this many gold items valid's numbers are too noisy to select on: the standard
error of an accuracy near 0.5 is 0.5 / sqrt(n), 0.05 at 100 items, so two epochs (or
estimator capacities) a few points apart on fewer items cannot be told apart."""

MIN_GROUP_ITEMS = 10
"""Below this many items one item moves a group's accuracy by more than 10 points, and
selection by worst-group accuracy follows whichever item of the smallest group flips."""

GOLD_MIN_VALID = 5
"""``gold`` trains on 80% of valid and selects on the other 20%: the smallest valid in
which the 20% is one whole item. With fewer the selection part is empty (1 item) or
the split is not the 80/20 the notes report."""


def check_train_left(train: AnnotatedDataset, dropped: int, split: str = "valid") -> None:
    """Raise when dropping the train items that are also in ``split`` (valid for the
    trainer, test for the bench) left none: every later step would fail on an empty
    split with an error that names none of this (the bench's said train had no
    annotator labels)."""
    why = {
        "valid": "the upper level and model selection do not judge the model on its own "
        "training items",
        "test": "the bench scores every method on test items it did not train on",
    }.get(split, f"no {split} item is trained on")
    if len(train) == 0 and dropped:
        raise DataError(
            f"no training items left after dropping the {dropped} train item(s) that are "
            f"also in {split} (same text once normalised): they are dropped so that {why}. "
            f"Give train items that {split} does not have, or keep them with --keep-overlap "
            "(drop_overlap=False)"
        )


def check_train_annotators(
    train: AnnotatedDataset, methods: Sequence[str], path: str | Path | None = None
) -> None:
    """Raise when no column of train was read as an annotator's and one of ``methods``
    learns from annotators, naming the file ``path`` and its columns: the trainer's own
    check knows neither (a file of ``text,label``, or of ``rater_*`` columns, which no
    name rule matches). Called by the commands, before any model is loaded."""
    from guardrail_dro.data.rows import csv_header, data_suffix
    from guardrail_dro.train.methods import lookup

    if train.annotators or not any(lookup(m)[0].targets.needs_annotators for m in methods):
        return
    where, columns = train.name or "train", ""
    if path is not None:
        where = str(path)
        if Path(path).is_file() and data_suffix(Path(path)) == ".csv":
            columns = f" (its columns are {[h for h in csv_header(Path(path)) if h]})"
    raise DataError(
        f"{where}: no annotator labels to learn from: no column was read as an "
        f"annotator's{columns}; annotator columns are found by name (label_*, "
        "annotator_*, annotation_*): name yours with --annotator-cols, or train the "
        "gold method on valid's gold"
    )


def check_gold_split(valid: AnnotatedDataset) -> None:
    """Raise when valid is too small for ``gold``'s 80/20 split (``GOLD_MIN_VALID``);
    with one item the selection part was empty and the head failed on a 0x0 matrix."""
    if len(valid) < GOLD_MIN_VALID:
        raise DataError(
            f"gold trains on 80% of valid and selects on the other 20%: that needs at "
            f"least {GOLD_MIN_VALID} valid items (one to select on), "
            f"{valid.name or 'valid'} has {len(valid)}; add gold items to valid or use "
            "another method"
        )


def valid_size_notes(valid: AnnotatedDataset) -> list[str]:
    """Notes when valid is too small to select on (``MIN_VALID_ITEMS``), or any of its
    groups is (``MIN_GROUP_ITEMS``), smallest first: such a run trains, but its epoch,
    checkpoint and estimator capacity are chosen by noise."""
    notes = []
    if len(valid) < MIN_VALID_ITEMS:
        notes.append(
            f"valid has {len(valid)} gold item(s): selection (epoch, estimator capacity) on "
            f"fewer than {MIN_VALID_ITEMS} items is mostly noise (an accuracy's standard error is "
            "about 0.5/sqrt(n)); add gold items to valid if you can"
        )
    sizes = Counter(it.group for it in valid if it.group is not None)
    small = sorted((n, g) for g, n in sizes.items() if n < MIN_GROUP_ITEMS)
    if small:
        shown = ", ".join(f"{g!r} ({n})" for n, g in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        least = small[0][0]
        notes.append(
            f"valid group(s) with fewer than {MIN_GROUP_ITEMS} items: {shown}{more}: "
            f"worst-group selection on a group of {least} item{'s' if least > 1 else ''} "
            "is noise; merge small groups or add valid items to them"
        )
    return notes


def ungrouped_note(valid: AnnotatedDataset) -> str | None:
    """A note when valid items have no group: all of them (no group column, or one left
    blank; the worst-group columns then show '-' with nothing saying why), or some
    (blank cells: their group index is -1, which every group risk and metric skips)."""
    if not valid.groups:
        return (
            f"valid has no groups (--group-col): none of its {len(valid)} items has a "
            "group, so there is no group or worst-group accuracy, and the epoch and "
            "checkpoint are chosen by accuracy, not by the worst group"
        )
    missing = sum(it.group is None for it in valid)
    if not missing:
        return None
    return (
        f"valid: {missing} of {len(valid)} items have no group: they count in accuracy and "
        "in no group (GroupDRO and the worst group ignore them)"
    )


def valid_annotator_notes(train_annotators: Sequence[str], valid: AnnotatedDataset) -> list[str]:
    """Notes on valid's annotators that label no train item: the estimator weighs
    train's annotators (its columns), so their valid labels cannot be used."""
    known = set(train_annotators)
    only = [a for a in valid.annotators if a not in known]
    if not only:
        return []
    if len(only) == len(valid.annotators):
        return [
            f"valid's annotators ({quoted_names(only)}) label no train item: the estimator weighs "
            f"train's annotators ({quoted_names(train_annotators)}), so valid's labels cannot be "
            "used (valid selects by its gold alone)"
        ]
    return [
        f"valid: annotator(s) {quoted_names(only)} label no train item: their valid labels "
        "cannot be used (the estimator weighs train's annotators)"
    ]


def class_notes(
    classes: Sequence[str], train_labels: np.ndarray | None, valid_gold: np.ndarray
) -> list[str]:
    """Notes on schema classes that train never labels (the classifier cannot learn
    them) or that valid's gold never has (valid cannot score them).

    Args:
        classes: the schema's classes, in index order.
        train_labels: class indices of every training label (any shape), -1 = none;
            None where the targets are not labels (a teacher's probabilities).
        valid_gold: (V,) gold class index of each valid item.
    """
    gold = np.bincount(valid_gold, minlength=len(classes))
    notes = []
    if train_labels is not None:
        seen = np.bincount(train_labels[train_labels >= 0].ravel(), minlength=len(classes))
        notes += [
            f"class {c!r} has no training label: the classifier cannot learn it "
            f"({int(gold[k])} valid gold item(s) are {c!r})"
            for k, c in enumerate(classes)
            if seen[k] == 0
        ]
    absent = [c for k, c in enumerate(classes) if gold[k] == 0]
    if absent:
        notes.append(
            f"class(es) {quoted_names(absent)} have no valid gold item: valid cannot score them "
            "(no recall for them, and selection never rewards learning them)"
        )
    return notes


def setup_notes(
    train: AnnotatedDataset,
    valid: AnnotatedDataset,
    annotators: Sequence[str],
    targets: TargetSource,
) -> list[str]:
    """Every note above for the splits as the method split them: ``train`` the items it
    trains on, ``annotators`` train's annotators (the run's columns). The training
    labels are the annotators' or, for ``gold``, valid's gold; a teacher's targets are
    probabilities over every class, not labels to count."""
    learned_from: np.ndarray | None = None
    if targets.needs_annotators:
        learned_from = train.label_matrix(annotators)
    elif train.has_gold:
        learned_from = train.gold_array()
    notes = valid_size_notes(valid)
    notes += [n for n in (ungrouped_note(valid),) if n is not None]
    if targets.learned:  # only a learned source reads valid's annotator labels
        notes += valid_annotator_notes(annotators, valid)
    notes += class_notes(valid.schema.classes, learned_from, valid.gold_array())
    return notes
