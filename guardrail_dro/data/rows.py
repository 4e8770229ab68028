"""Rows of a data file and the cells in them that mean "missing".

``iter_csv`` / ``iter_jsonl`` yield (line number, row) pairs and raise ``ReaderError``
naming file and line; ``is_missing`` says which cells are missing values, spelt as
pandas spells them. ``guardrail_dro.data.layouts`` builds items from these rows.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

from guardrail_dro.errors import ReaderError

__all__ = [
    "CSV_FIELD_LIMIT",
    "MISSING_SPELLINGS",
    "drop_missing_labels",
    "is_missing",
    "iter_csv",
    "iter_jsonl",
]


# A CSV field may hold a long text (the csv module's default limit is 131,072
# characters); the bound stays finite so a runaway quote still fails, at 1 GiB.
CSV_FIELD_LIMIT = min(sys.maxsize, 2**30)


def iter_csv(path: Path) -> tuple[list[str], Generator[tuple[int, dict[str, str]]]]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    f = path.open("r", encoding="utf-8-sig", newline="")
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        f.close()
        raise ReaderError("the file is empty (no header row)", path=path) from None
    header = [h.strip() for h in header]

    def rows() -> Generator[tuple[int, dict[str, str]]]:
        with f:
            try:
                for row in reader:
                    if not row or all(not c.strip() for c in row):
                        continue
                    if len(row) != len(header):
                        raise ReaderError(
                            f"row has {len(row)} fields, the header has {len(header)}",
                            path=path,
                            line=reader.line_num,
                        )
                    yield reader.line_num, dict(zip(header, row, strict=True))
            except csv.Error as exc:
                raise ReaderError(
                    f"malformed CSV: {exc}", path=path, line=reader.line_num
                ) from None

    return header, rows()


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open("r", encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReaderError(f"not valid JSON: {exc.msg}", path=path, line=n) from None
            if not isinstance(obj, dict):
                raise ReaderError("each line must be a JSON object", path=path, line=n)
            yield n, obj


# The spellings pandas reads as a missing value (``pandas.read_csv``'s default
# ``na_values``): a label, gold or group spelt so is missing, never a class.
MISSING_SPELLINGS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip


def is_missing(value: object) -> bool:
    """True for None, a float NaN, or a string pandas reads as missing (``NaN``, ``N/A``...)."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value  # NaN
    return isinstance(value, str) and value.strip() in MISSING_SPELLINGS


def drop_missing_labels(obj: dict) -> dict:
    """Our JSONL with missing labels (``NaN``, ``null``...) dropped and gold/group unset."""
    out = dict(obj)
    for key in ("gold", "group"):
        if key in out and is_missing(out[key]):
            out[key] = None
    anns = out.get("annotations")
    if isinstance(anns, list):
        out["annotations"] = [
            a for a in anns if not (isinstance(a, dict) and "label" in a and is_missing(a["label"]))
        ]
    return out
