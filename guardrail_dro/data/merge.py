"""Merge datasets that label the same items: one file per source of labels, one to train on.

Why: a team's labels live in several files: the crowd's in a CSV, each ``annotate`` run's
in a JSONL, gold for a validation sample in another file, while training reads one
dataset (and our JSONL refuses an item id twice). Joining them by hand loses what each
annotation carries (kind, model, rationale, confidence), or keeps one of two contradicting
labels without a word. ``merge_datasets`` joins items by id (or by normalised text),
unions their annotations per annotator and refuses what it cannot decide on its own (one
id with two texts; one annotator, gold or group giving one item two labels) unless told a
policy. ``read_inputs`` reads the files as ``train`` does, under one label schema.

Example:
    >>> crowd, gpt, gold = read_inputs(["crowd.csv", "gpt.jsonl", "gold.csv"])
    >>> merged = merge_datasets([crowd, gpt, gold])
    >>> merged.save_jsonl("labels.jsonl")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item, normalise_text
from guardrail_dro.data.layouts import (
    ANNOTATOR_PATTERN,
    GOLD_CANDIDATES,
    GROUP_CANDIDATES,
    ID_CANDIDATES,
    TEXT_CANDIDATES,
    ReaderOptions,
    detect_format,
)
from guardrail_dro.data.readers import read_splits, resolve_path, schema_sidecar
from guardrail_dro.data.rows import csv_header, is_jsonl, wide_json_rows
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, DataError, ReaderError, SchemaError
from guardrail_dro.outputs import as_path

__all__ = ["JoinOn", "OnConflict", "merge_datasets", "read_inputs"]

JoinOn = Literal["id", "text"]
OnConflict = Literal["error", "keep-first", "keep-last", "drop"]

_KEEP: dict[str, Literal["old", "new", "drop"]] = {
    "keep-first": "old",
    "keep-last": "new",
    "drop": "drop",
}
_FIX = (
    "correct one of the files, or choose with --on-conflict: keep-first (the earlier "
    "file's), keep-last (the later file's) or drop (neither)"
)


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


@dataclass
class _Record:
    """One item of the result as it is built, with the dataset each value came from."""

    item_id: str
    text: str
    source: str
    anns: dict[str, tuple[Annotation, str]] = field(default_factory=dict)
    fields: dict[str, tuple[str, str]] = field(default_factory=dict)  # gold / group
    dropped: set[tuple[str, str]] = field(default_factory=set)  # (what, annotator or "")
    sources: set[str] = field(default_factory=set)

    def item(self) -> Item:
        return Item(
            item_id=self.item_id,
            text=self.text,
            annotations=tuple(a for a, _ in self.anns.values()),
            gold=self.fields["gold"][0] if "gold" in self.fields else None,
            group=self.fields["group"][0] if "group" in self.fields else None,
        )


class _Merger:
    """Folds items in, one dataset after another; counts what the notes report."""

    def __init__(self, join: JoinOn, on_conflict: OnConflict) -> None:
        self.join, self.on_conflict = join, on_conflict
        self.records: dict[str, _Record] = {}  # by join key
        self.id_keys: dict[str, str] = {}  # item id -> join key (text join: ids taken)
        self.duplicates = 0
        self.respelt = 0  # texts equal only once normalised (the first file's kept)
        self.renamed = 0  # text join: items whose id differs from the first file's
        self.repeated = 0  # text join: items repeating a text earlier in their own file
        self.reid = 0  # text join: new texts whose id an earlier text holds, given new ids
        self.resolved: list[str] = []
        self.kinds: dict[str, tuple[str, str]] = {}  # annotator -> (kind, first source)
        self.mixed: dict[str, str] = {}  # annotator -> note

    def add_dataset(self, source: str, dataset: AnnotatedDataset) -> None:
        seen: set[str] = set()  # join keys met in this dataset
        for it in dataset.items:
            key = it.item_id if self.join == "id" else normalise_text(it.text)
            repeat = key in seen  # only a text join meets a key twice in one dataset: the
            self.repeated += repeat  # text is the item, so its copies are one item too
            # (their labels unioned like any file's; a copy's label that differs is a
            # conflict). It was refused: toxic-questions' train repeats 20 texts.
            seen.add(key)
            self._add_item(source, key, it, repeat=repeat)

    def _add_item(self, source: str, key: str, it: Item, *, repeat: bool = False) -> None:
        rec = self.records.get(key)
        if rec is None:
            item_id = it.item_id
            if item_id in self.id_keys:  # text join: a new text under an id already used
                # (row numbers, the usual ids of files joined by text): a new id naming
                # its file; it was refused, which made --join text fail on such files
                item_id = f"{source}:{it.item_id}"
                while item_id in self.id_keys:
                    item_id += "'"
                self.reid += 1
            it = it.model_copy(update={"item_id": item_id})
            rec = self.records[key] = _Record(it.item_id, it.text, source)
            self.id_keys[it.item_id] = key
        elif rec.text != it.text:
            if normalise_text(rec.text) != normalise_text(it.text):  # id join only
                raise DataError(
                    f"item id {it.item_id!r} has different texts in {rec.source} "
                    f"({_short(rec.text)}) and {source} ({_short(it.text)}): the files "
                    "use one id for different items. Give them matching ids, or, if their "
                    "ids are row numbers that differ between files, join them by text "
                    "(--join text)"
                )
            self.respelt += not repeat  # a repeat within one file is counted as one
        if rec.item_id != it.item_id and not repeat:
            self.renamed += 1
        rec.sources.add(source)
        for a in it.annotations:
            self._kind(a, source)
            if ("annotator", a.annotator) in rec.dropped:
                continue
            old = rec.anns.get(a.annotator)
            if old is None:
                rec.anns[a.annotator] = (a, source)
            elif old[0].label == a.label:
                self.duplicates += 1  # one vote, the earlier one (with its rationale)
            else:
                what = f"annotator {a.annotator!r} labels it"
                keep = self._decide(rec, what, (old[0].label, old[1]), (a.label, source))
                if keep == "new":
                    rec.anns[a.annotator] = (a, source)
                elif keep == "drop":
                    del rec.anns[a.annotator]
                    rec.dropped.add(("annotator", a.annotator))
        for name, value in (("gold", it.gold), ("group", it.group)):
            if value is None or (name, "") in rec.dropped:
                continue
            prior = rec.fields.get(name)
            if prior is None:
                rec.fields[name] = (value, source)
            elif prior[0] != value:
                keep = self._decide(rec, f"{name} is", prior, (value, source))
                if keep == "new":
                    rec.fields[name] = (value, source)
                elif keep == "drop":
                    del rec.fields[name]
                    rec.dropped.add((name, ""))

    def _decide(
        self, rec: _Record, what: str, old: tuple[str, str], new: tuple[str, str]
    ) -> Literal["old", "new", "drop"]:
        """Apply the conflict policy to two different values of one thing of one item."""
        if old[1] == new[1]:  # a text repeated within one file (--join text)
            where = (
                f"item {rec.item_id!r}: {what} {old[0]!r} and {new[0]!r} on two rows of {old[1]}"
            )
        else:
            where = (
                f"item {rec.item_id!r}: {what} {old[0]!r} in {old[1]} and {new[0]!r} in {new[1]}"
            )
        if self.on_conflict == "error":
            raise DataError(f"{where}; {_FIX}")
        self.resolved.append(where)
        return _KEEP[self.on_conflict]

    def _kind(self, a: Annotation, source: str) -> None:
        first = self.kinds.setdefault(a.annotator, (a.kind, source))
        if first[0] != a.kind and a.annotator not in self.mixed:
            self.mixed[a.annotator] = (
                f"annotator {a.annotator!r} is {first[0]} in {first[1]} and {a.kind} in "
                f"{source}: each annotation keeps the kind its file gives (--llm-annotators "
                "reads a CSV's columns as LLMs)"
            )

    def notes(self) -> list[str]:
        joined = sum(len(r.sources) > 1 for r in self.records.values())
        notes = [f"{joined} item(s) appear in more than one file and were joined"] if joined else []
        if self.duplicates:
            notes.append(
                f"{self.duplicates} identical annotation(s) (the same annotator giving an "
                "item the same label in two files) counted once: the earlier one is kept"
            )
        if self.respelt:
            notes.append(
                f"{self.respelt} item(s) have texts that differ only in case, Unicode form "
                "or whitespace between files: the first file's text is kept"
            )
        if self.reid:
            notes.append(
                f"{self.reid} item(s) have a text no earlier file has under an id an earlier "
                "text holds (--join text): their ids are now FILE:ID"
            )
        if self.repeated:
            notes.append(
                f"{self.repeated} item(s) repeat a text that appears earlier in the same "
                "file: joined with it (--join text), its labels counted once per annotator"
            )
        if self.renamed:
            notes.append(
                f"{self.renamed} item(s) were joined by text under another id: the first "
                "file's id is kept"
            )
        if self.resolved:
            shown = "; ".join(self.resolved[:3]) + ("; ..." if len(self.resolved) > 3 else "")
            notes.append(
                f"{len(self.resolved)} conflicting value(s) resolved by --on-conflict "
                f"{self.on_conflict}: {shown}"
            )
        notes += self.mixed.values()
        if self.join == "id":
            notes += self._same_text_other_id()
        return notes

    def _same_text_other_id(self) -> list[str]:
        """Hint at a text join when files give one text different ids (row numbers)."""
        first: dict[str, _Record] = {}
        pairs = []
        for rec in self.records.values():
            other = first.setdefault(normalise_text(rec.text), rec)
            if other is not rec and other.source != rec.source:
                pairs.append((other, rec))
        if not pairs:
            return []
        a, b = pairs[0]
        return [
            f"{len(pairs)} text(s) appear under different item ids in different files "
            f"(e.g. {a.item_id!r} in {a.source}, {b.item_id!r} in {b.source}) and stay "
            "separate items: if the files number their items differently, join by text "
            "(--join text)"
        ]


def _check_choice(value: object, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def merge_datasets(
    datasets: Sequence[AnnotatedDataset],
    *,
    join: JoinOn = "id",
    on_conflict: OnConflict = "error",
    schema: LabelSchema | None = None,
    name: str = "merged",
) -> AnnotatedDataset:
    """One dataset from several that label the same items.

    Items are joined by ``item_id`` (``join="text"``: by ``normalise_text`` of their
    text, the first dataset's id kept), in order of first appearance; an item only some
    datasets have is kept, annotated or not (a gold-only validation item). Annotations are
    unioned per (item, annotator), each kept as read (kind, model, rationale,
    confidence): an annotator giving an item the same label twice is one vote (the
    earlier annotation), two different labels are a conflict. Gold and group are
    unioned the same way.

    Args:
        datasets: the datasets, in order (their ``name`` is what messages call them).
        join: ``"id"`` or ``"text"``.
        on_conflict: what two different values of one thing (an annotator's label,
            gold, group) of one item do: ``"error"`` refuses them, ``"keep-first"`` /
            ``"keep-last"`` keep the earlier / later dataset's, ``"drop"`` keeps neither.
        schema: the result's label schema; default: the first dataset's. Every label
            must be in it.
        name: the result's name.

    Returns:
        The merged dataset; its ``notes`` say what was joined, counted once, resolved.

    Raises:
        DataError: one id with two different texts (``join="id"``), one text twice in
            a dataset (``join="text"``), or a conflict under ``on_conflict="error"``;
            each message names the datasets, the item and the annotator.
        SchemaError: a label outside ``schema``.
        ConfigError: an unknown ``join`` or ``on_conflict``, or no datasets.
    """
    if isinstance(datasets, AnnotatedDataset) or not isinstance(datasets, Sequence):
        raise TypeError(
            "datasets must be a list of AnnotatedDataset, e.g. [crowd, gpt], "
            f"not {type(datasets).__name__}"
        )
    bad = [type(d).__name__ for d in datasets if not isinstance(d, AnnotatedDataset)]
    if bad:
        raise TypeError(f"datasets must hold only AnnotatedDataset, not {bad[0]}")
    if not datasets:
        raise ConfigError("datasets is empty: give at least one dataset to merge")
    _check_choice(join, "join", get_args(JoinOn))
    _check_choice(on_conflict, "on_conflict", get_args(OnConflict))
    schema = schema if schema is not None else datasets[0].schema
    merger = _Merger(join, on_conflict)
    for i, ds in enumerate(datasets):
        source = ds.name or f"datasets[{i}]"
        if ds.schema != schema:
            _check_labels(source, ds, schema)
        merger.add_dataset(source, ds)
    items = [r.item() for r in merger.records.values()]
    return AnnotatedDataset(items, schema, name=name, notes=merger.notes())


def _check_labels(source: str, ds: AnnotatedDataset, schema: LabelSchema) -> None:
    for it in ds.items:
        labels = [(f"annotator {a.annotator!r}", a.label) for a in it.annotations]
        for what, label in [*labels, ("gold", it.gold)]:
            if label is not None and label not in schema:
                raise SchemaError(
                    f"{source}: item {it.item_id!r}: {what} label {label!r} is not in the "
                    f"label schema of the merge {list(schema.classes)}"
                )


def read_inputs(
    paths: Sequence[str | Path],
    options: ReaderOptions | None = None,
    *,
    schema: LabelSchema | None = None,
) -> list[AnnotatedDataset]:
    """Read the files to merge as ``train`` reads its splits: with ``read_splits``, one
    label schema for all (given; else the first bundled split's or JSONL sidecar's;
    else inferred from every file), each file checked against it and named by its path.

    A JSONL whose sidecar declares another schema than the one used gets a note (its
    ``safe`` classes, say, would not reach the merged file's sidecar).

    Raises:
        ConfigError: no paths, one file given twice, or a column named in ``options``
            that some wide files have and others lack (the options apply to every file).
        DataError: a wide file of which nothing but texts was read, its other columns
            not annotator, gold or group columns by name: its labels would be lost.
        ReaderError, SchemaError: as ``read_splits``.
    """
    if isinstance(paths, str | Path) or not isinstance(paths, Sequence):
        raise TypeError(f"paths must be a list of paths, not {type(paths).__name__}")
    if not paths:
        raise ConfigError("paths is empty: give at least one file to merge")
    files: dict[Path, int] = {}
    for i, p in enumerate(paths):
        resolved = resolve_path(as_path(p, f"paths[{i}]")).resolve()
        if resolved in files:
            raise ConfigError(f"{p} is given twice (as file {files[resolved] + 1} and {i + 1})")
        files[resolved] = i
    opts = options if options is not None else ReaderOptions()
    try:
        splits, used = read_splits({str(p): p for p in paths}, options, schema=schema)
    except ReaderError:  # a named column one file lacks: say why when others have it
        _check_named_columns([str(p) for p in paths], opts)
        raise
    out = []
    for ds in splits.values():
        _check_read_something(ds, opts)
        file = resolve_path(ds.name)
        side = schema_sidecar(file)
        own = LabelSchema.load(side) if file.suffix == ".jsonl" and side.is_file() else used
        if (own.classes, own.safe) != (used.classes, used.safe):
            notes = [
                *ds.notes,
                f"{side} declares classes {list(own.classes)}, safe {list(own.safe)}; the "
                f"merge uses classes {list(used.classes)}, safe {list(used.safe)} (an "
                "earlier file's, or --schema / --labels)",
            ]
            ds = AnnotatedDataset(ds.items, used, name=ds.name, notes=notes)
        out.append(ds)
    return out


def _wide_header(path: str, opts: ReaderOptions) -> list[str] | None:
    """The columns of a wide-layout file (a JSONL of flat rows: every key); None for the
    other layouts, whose columns the column options do not map, and for a file that
    cannot be read (``read_splits`` says why)."""
    file = resolve_path(path)
    try:
        if not file.is_file() or detect_format(file, opts) != "wide":
            return None
        return wide_json_rows(file)[0] if is_jsonl(file) else csv_header(file)
    except (DataError, OSError, UnicodeError):
        return None


def _check_named_columns(paths: list[str], opts: ReaderOptions) -> None:
    """Why: the column options apply to every file of a merge, so a crowd CSV's
    ``--annotator-cols alice,bob`` failed on the gold file ("column 'alice' not found")
    without saying that the crowd file is to be merged alone first."""
    headers = {p: _wide_header(p, opts) for p in paths}
    wide = {p: h for p, h in headers.items() if h is not None}
    named = [
        (c, f"--{flag}")
        for cols, flag in (
            ((opts.text_col,), "text-col"),
            ((opts.id_col,), "id-col"),
            (opts.annotator_cols or (), "annotator-cols"),
        )
        for c in cols
        if c is not None
    ]
    for col, flag in named:
        have = [p for p, h in wide.items() if col in h]
        lack = [p for p, h in wide.items() if col not in h]
        if have and lack:
            raise ConfigError(
                f"{lack[0]} has no column {col!r} ({flag}), which {have[0]} has: the column "
                "options apply to every file of a merge. Merge the file(s) with that column "
                f"alone first (guardrail-dro merge {have[0]} {flag} ... --out "
                f"{Path(have[0]).name.split('.')[0]}.jsonl), then merge that JSONL with the "
                "others without the option"
            )


def _check_read_something(ds: AnnotatedDataset, opts: ReaderOptions) -> None:
    """Why: a wide file's annotator columns are found by name (``label_*``...); a crowd
    CSV with one column per person (``alice,bob,carol``) was merged as texts alone, its
    labels dropped without a word."""
    if any(it.annotations or it.gold or it.group for it in ds.items):
        return
    header = _wide_header(ds.name, opts)
    if header is None:
        return
    text = opts.text_col or next((c for c in TEXT_CANDIDATES if c in header), None)
    id_col = opts.id_col or next((c for c in ID_CANDIDATES if c in header), None)
    known = {text, id_col, opts.gold_col, opts.group_col, *GOLD_CANDIDATES, *GROUP_CANDIDATES}
    unread = [
        c
        for c in header
        if c and c not in known and not c.startswith("Unnamed:") and not ANNOTATOR_PATTERN.match(c)
    ]
    if unread:
        raise DataError(
            f"{ds.name}: no label was read from it, only texts: its columns {unread} are not "
            "annotator, gold or group columns by name (annotator columns are found as "
            "label_*, annotator_*, annotation_*). Name its annotator columns with "
            f"--annotator-cols {','.join(unread)} (merge it alone first when the other files "
            "lack them; a gold or group column: --gold-col / --group-col), or leave the "
            "file out"
        )
