"""Items, annotations and the annotated dataset that every stage reads and writes.

An ``AnnotatedDataset`` is a list of ``Item`` plus a ``LabelSchema``. Each item
carries any subset of annotators (sparse annotators are first-class: a dataset
may have hundreds, each labelling a few items). LLM annotations keep their
rationale, confidence and model name end to end.

On disk it is JSONL, one item per line (see ``save_jsonl`` / ``readers.read_dataset``)::

    {"item_id": "17", "text": "...", "gold": "14", "group": "3",
     "annotations": [{"annotator": "gpt-4", "kind": "llm", "label": "14",
                      "rationale": "...", "confidence": 0.9, "model": "gpt-4-0613"}]}
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError, SchemaError
from guardrail_dro.outputs import replace_file

__all__ = [
    "AnnotatedDataset",
    "Annotation",
    "Item",
    "LeakageReport",
    "find_leakage",
    "normalise_text",
    "schema_sidecar",
]

AnnotatorKind = Literal["human", "llm"]


class Annotation(BaseModel):
    """One annotator's label for one item."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    annotator: str = Field(min_length=1, description="Stable annotator id.")
    label: str = Field(min_length=1, description="A class name of the label schema.")
    kind: AnnotatorKind = "human"
    rationale: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    model: str | None = Field(default=None, description="The LLM that produced it, if any.")

    @field_validator("label", mode="before")
    @classmethod
    def _label_to_str(cls, v: object) -> object:
        # JSON numbers are labels too ("label": 14); never floats like 14.0.
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Item(BaseModel):
    """A text with its annotations and, where known, its gold label and group."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str = Field(min_length=1)
    text: str
    annotations: tuple[Annotation, ...] = ()
    gold: str | None = None
    group: str | None = None

    @field_validator("item_id", "gold", "group", mode="before")
    @classmethod
    def _to_str(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    def label_of(self, annotator: str) -> str | None:
        for a in self.annotations:
            if a.annotator == annotator:
                return a.label
        return None


def schema_sidecar(path: str | Path) -> Path:
    """Where the label schema of a JSONL dataset is kept: ``data.jsonl`` -> ``data.schema.json``."""
    p = Path(path)
    return p.with_name(p.name.removesuffix(".jsonl") + ".schema.json")


def normalise_text(text: str) -> str:
    """Case-folded, NFKC, whitespace-collapsed text: what the leakage check compares."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


class AnnotatedDataset:
    """Items plus their label schema, with dense array views for training.

    Args:
        items: the items; ids must be unique.
        schema: the label schema; every annotation and gold label must be in it.
        name: a display name (usually the file it came from).
        notes: what reading it noticed (merged duplicates, skipped rows), for the user.

    Raises:
        DataError: duplicate item ids.
        SchemaError: a label outside the schema (rejected, never coerced).
    """

    def __init__(
        self,
        items: Sequence[Item],
        schema: LabelSchema,
        *,
        name: str = "",
        notes: Sequence[str] = (),
    ) -> None:
        self.items: tuple[Item, ...] = tuple(items)
        self.schema = schema
        self.name = name
        self.notes: tuple[str, ...] = tuple(notes)
        seen: set[str] = set()
        for it in self.items:
            if it.item_id in seen:
                raise DataError(f"{name or 'dataset'}: item id {it.item_id!r} appears twice")
            seen.add(it.item_id)
            for label, what in [(a.label, f"annotator {a.annotator!r}") for a in it.annotations] + [
                (it.gold, "gold")
            ]:
                if label is not None and label not in schema:
                    raise SchemaError(
                        f"{name or 'dataset'}: item {it.item_id!r}: {what} label {label!r} "
                        f"is not in the label schema {list(schema.classes)}"
                    )

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __repr__(self) -> str:
        return (
            f"AnnotatedDataset(name={self.name!r}, items={len(self)}, "
            f"annotators={len(self.annotators)}, classes={self.schema.num_classes}, "
            f"gold={self.has_gold}, groups={len(self.groups)})"
        )

    # ---- views -------------------------------------------------------------------------
    @cached_property
    def annotators(self) -> tuple[str, ...]:
        """Annotator ids in order of first appearance."""
        order: dict[str, None] = {}
        for it in self.items:
            for a in it.annotations:
                order.setdefault(a.annotator, None)
        return tuple(order)

    @cached_property
    def annotator_kinds(self) -> dict[str, AnnotatorKind]:
        kinds: dict[str, AnnotatorKind] = {}
        for it in self.items:
            for a in it.annotations:
                kinds.setdefault(a.annotator, a.kind)
        return kinds

    @cached_property
    def groups(self) -> tuple[str, ...]:
        """Group names, in natural sort order."""
        from guardrail_dro.data.names import natural_key

        return tuple(
            sorted({it.group for it in self.items if it.group is not None}, key=natural_key)
        )

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]

    @property
    def has_gold(self) -> bool:
        return bool(self.items) and all(it.gold is not None for it in self.items)

    @property
    def has_groups(self) -> bool:
        return bool(self.items) and all(it.group is not None for it in self.items)

    def label_matrix(self, annotators: Sequence[str] | None = None) -> np.ndarray:
        """(items, annotators) int array of class indices, -1 where an annotator is absent.

        Args:
            annotators: column order; defaults to ``self.annotators``. Annotators not
                present in this dataset give all -1 columns, so a train and a valid
                split can share one column order.
        """
        cols = list(self.annotators if annotators is None else annotators)
        pos = {a: j for j, a in enumerate(cols)}
        out = np.full((len(self.items), len(cols)), -1, dtype=np.int64)
        index = self.schema.index
        for i, it in enumerate(self.items):
            for a in it.annotations:
                j = pos.get(a.annotator)
                if j is not None:
                    out[i, j] = index(a.label)
        return out

    def confidence_matrix(self, annotators: Sequence[str] | None = None) -> np.ndarray:
        """(items, annotators) float32 of each annotation's confidence, NaN where the
        annotator is absent or gave none; same column order rules as ``label_matrix``.

        The soft-label estimator reads it to trust a label more where its annotator was
        sure of it (train/model.py ``WeightEstimator``, the confidence term).
        """
        cols = list(self.annotators if annotators is None else annotators)
        pos = {a: j for j, a in enumerate(cols)}
        out = np.full((len(self.items), len(cols)), np.nan, dtype=np.float32)
        for i, it in enumerate(self.items):
            for a in it.annotations:
                j = pos.get(a.annotator)
                if j is not None and a.confidence is not None:
                    out[i, j] = a.confidence
        return out

    @property
    def has_confidence(self) -> bool:
        """Whether any annotation carries a confidence."""
        return any(a.confidence is not None for it in self.items for a in it.annotations)

    def rationales(
        self, annotators: Sequence[str] | None = None
    ) -> list[tuple[int, int, str, str]]:
        """(item row, annotator column, label, rationale) of every annotation that carries
        a non-blank rationale, columns as in ``label_matrix``.

        A list rather than an (items, annotators) matrix: rationales are long texts that
        only some annotators (the LLMs) write, and the estimator embeds each once
        (train/rationale.py).
        """
        cols = list(self.annotators if annotators is None else annotators)
        pos = {a: j for j, a in enumerate(cols)}
        out = []
        for i, it in enumerate(self.items):
            for a in it.annotations:
                j = pos.get(a.annotator)
                if j is not None and a.rationale is not None and a.rationale.strip():
                    out.append((i, j, a.label, a.rationale))
        return out

    @property
    def has_rationale(self) -> bool:
        """Whether any annotation carries a non-blank rationale."""
        return any(
            a.rationale is not None and a.rationale.strip()
            for it in self.items
            for a in it.annotations
        )

    def gold_array(self) -> np.ndarray:
        """Gold class index per item; raises DataError when any item lacks gold."""
        missing = [it.item_id for it in self.items if it.gold is None]
        if missing:
            raise DataError(
                f"{self.name or 'dataset'}: {len(missing)} item(s) have no gold label "
                f"(first: {missing[:3]}); this split needs gold (--gold-col)"
            )
        golds = [it.gold for it in self.items if it.gold is not None]  # every item, checked
        return np.array([self.schema.index(g) for g in golds], dtype=np.int64)

    def group_array(self, groups: Sequence[str] | None = None) -> np.ndarray:
        """Group index per item (in ``groups`` order, default ``self.groups``); -1 if none."""
        pos = {g: k for k, g in enumerate(self.groups if groups is None else groups)}
        return np.array(
            [pos.get(it.group, -1) if it.group is not None else -1 for it in self.items]
        )

    def content_hash(self) -> str:
        """sha256 of the canonical JSONL form: the data hash recorded in manifests."""
        h = hashlib.sha256()
        h.update(self.schema.model_dump_json().encode())
        for it in self.items:
            h.update(it.model_dump_json().encode())
            h.update(b"\n")
        return h.hexdigest()

    # ---- transforms -------------------------------------------------------------------
    def subset(self, indices: Iterable[int], *, name: str | None = None) -> AnnotatedDataset:
        return AnnotatedDataset(
            [self.items[i] for i in indices], self.schema, name=self.name if name is None else name
        )

    def without_overlap(self, *others: AnnotatedDataset) -> tuple[AnnotatedDataset, int]:
        """This dataset minus items whose normalised text appears in any of ``others``.

        Training items that reappear in the validation split let the upper level fit the
        very items it is judged on (and selection reward memorising them); on
        toxic-questions 664 of the 1,000 validation questions are also in train.

        Returns:
            (the filtered dataset, how many items were dropped)
        """
        keep = np.nonzero(~self.overlaps(*others))[0]
        return self.subset(keep), len(self.items) - len(keep)

    def overlaps(self, *others: AnnotatedDataset) -> np.ndarray:
        """Per item, whether its normalised text appears in any of ``others``."""
        seen = {normalise_text(t) for o in others for t in o.texts}
        return np.array([normalise_text(it.text) in seen for it in self.items], dtype=bool)

    def with_annotations(self, extra: Mapping[str, Sequence[Annotation]]) -> AnnotatedDataset:
        """A copy with annotations added per item id.

        An annotator already on an item is replaced by its new annotation.
        """
        items = []
        for it in self.items:
            new = extra.get(it.item_id)
            if new:
                names = {a.annotator for a in new}
                kept = tuple(a for a in it.annotations if a.annotator not in names)
                it = it.model_copy(update={"annotations": kept + tuple(new)})
            items.append(it)
        return AnnotatedDataset(items, self.schema, name=self.name)

    # ---- io ---------------------------------------------------------------------------
    def save_jsonl(self, path: str | Path) -> None:
        """Write one item per line, and the label schema beside it, each whole or not at
        all (``outputs.replace_file``).

        The schema goes to ``schema_sidecar(path)`` so that safe classes and class
        descriptions survive the round trip; readers pick it up automatically. Both are
        written whole to temporary files before either replaces its old file (the schema
        was written in place, after the data: a crash could leave it half-written); a
        crash between the two renames still leaves one new file beside one old one.
        The schema is written and renamed inside the data's ``write``: once the data are
        whole in their temporary file.
        """
        path = Path(path)

        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8") as f:
                f.writelines(
                    json.dumps(it.model_dump(exclude_none=True), ensure_ascii=False) + "\n"
                    for it in self.items
                )
            replace_file(schema_sidecar(path), self.schema.save)

        replace_file(path, write)


@dataclass(frozen=True)
class LeakageReport:
    """Items whose normalised text appears in two splits."""

    pairs: dict[tuple[str, str], int]
    examples: dict[tuple[str, str], list[str]]

    @property
    def any(self) -> bool:
        return any(self.pairs.values())

    def lines(self) -> list[str]:
        out = []
        for (a, b), n in self.pairs.items():
            if n:
                ex = "; ".join(repr(t[:60]) for t in self.examples[(a, b)][:2])
                out.append(f"{n} item(s) of {b!r} also appear in {a!r} (e.g. {ex})")
        return out


def find_leakage(splits: dict[str, AnnotatedDataset]) -> LeakageReport:
    """Compare every pair of splits by normalised text.

    Example:
        >>> report = find_leakage({"train": train, "valid": valid, "test": test})
        >>> for line in report.lines(): print("warning:", line)
    """
    norm = {name: {normalise_text(t): t for t in ds.texts} for name, ds in splits.items()}
    names = list(splits)
    pairs: dict[tuple[str, str], int] = {}
    examples: dict[tuple[str, str], list[str]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = norm[a].keys() & norm[b].keys()
            pairs[(a, b)] = len(common)
            examples[(a, b)] = [norm[b][k] for k in sorted(common)[:3]]
    return LeakageReport(pairs, examples)
