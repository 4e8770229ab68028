"""The background text a run trains on and holds out (``train.background``): read,
without the texts of the splits that score the run, and served as feature splits.

Its own module so that background.py stays the loss terms and the choice of their
weight and amount; background.py re-exports these names, which the trainer calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from guardrail_dro.data.background import BackgroundText, background_dataset, load_background
from guardrail_dro.data.items import AnnotatedDataset, normalise_text
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError

__all__ = ["leaving_out", "load", "shared_with", "splits"]

_LEFT_OUT: ContextVar[tuple[tuple[str, frozenset[str]], ...]] = ContextVar("left_out", default=())
"""(split name, its normalised texts) that ``load`` also leaves out (``leaving_out``)."""


@contextmanager
def leaving_out(split: str, texts: Iterable[str]) -> Iterator[None]:
    """Inside: ``load`` also leaves out the background texts that are in ``texts`` (a
    split that scores the runs, e.g. the bench's test split), with a note naming
    ``split``, as it leaves out valid's.

    Why a context and not an argument: the trainer sees train and valid only (it never
    sees a test split), and the bench's runs reach ``load`` through it; only these
    normalised texts cross, for this one filter.
    """
    token = _LEFT_OUT.set((*_LEFT_OUT.get(), (split, frozenset(normalise_text(t) for t in texts))))
    try:
        yield
    finally:
        _LEFT_OUT.reset(token)


def shared_with(safe: list[str], harmful: list[str], texts: Iterable[str]) -> int:
    """How many background texts of the sources (safe and harmful; train and held-out
    parts) are also in ``texts``, as ``load`` compares them (normalised)."""
    held = {normalise_text(t) for t in texts}
    read = [load_background(s, harmful=bad) for s, bad in ((safe, False), (harmful, True)) if s]
    return sum(normalise_text(t) in held for bg in read for t in (*bg.train, *bg.heldout))


def load(
    safe: list[str], harmful: list[str], valid: AnnotatedDataset, drop_overlap: bool
) -> tuple[BackgroundText | None, BackgroundText | None, list[str]]:
    """The run's safe and harmful background text (None where not given) and notes:
    with ``drop_overlap``, without the texts that are also in ``valid``, as the training
    items are (a valid text trained as safe or as harmful, whatever its gold, is one that
    the upper level and model selection then score the guard on), nor those in a split
    ``leaving_out`` names (the bench's test split, which scores every run).

    Raises:
        DataError: a source that cannot be read, or no background text left to train
            on once valid's (and those splits') are dropped.
    """
    out: list[BackgroundText | None] = []
    notes: list[str] = []
    held = [("valid", frozenset(normalise_text(t) for t in valid.texts)), *_LEFT_OUT.get()]
    for specs, bad in ((safe, False), (harmful, True)):
        if not specs:
            out.append(None)
            continue
        text = load_background(specs, harmful=bad)
        train, heldout = text.train, text.heldout
        dropped: dict[str, int] = {}
        for split, texts in held if drop_overlap else []:
            before = len(train) + len(heldout)
            train = tuple(t for t in train if normalise_text(t) not in texts)
            heldout = tuple(t for t in heldout if normalise_text(t) not in texts)
            if len(train) + len(heldout) < before:
                dropped[split] = before - len(train) - len(heldout)
        kind = "harmful background" if bad else "background-safe"
        if dropped and (not train or not heldout):
            raise DataError(
                f"{kind} text {', '.join(specs)}: {sum(dropped.values())} of its texts are "
                f"also in {' or '.join(dropped)} and were left out (drop_overlap), which "
                f"leaves {len(train)} to train and {len(heldout)} held out; it needs one "
                "of each (--keep-overlap keeps them)"
            )
        notes += [
            f"{n} {kind} text(s) also in {split} were left out (drop_overlap)"
            for split, n in dropped.items()
        ]
        out.append(dataclasses.replace(text, train=train, heldout=heldout))
    return out[0], out[1], notes


def splits(
    background: BackgroundText | None,
    harmful: BackgroundText | None,
    schema: LabelSchema,
    fraction: float = 1.0,
) -> dict[str, AnnotatedDataset]:
    """The feature splits of a run's background text: ``background`` (the configured
    share of a fixed permutation of the safe train part, so a smaller amount is part of
    every larger one) and ``background_heldout``, gold the safe class; ``harmful`` and
    ``harmful_heldout``, no gold. Only the sources given."""
    out: dict[str, AnnotatedDataset] = {}
    if background:
        order = np.random.default_rng(0).permutation(len(background.train))
        used = [background.train[i] for i in order[: max(1, round(fraction * len(order)))]]
        out["background"] = background_dataset(used, schema, "background")
        out["background_heldout"] = background_dataset(
            background.heldout, schema, "background-heldout"
        )
    if harmful:
        out["harmful"] = background_dataset(harmful.train, schema, "harmful", harmful=True)
        out["harmful_heldout"] = background_dataset(
            harmful.heldout, schema, "harmful-heldout", harmful=True
        )
    return out
