"""Datasets shipped inside the package, read by name: ``NAME:SPLIT`` wherever a file goes.

Each bundled dataset is a folder beside this module holding its splits as compressed
files the readers open directly (``train.csv.xz``), its label schema (``schema.json``),
its LICENSE and a README naming the source. Today: ``toxic-questions`` (MIT, Cheng et
al. 2024; see ``toxic-questions/README.md``).

A split is named ``toxic-questions:train`` (``NAME:SPLIT``) and accepted by
``read_items`` / ``read_splits`` / ``read_dataset``, and so by every command option that
takes a data file (``train --train/--valid``, ``evaluate --test``, ``bench``,
``annotate --data``). We chose that over a ``--dataset NAME`` option because it needs no
new option on any command, works in the library and on the command line alike, and mixes
with the user's own files (train on yours, test on a bundled split). An existing file of
that name still wins, so no path a user had before changes meaning. With no schema given,
``read_splits`` takes the bundled one (which names the safe class, so the toxic-vs-safe
metrics are on).

Example:
    >>> splits, schema = load_bundled("toxic-questions")
    >>> [len(splits[k]) for k in ("train", "valid", "test")], schema.safe
    ([6941, 1000, 1710], ('14',))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset

__all__ = [
    "BUNDLED",
    "BundledDataset",
    "bundled_names",
    "get_bundled",
    "load_bundled",
    "parse_spec",
]

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BundledDataset:
    """One shipped dataset: where its files are and who its annotators are."""

    name: str
    splits: tuple[str, ...]
    """Split names, each a ``SPLIT.csv.xz`` file in the folder."""
    annotators: dict[str, tuple[str, str | None]]
    """Annotator column -> (who, model id priced by ``annotators.pricing``; None: human)."""
    license: str
    source: str

    @property
    def folder(self) -> Path:
        return _HERE / self.name

    def path(self, split: str) -> Path:
        """The compressed file of ``split``.

        Raises:
            DataError: ``split`` is not one of the dataset's splits.
        """
        if split not in self.splits:
            raise DataError(
                f"bundled dataset {self.name!r} has no split {split!r}; "
                f"its splits are {', '.join(self.splits)}"
            )
        return self.folder / f"{split}.csv.xz"

    def paths(self) -> dict[str, Path]:
        return {s: self.path(s) for s in self.splits}

    def schema(self) -> LabelSchema:
        return LabelSchema.load(self.folder / "schema.json")


BUNDLED: dict[str, BundledDataset] = {
    d.name: d
    for d in (
        BundledDataset(
            name="toxic-questions",
            splits=("train", "valid", "test"),
            annotators={
                "label_1": ("human 1", None),
                "label_2": ("human 2", None),
                "label_3": ("vendor, human", None),
                "label_4": ("GPT-4", "gpt-4"),
                "label_5": ("GPT-4 Turbo", "gpt-4-turbo"),
                "label_6": ("Claude-2", "claude-2"),
            },
            license="MIT, Copyright (c) 2024 Zelei Cheng",
            source="github.com/chengzelei/crowdsource_toxicity_classification "
            "datasets/questions_labeled @ 24df589181499573e6b28efcd7ce2bc2a2f6d2fc",
        ),
    )
}
"""Every bundled dataset by name."""

_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*):(?P<split>[A-Za-z0-9_-]+)$")


def bundled_names() -> list[str]:
    return sorted(BUNDLED)


def get_bundled(name: str) -> BundledDataset:
    """The bundled dataset ``name``.

    Raises:
        DataError: no such dataset; the message lists the known names.
    """
    try:
        return BUNDLED[name]
    except KeyError:
        raise DataError(
            f"no bundled dataset {name!r}; known: {', '.join(bundled_names())}"
        ) from None


def parse_spec(spec: str | Path) -> tuple[BundledDataset, str] | None:
    """``(dataset, split)`` when ``spec`` names a bundled split (``NAME:SPLIT``) and is
    not an existing file; None when it is a plain path.

    Raises:
        DataError: it has the ``NAME:SPLIT`` shape, no such file exists and NAME or SPLIT
            is unknown (the message lists what is known).
    """
    text = str(spec)
    m = _SPEC.match(text)
    if m is None or Path(text).exists():
        return None
    if m["name"] not in BUNDLED:
        raise DataError(
            f"{text}: no such file, and {m['name']!r} is not a bundled dataset "
            f"(known: {', '.join(bundled_names())}; write NAME:SPLIT, e.g. "
            "toxic-questions:train)"
        )
    ds = BUNDLED[m["name"]]
    ds.path(m["split"])  # raises naming the splits
    return ds, m["split"]


def load_bundled(
    name: str, splits: tuple[str, ...] | None = None
) -> tuple[dict[str, AnnotatedDataset], LabelSchema]:
    """Read a bundled dataset: the same as ``read_splits`` on its files with its schema.

    Args:
        splits: which splits (default: all of them).

    Raises:
        DataError: unknown name or split (the message lists the known ones).
    """
    # readers resolves NAME:SPLIT through this module, so it is imported here, not above.
    from guardrail_dro.data.readers import read_splits

    ds = get_bundled(name)
    paths: dict[str, str | Path | None] = {s: ds.path(s) for s in splits or ds.splits}
    return read_splits(paths, schema=ds.schema())
