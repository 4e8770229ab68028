"""Split one labelled dataset into train / valid (/ test) by where its gold labels are.

Why: after ``merge`` a team has one file in which only a sample carries gold labels,
while ``train`` reads a train split and a valid split with gold on every item (and
``bench`` a test split too). ``split_dataset`` sends the items with gold to valid (and a
seeded, stratified share of them to test) and the items without gold to train, keeping
every text in one split only.

The rule for repeated texts (compared as ``normalise_text`` compares them: case, Unicode
form and whitespace aside): items sharing a text form one unit, never cut across splits.
A unit with a gold item goes out of train whole: its gold items to valid or test, its
items without gold to no split at all (valid and test hold gold items only, and in train
they would be the very texts valid judges: the trainer drops train items seen in valid,
so they would be lost from train anyway). A note counts them.

Example:
    >>> parts = split_dataset(read_dataset("labels.jsonl"), test_fraction=0.2, seed=0)
    >>> for name, ds in parts.splits().items():
    ...     ds.save_jsonl(f"splits/{name}.jsonl")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from guardrail_dro.data.items import AnnotatedDataset, normalise_text
from guardrail_dro.data.names import natural_key, quoted_names
from guardrail_dro.errors import ConfigError, DataError

__all__ = ["MAX_TEST_FRACTION", "DatasetSplits", "split_dataset"]

MAX_TEST_FRACTION = 0.9
"""The largest share of the gold items ``test_fraction`` may send to test: valid keeps
the rest, and a valid split of a tenth of the gold is already a thin one to select on."""


@dataclass(frozen=True)
class DatasetSplits:
    """What ``split_dataset`` returns: the splits, and what it did that the user should
    hear about (texts left out, groups too small to reach test)."""

    train: AnnotatedDataset
    """The items without gold (but those sharing a text with a gold item)."""
    valid: AnnotatedDataset
    """The gold items that are not in test."""
    test: AnnotatedDataset | None
    """A ``test_fraction`` share of the gold items; None when ``test_fraction`` is 0."""
    notes: tuple[str, ...] = ()

    def splits(self) -> dict[str, AnnotatedDataset]:
        """The splits by file name (``train``, ``valid``, ``test`` when there is one)."""
        out = {"train": self.train, "valid": self.valid}
        if self.test is not None:
            out["test"] = self.test
        return out


def _check_arguments(dataset: object, test_fraction: object, seed: object) -> float:
    if not isinstance(dataset, AnnotatedDataset):
        raise TypeError(f"dataset must be an AnnotatedDataset, not {type(dataset).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise TypeError(f"test_fraction must be a number, not {type(test_fraction).__name__}")
    if not 0 <= test_fraction <= MAX_TEST_FRACTION:  # a NaN fails this too
        raise ConfigError(
            f"test_fraction (--test-fraction) must be between 0 and {MAX_TEST_FRACTION}, not "
            f"{test_fraction}: it is the share of the gold items that goes to test, the rest "
            "going to valid (0: no test split)"
        )
    return float(test_fraction)


def _units(dataset: AnnotatedDataset) -> list[list[int]]:
    """Item indices grouped by normalised text, in order of first appearance."""
    by_text: dict[str, list[int]] = {}
    for i, it in enumerate(dataset.items):
        by_text.setdefault(normalise_text(it.text), []).append(i)
    return list(by_text.values())


def _test_counts(sizes: Sequence[int], fraction: float) -> list[int]:
    """How many units of each stratum go to test: ``fraction`` of all units, shared out by
    largest remainder (so the total is the rounded share, not a sum of rounded shares),
    each stratum keeping at least one unit for valid (worst-group selection needs every
    group in valid)."""
    quotas = [n * fraction for n in sizes]
    counts = [math.floor(q) for q in quotas]  # below n: fraction <= 0.9
    seats = math.floor(sum(sizes) * fraction + 0.5) - sum(counts)
    for s in sorted(range(len(sizes)), key=lambda s: (-(quotas[s] % 1), s)):
        if seats <= 0:
            break
        if counts[s] < sizes[s] - 1:
            counts[s] += 1
            seats -= 1
    return counts


def split_dataset(
    dataset: AnnotatedDataset, *, test_fraction: float = 0.0, seed: int = 0
) -> DatasetSplits:
    """Split ``dataset`` into train (its items without gold) and valid (its gold items),
    and a test split of ``test_fraction`` of the gold items when it is above 0.

    Items keep their order in every split. Items sharing a normalised text stay in one
    split; those of a text that some item has gold for are kept out of train (see the
    module docstring). Test is drawn per stratum, the group when gold items have groups,
    else the gold label, so that valid and test see the same mix; each stratum keeps at
    least one text in valid. The draw depends on ``seed`` alone.

    Args:
        dataset: items, some of them with a gold label (a merged ``labels.jsonl``).
        test_fraction: the share of the gold texts (an item repeated counts once) that
            goes to test, in [0, 0.9]; 0 makes no test split.
        seed: seeds the draw of the test items.

    Returns:
        The splits, with notes for the user.

    Raises:
        TypeError: ``dataset`` is not an ``AnnotatedDataset``, ``seed`` not an int.
        ConfigError: ``test_fraction`` outside [0, 0.9], or so small for the gold items
            there are that test would be empty.
        DataError: no item has gold (valid would be empty), or every item has gold or
            shares its text with a gold item (train would be empty).
    """
    fraction = _check_arguments(dataset, test_fraction, seed)
    items = dataset.items
    gold_count = sum(it.gold is not None for it in items)
    name = dataset.name or "the dataset"
    if not gold_count:
        raise DataError(
            f"{name}: no item has a gold label, so there is nothing to validate on: label a "
            "sample of its items with gold (its gold column: --gold-col; or a file of gold "
            "labels joined to it with `guardrail-dro merge`) and split again"
        )
    units = _units(dataset)
    held: list[list[int]] = []  # units with gold: their gold items leave train
    train_idx: list[int] = []
    left_out: list[str] = []  # ids of items without gold whose text a gold item has
    for unit in units:
        gold = [i for i in unit if items[i].gold is not None]
        if gold:
            held.append(gold)
            left_out += [items[i].item_id for i in unit if items[i].gold is None]
        else:
            train_idx += unit
    if not train_idx:
        why = (
            "every item has a gold label"
            if gold_count == len(items)
            else f"the {len(left_out)} item(s) without gold share their texts with gold items"
        )
        raise DataError(
            f"{name}: {why}, so train would be empty: split sends the gold items to valid "
            "(and test) and trains on the items without gold. Keep gold labels only on the "
            "sample to validate on, or add the items to train on (merge their labels in)"
        )

    by_group = any(items[u[0]].group is not None for u in held)
    strata: dict[str, list[int]] = {}  # stratum -> indices of held units
    for k, unit in enumerate(held):
        first = items[unit[0]]
        key = first.group if by_group else first.gold
        strata.setdefault("" if key is None else key, []).append(k)
    notes: list[str] = []
    test_units: set[int] = set()
    if fraction > 0:
        names = sorted(strata, key=natural_key)
        counts = _test_counts([len(strata[s]) for s in names], fraction)
        stratum = "group" if by_group else "gold class"
        if not sum(counts):
            raise ConfigError(
                f"test_fraction (--test-fraction) {fraction} of {len(held)} gold text(s) puts "
                f"none in test (each {stratum} keeps at least one in valid): label more items "
                "with gold, raise it, or leave it at 0 (no test split)"
            )
        rng = np.random.default_rng(seed)
        for s, k in zip(names, counts, strict=True):
            test_units.update(strata[s][j] for j in rng.permutation(len(strata[s]))[:k])
        valid_only = [s or "(none)" for s, k in zip(names, counts, strict=True) if not k]
        if valid_only:
            notes.append(
                f"{'group(s)' if by_group else 'gold class(es)'} "
                f"{quoted_names(valid_only, 3)} in valid "
                "only: too few gold texts to spare one for test (each keeps one in valid)"
            )
        repeated = sum(len(u) > 1 for u in held)
        if repeated:
            notes.append(
                f"{repeated} text(s) have gold on more than one item (case, Unicode form and "
                "whitespace aside): each text's items are in one split"
            )
    if left_out:
        notes.append(
            f"{len(left_out)} item(s) without gold share their text with a gold item (case, "
            f"Unicode form and whitespace aside; e.g. {quoted_names(left_out, 2)}) and are in no "
            "split: valid and test take gold items only, and in train they would be texts "
            "valid judges (the trainer drops train items seen in valid)"
        )

    valid_idx = sorted(i for k, u in enumerate(held) if k not in test_units for i in u)
    test_idx = sorted(i for k in test_units for i in held[k])
    return DatasetSplits(
        train=dataset.subset(sorted(train_idx), name="train"),
        valid=dataset.subset(valid_idx, name="valid"),
        test=dataset.subset(test_idx, name="test") if fraction > 0 else None,
        notes=tuple(notes),
    )
