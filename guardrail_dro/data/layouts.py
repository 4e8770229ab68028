"""The three file layouts an annotated dataset comes in, and how each is parsed into items.

Detected from the file's columns when ``format="auto"``:

- **wide**: one row per item, one column per annotator (``question,label_1,...,label_6,
  label,dominant_topics``). Columns are mapped by *name*, never by position.
  A CSV with only a text column is a valid (unannotated) dataset.
- **long**: one row per (item, annotator): ``item_id,text,annotator,label`` plus optional
  ``rationale,confidence,gold,group,kind,model``. CSV or JSONL. crowd-kit's names
  (``task,worker,label``) are read as ``item_id,annotator,label``.
- **jsonl**: our format, one item per line with an ``annotations`` list (what we write).

Byte-order marks and unnamed index columns (pandas' ``Unnamed: 0`` or an empty header)
are tolerated, and so are xz- or gzip-compressed files (``train.csv.xz``, ``x.jsonl.gz``).
Every problem raises ``ReaderError`` naming file, line and column.
``guardrail_dro.data.rows`` iterates the rows, ``guardrail_dro.data.cells`` says what a
label, gold or group cell reads as (knowing the schema's classes when given);
``guardrail_dro.data.readers`` holds the entry points (``read_dataset``, ``read_splits``)
that pick a layout, check the encoding and build datasets.
``guardrail_dro.data.options`` holds ``ReaderOptions`` and ``ReadLog`` (re-exported here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from guardrail_dro.data.cells import (
    MISSING_SPELLINGS,
    cell,
    clean_our_item,
    confidence_cell,
    group_cell,
    label_cell,
)
from guardrail_dro.data.items import Annotation, Item
from guardrail_dro.data.options import Format, OnBadRows, ReaderOptions, ReadLog
from guardrail_dro.data.rows import (
    header_again,
    is_jsonl,
    iter_csv,
    iter_jsonl,
    shown_columns,
    wide_json_rows,
)
from guardrail_dro.errors import ReaderError

__all__ = [
    "LONG_ALIASES",
    "LONG_REQUIRED",
    "MISSING_SPELLINGS",
    "Format",
    "OnBadRows",
    "ReadLog",
    "ReaderOptions",
    "detect_format",
    "iter_csv",
    "iter_jsonl",
    "long_columns",
    "read_long_rows",
    "read_our_jsonl",
    "read_wide",
]

TEXT_CANDIDATES = ("text", "question", "prompt", "content", "comment", "sentence")
GOLD_CANDIDATES = ("gold", "label", "gold_label")
GROUP_CANDIDATES = ("group", "dominant_topics", "topic", "domain")
ID_CANDIDATES = ("item_id", "id")
ANNOTATOR_PATTERN = re.compile(r"^(label|annotator|annotation)_.+$")
LONG_REQUIRED = ("item_id", "text", "annotator", "label")
# crowd-kit's column names for the long layout (``task,worker,label``), read as ours.
LONG_ALIASES = {"task": "item_id", "worker": "annotator"}


def long_columns(header: Iterable[str]) -> set[str]:
    """The long-layout columns a header names, crowd-kit's aliases mapped to ours."""
    cols = set(header)
    return cols | {ours for alias, ours in LONG_ALIASES.items() if alias in cols}


def _unalias(row: dict) -> dict:
    """A long row keyed by our names (``task`` -> ``item_id``, ``worker`` -> ``annotator``)."""
    if not any(alias in row for alias in LONG_ALIASES):
        return row
    out = dict(row)
    for alias, ours in LONG_ALIASES.items():
        if alias in out and ours not in out:
            out[ours] = out.pop(alias)
    return out


def _is_index_col(name: str) -> bool:
    return name == "" or name.startswith("Unnamed:")


def _no_column(what: str, name: str, header: Sequence[str], path: Path) -> ReaderError:
    return ReaderError(
        f"{what} column {name!r} not found; columns are {shown_columns(header)}",
        path=path,
        line=1,
        column=name,
    )


def _pick(
    header: Sequence[str],
    given: str | None,
    candidates: Sequence[str],
    what: str,
    path: Path,
    *,
    exclude: Iterable[str] = (),
    optional: ReadLog | None = None,
) -> str | None:
    """The column for ``what``: ``given`` (required, or noted as absent into ``optional``),
    else the first of ``candidates`` in the header."""
    if given is not None:
        if given in header:
            return given
        if optional is None:
            raise _no_column(what, given, header, path)
        optional.no_column(what, given, path)
        return None
    excl = set(exclude)
    for c in candidates:
        if c in header and c not in excl:
            return c
    return None


# ---- the three layouts --------------------------------------------------------------


def read_wide(path: Path, opts: ReaderOptions, log: ReadLog | None = None) -> list[Item]:
    log = log if log is not None else ReadLog()
    is_json = is_jsonl(path)
    header, rows = wide_json_rows(path) if is_json else iter_csv(path)
    header_lines = 0 if is_json else 1
    text_col = _pick(header, opts.text_col, TEXT_CANDIDATES, "text", path)
    if text_col is None:
        raise ReaderError(
            f"no text column: pass --text-col (columns are {shown_columns(header)})",
            path=path,
            line=1,
        )
    if opts.annotator_cols is not None:
        ann_cols = list(opts.annotator_cols)
        for c in ann_cols:
            if c not in header:
                raise _no_column("annotator", c, header, path)
    else:
        # A column named for another role (--gold-col label_gold) is that role only: it
        # was also trained on as an annotator, one that always agreed with gold.
        named = {text_col, opts.id_col, opts.gold_col, opts.group_col}
        ann_cols = [h for h in header if ANNOTATOR_PATTERN.match(h) and h not in named]
    gold_col = _pick(
        header, opts.gold_col, GOLD_CANDIDATES, "gold", path, exclude=ann_cols, optional=log
    )
    group_col = _pick(header, opts.group_col, GROUP_CANDIDATES, "group", path, optional=log)
    id_col = _pick(header, opts.id_col, ID_CANDIDATES, "id", path)
    index_col = next((h for h in header if _is_index_col(h)), None) if id_col is None else None
    llm = set(opts.llm_annotators)
    classes, dropped = opts.classes, log.dropped

    items: list[Item] = []
    for line, row in rows:
        if (again := header_again(row, path, line)) is not None:
            log.bad_row(opts, again)
            continue
        text = row[text_col]
        if not text.strip():
            log.bad_row(opts, ReaderError("empty text", path=path, line=line, column=text_col))
            continue
        if id_col is not None and cell(row[id_col]) is None:
            # Not the row number: that made-up id could name another row's item.
            bad = ReaderError("missing item id", path=path, line=line, column=id_col)
            log.bad_row(opts, bad)
            continue
        item_id = (
            cell(row[id_col])
            if id_col
            else (cell(row[index_col]) if index_col is not None else None)
        ) or str(line - header_lines)  # the row number
        if item_id in log.lines:
            log.bad_row(
                opts,
                ReaderError(
                    f"item id {item_id!r} appears twice (first on line {log.lines[item_id]})",
                    path=path,
                    line=line,
                    column=id_col or index_col,
                ),
            )
            continue
        log.lines[item_id] = line
        anns = tuple(
            Annotation(annotator=c, label=lab, kind="llm" if c in llm else "human")
            for c in ann_cols
            if (lab := label_cell(row[c], classes, dropped)) is not None
        )
        items.append(
            Item(
                item_id=item_id,
                text=text,
                annotations=anns,
                gold=label_cell(row[gold_col], classes, dropped) if gold_col else None,
                group=group_cell(row[group_col]) if group_col else None,
            )
        )
    if items:
        labelled = {a.annotator for it in items for a in it.annotations}
        log.empty_columns([c for c in ann_cols if c not in labelled], path)
    return items


def _missing(path: Path, line: int, column: str, raw: object) -> ReaderError:
    """A long row without the item id, text, annotator or label it needs (a bad row)."""
    if column == "text":
        return ReaderError("empty text", path=path, line=line, column=column)
    spelt = cell(raw)
    why = f" ({spelt!r} reads as a missing value)" if spelt is not None else ""
    return ReaderError(
        f"missing {column.replace('_', ' ')}{why}", path=path, line=line, column=column
    )


def read_long_rows(
    path: Path, rows: Iterable[tuple[int, dict]], opts: ReaderOptions, log: ReadLog | None = None
) -> list[Item]:
    log = log if log is not None else ReadLog()
    llm = set(opts.llm_annotators)
    gold_key = opts.gold_col or "gold"
    group_key = opts.group_col or "group"
    seen: set[str] = set()  # of gold_key, group_key: the columns some row has
    by_id: dict[str, dict] = {}
    for line, raw_row in rows:
        if (again := header_again(raw_row, path, line)) is not None:
            log.bad_row(opts, again)
            continue
        row = _unalias(raw_row)
        seen.update(k for k in (gold_key, group_key) if k in row)
        annotator = cell(row.get("annotator"))
        label = label_cell(row.get("label"), opts.classes, log.dropped)
        missing = [c for c in ("item_id", "text") if cell(row.get(c)) is None]
        if (annotator is None) != (label is None):
            missing.append("annotator" if annotator is None else "label")
        if missing:
            log.bad_row(opts, _missing(path, line, missing[0], row.get(missing[0])))
            continue
        iid = str(row["item_id"]).strip()
        log.lines.setdefault(iid, line)
        rec = by_id.setdefault(iid, {"text": row["text"], "anns": {}, "gold": None, "group": None})
        if rec["text"] != row["text"]:
            raise ReaderError(
                f"item {iid!r} has a different text than on an earlier row",
                path=path,
                line=line,
                column="text",
            )
        gold = label_cell(row.get(gold_key), opts.classes, log.dropped)
        for key, col, v in (
            ("gold", gold_key, gold),
            ("group", group_key, group_cell(row.get(group_key))),
        ):
            if v is not None:
                if rec[key] is not None and rec[key] != v:
                    raise ReaderError(
                        f"item {iid!r} has {key} {v!r} here and {rec[key]!r} earlier",
                        path=path,
                        line=line,
                        column=col,
                    )
                rec[key] = v
        if annotator is None or label is None:
            continue  # an item row with no annotation yet
        try:
            ann = Annotation(
                annotator=annotator,
                label=label,
                kind=cell(row.get("kind")) or ("llm" if annotator in llm else "human"),
                rationale=cell(row.get("rationale")),
                confidence=confidence_cell(row.get("confidence"), path, line),
                model=cell(row.get("model")),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ReaderError(err["msg"], path=path, line=line, column=str(err["loc"][0])) from None
        earlier = rec["anns"].get(annotator)
        if earlier is not None and earlier.label == ann.label:
            log.merged += 1  # the same label twice (a re-export, a retried job): one vote
            continue
        if earlier is not None:
            log.bad_row(
                opts,
                ReaderError(
                    f"annotator {annotator!r} labels item {iid!r} {ann.label!r} here and "
                    f"{earlier.label!r} earlier",
                    path=path,
                    line=line,
                    column="annotator",
                ),
            )
            continue
        rec["anns"][annotator] = ann
    items = [
        Item(
            item_id=iid,
            text=r["text"],
            annotations=tuple(r["anns"].values()),
            gold=r["gold"],
            group=r["group"],
        )
        for iid, r in by_id.items()
    ]
    for what, given in (("gold", opts.gold_col), ("group", opts.group_col)):
        if given is not None and given not in seen:
            log.no_column(what, given, path)
    return items


def read_our_jsonl(
    path: Path,
    rows: Iterable[tuple[int, dict]],
    opts: ReaderOptions | None = None,
    log: ReadLog | None = None,
) -> list[Item]:
    opts = opts or ReaderOptions()
    log = log if log is not None else ReadLog()
    items = []
    for line, obj in rows:
        obj = clean_our_item(obj, opts.classes, log.dropped)
        try:
            item = Item.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            col = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err["loc"][-1] == "confidence":
                msg = f"confidence {err['input']!r} is not a number in [0, 1]"
            raise ReaderError(msg, path=path, line=line, column=col) from None
        if not item.text.strip():
            log.bad_row(opts, ReaderError("empty text", path=path, line=line, column="text"))
            continue
        if item.item_id in log.lines:
            first = log.lines[item.item_id]
            msg = f"item id {item.item_id!r} appears twice (first on line {first})"
            log.bad_row(opts, ReaderError(msg, path=path, line=line, column="item_id"))
            continue
        log.lines[item.item_id] = line
        items.append(item)
    return items


def detect_format(path: Path, opts: ReaderOptions) -> Format:
    if opts.format != "auto":
        return opts.format
    if is_jsonl(path):
        first = next(iter_jsonl(path), None)
        if first is None:
            raise ReaderError("the file is empty", path=path)
        keys = long_columns(first[1].keys())
        if "annotations" in keys or ("item_id" in keys and keys <= set(Item.model_fields)):
            return "jsonl"  # ours (an item without annotations: no annotations key)
        # One row per annotation, or flat rows of one item each (plain texts to label).
        return "long" if "annotator" in keys else "wide"
    header, rows = iter_csv(path)
    rows.close()
    if all(c in long_columns(header) for c in LONG_REQUIRED):
        return "long"
    return "wide"
