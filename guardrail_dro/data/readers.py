"""Read annotated datasets: the entry points every command and the library call.

``read_dataset`` reads one file, ``read_splits`` several sharing one label schema
(given, from a JSONL's sidecar, or inferred from the splits a model learns from). The
file layouts themselves (wide CSV, long CSV / JSONL, our JSONL) are parsed in
``guardrail_dro.data.layouts``; here the file is checked (exists, UTF-8, not empty), its
layout picked, and its labels checked against the schema. A path may also name a split
of a dataset shipped with the package, ``toxic-questions:train`` (see
``guardrail_dro.data.bundled``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from guardrail_dro.data.bundled import parse_spec
from guardrail_dro.data.items import AnnotatedDataset, Item, schema_sidecar
from guardrail_dro.data.layouts import (
    LONG_REQUIRED,
    ReaderOptions,
    ReadLog,
    detect_format,
    iter_csv,
    iter_jsonl,
    long_columns,
    read_long_rows,
    read_our_jsonl,
    read_wide,
)
from guardrail_dro.data.names import quoted_names
from guardrail_dro.data.rows import (
    COMPRESSED_SUFFIXES,
    is_jsonl,
    not_utf8_encoding,
    read_raw,
    shown_columns,
)
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, ReaderError, SchemaError
from guardrail_dro.outputs import as_path

__all__ = [
    "ReadLog",
    "ReaderOptions",
    "read_dataset",
    "read_items",
    "read_splits",
    "resolve_path",
    "schema_sidecar",
]


# ---- public entry points --------------------------------------------------------------


def _check_utf8(path: Path) -> None:
    """Fail with the line of the first byte that is not UTF-8 (a latin-1 export, say),
    or name the encoding of a UTF-16 / UTF-32 file."""
    raw = read_raw(path)
    other = not_utf8_encoding(raw)
    if other is not None:
        raise ReaderError(f"{other}, not UTF-8: save the file as UTF-8", path=path, line=1)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ReaderError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            path=path,
            line=line,
        ) from None


def resolve_path(path: str | Path) -> Path:
    """The file to read: ``path`` itself, or the file of a bundled split it names
    (``toxic-questions:train``).

    Raises:
        DataError: a ``NAME:SPLIT`` that is neither a file nor a bundled split.
        TypeError: ``path`` is not a str or path (``None`` from an unset option).
    """
    as_path(path, "path")
    bundled = parse_spec(path)
    return Path(path) if bundled is None else bundled[0].path(bundled[1])


def read_items(
    path: str | Path, options: ReaderOptions | None = None, *, log: ReadLog | None = None
) -> list[Item]:
    """Read items (labels as strings, not yet checked against a schema).

    Args:
        path: a file (CSV, JSONL, either optionally .xz / .gz) or a bundled split
            (``toxic-questions:train``).
        options: how to map its columns, and what to do with a bad row.
        log: filled with notes (merged duplicates, skipped rows) and each item's line.

    Raises:
        ReaderError: missing file, empty file, missing column, malformed row.
        DataError: a ``NAME:SPLIT`` that names no bundled split.
    """
    opts = _options(options)
    log = log if log is not None else ReadLog()
    path = resolve_path(path)
    if path.is_dir():
        raise ReaderError("is a directory, not a data file", path=path)
    if not path.is_file():
        raise ReaderError("file not found", path=path)
    _check_utf8(path)
    fmt = detect_format(path, opts)
    is_json = is_jsonl(path)
    if fmt == "jsonl":
        items = read_our_jsonl(path, iter_jsonl(path), opts, log)
    elif fmt == "long":
        if is_json:
            rows: Iterable[tuple[int, dict]] = iter_jsonl(path)
        else:
            header, rows = iter_csv(path)
            missing = [c for c in ("item_id", "text") if c not in long_columns(header)]
            if missing:
                raise ReaderError(
                    f"long format needs columns {list(LONG_REQUIRED)}; columns are "
                    f"{shown_columns(header)}",
                    path=path,
                    line=1,
                    column=missing[0],
                )
        items = read_long_rows(path, rows, opts, log)
    else:
        items = read_wide(path, opts, log)
    log.finish(path)
    if not items and log.skipped:  # not "no items": every one was a bad row
        line, reason = log.skipped[0]
        raise ReaderError(
            f"every row was skipped as bad (--on-bad-rows skip): {len(log.skipped)} row(s), "
            f"the first on line {line}: {reason}",
            path=path,
        )
    if not items:
        raise ReaderError("the file has a header but no items", path=path)
    return items


def _all_labels(items: Iterable[Item]) -> Iterator[str]:
    for it in items:
        for a in it.annotations:
            yield a.label
        if it.gold is not None:
            yield it.gold


# A class name longer than this is a text read as a label (a shifted column, a comment
# column named like an annotator's): refused, so no message or table echoes it whole.
MAX_LABEL_CHARS = 1000


def _check_label_lengths(path: Path, items: Sequence[Item], lines: dict[str, int]) -> None:
    """Why: a 50 MB cell in a label column became a class, and every note, error and
    table that names the classes printed it (100 MB from ``agreement``)."""
    for it in items:
        for who, label in [(f"annotator {a.annotator!r}", a.label) for a in it.annotations] + [
            ("gold", it.gold)
        ]:
            if label is not None and len(label) > MAX_LABEL_CHARS:
                raise ReaderError(
                    f"item {it.item_id!r}, {who}: a label of {len(label):,} characters "
                    f"({label[:40]!r}...); labels are class names: is a text or comment "
                    f"column read as labels? (at most {MAX_LABEL_CHARS:,} characters)",
                    path=path,
                    line=lines.get(it.item_id),
                )


def _check_labels(
    path: Path, items: Sequence[Item], schema: LabelSchema, lines: dict[str, int]
) -> None:
    for it in items:
        where = f"{path}, line {lines[it.item_id]}" if it.item_id in lines else str(path)
        for a in it.annotations:
            if a.label not in schema:
                raise SchemaError(
                    f"{where}: item {it.item_id!r}, annotator {a.annotator!r}: label "
                    f"{a.label!r} is not in the label schema {list(schema.classes)}"
                )
        if it.gold is not None and it.gold not in schema:
            raise SchemaError(
                f"{where}: item {it.item_id!r}: gold label {it.gold!r} is not in the label "
                f"schema {list(schema.classes)}"
            )


def _options(options: ReaderOptions | None) -> ReaderOptions:
    if options is not None and not isinstance(options, ReaderOptions):
        raise TypeError(
            "options must be a ReaderOptions, e.g. ReaderOptions(text_col='question'), "
            f"not {type(options).__name__}"
        )
    return options or ReaderOptions()


def _known_schema(paths: dict[str, str | Path | None]) -> LabelSchema | None:
    """The schema known before reading, when none is given: a bundled split's, else the
    first JSONL's ``.schema.json`` sidecar; None when it must be inferred."""
    given = [p for p in paths.values() if p is not None]
    bundled = [b[0] for p in given if (b := parse_spec(p))]
    if bundled:
        return bundled[0].schema()
    for p in map(Path, given):
        side = schema_sidecar(p)
        if p.suffix == ".jsonl" and side.is_file():
            return LabelSchema.load(side)
    return None


# Above this many inferred classes, the note names a few and says why that many is suspect.
MANY_CLASSES = 50


def _inferred_note(schema: LabelSchema, splits: Iterable[str]) -> str:
    """Say the schema was inferred (so no class is known safe), and which of its classes
    look like one class spelt two ways ('Spam' and 'spam')."""
    # Quoted for the shell when a class has a space or a symbol ("not toxic"): the
    # suggestion is meant to be pasted, and unquoted it split into several arguments.
    names = shlex.quote(",".join(schema.classes))
    declare, why = f"--labels {names} --safe CLASS, or --schema", ""
    if any("," in c for c in schema.classes):
        declare, why = "--schema", "; not --labels, which splits class names at commas"
    shown = str(list(schema.classes))
    if schema.num_classes > MANY_CLASSES:
        # Not every one: thousands of classes are a text or comment column read as labels,
        # and the note listed each of them (twice, with the --labels to paste).
        shown = f"{schema.num_classes:,} of them ({quoted_names(schema.classes, 10)})"
        declare = "--schema; so many classes may be a text or comment column read as labels"
    note = (
        f"label schema inferred from {', '.join(splits)}: classes {shown}; "
        f"no class is known to be safe (declare {declare}, for a guard's safe/toxic "
        f"decision{why})"
    )
    spellings: dict[str, list[str]] = {}
    for c in schema.classes:
        spellings.setdefault(c.strip().casefold(), []).append(c)
    alike = [v for v in spellings.values() if len(v) > 1]
    if alike:
        pairs = "; ".join(" and ".join(repr(c) for c in v) for v in alike)
        note += (
            f". {pairs} differ only by case or surrounding whitespace: if each pair is one "
            "class, make the files spell it one way"
        )
    return note


def read_splits(
    paths: dict[str, str | Path | None],
    options: ReaderOptions | None = None,
    *,
    schema: LabelSchema | None = None,
) -> tuple[dict[str, AnnotatedDataset], LabelSchema]:
    """Read several splits sharing one label schema.

    When ``schema`` is None it is the bundled dataset's schema when a path names a bundled
    split, else read from a JSONL's ``.schema.json`` sidecar if one exists, else inferred
    as the sorted set of labels seen in every split but one named ``test`` (and no class
    is then assumed safe, which the first split's notes say); a test split is checked
    against it. A schema known before reading (given, bundled or sidecar) is passed to the
    readers as ``ReaderOptions.classes``: a cell naming a declared class is that label,
    even one spelt like a missing value (``None``, ``NA``) or a float (``1.0``).
    ``None`` paths are skipped. Each dataset's ``notes`` say what reading its file
    noticed (merged duplicate annotations, rows skipped under ``on_bad_rows="skip"``,
    labels read as missing for their spelling, a named gold/group column it lacks).
    """
    if not isinstance(paths, Mapping):
        raise TypeError(f"paths must be a dict split name -> path, not {type(paths).__name__}")
    for name, p in paths.items():
        if p is not None:
            as_path(p, f"paths[{name!r}]")
    if all(p is None for p in paths.values()):
        # Not "no labels to infer a label schema from": there was no file to look in.
        raise ConfigError(
            f"paths names no file to read ({dict(paths)}): give at least one split a path "
            "(a file or a bundled split such as toxic-questions:train)"
        )
    if schema is None:
        schema = _known_schema(paths)
    opts = _options(options)
    if schema is not None:
        opts = opts.model_copy(update={"classes": schema.classes})
    logs = {name: ReadLog() for name in paths}
    raw = {
        name: (Path(p), read_items(p, opts, log=logs[name]))
        for name, p in paths.items()
        if p is not None
    }
    for name, (p, items) in raw.items():
        _check_label_lengths(p, items, logs[name].lines)
    if schema is None:
        # Classes come from what a model learns from; a test split is then checked
        # against them (its labels must not widen the schema a model is scored on).
        learn = {k: v for k, v in raw.items() if k != "test"} or raw
        labels = [lab for _p, items in learn.values() for lab in _all_labels(items)]
        if not labels:
            raise SchemaError(  # unlabelled texts (what annotate is for) are common
                "no labels in the data to infer a label schema from: pass --schema "
                "FILE.json or --labels a,b,c (annotate: or [[labels]] in --config)"
            )
        schema = LabelSchema.from_labels(labels)
        # Once, on the first split: every command prints each split's notes.
        logs[next(iter(learn))].notes.insert(0, _inferred_note(schema, learn))
    out = {}
    for name, (p, items) in raw.items():
        _check_labels(p, items, schema, logs[name].lines)
        out[name] = AnnotatedDataset(items, schema, name=name, notes=logs[name].notes)
    return out, schema


def read_dataset(
    path: str | Path,
    options: ReaderOptions | None = None,
    *,
    schema: LabelSchema | None = None,
) -> AnnotatedDataset:
    """Read one dataset file.

    Example:
        >>> ds = read_dataset("valid.csv", ReaderOptions(text_col="question"))
        >>> ds.label_matrix().shape
        (1000, 6)
    """
    file = resolve_path(path)
    name = Path(file.name[: -len(file.suffix)] if file.suffix in COMPRESSED_SUFFIXES else file).stem
    splits, _ = read_splits({name: path}, options, schema=schema)
    return next(iter(splits.values()))
