"""Rows of a data file.

``iter_csv`` / ``iter_jsonl`` yield (line number, row) pairs and raise ``ReaderError``
naming file and line. They read xz- or gzip-compressed files (``train.csv.xz``) as plain
ones; ``data_suffix`` names the layout by the suffix before the compression one.
``guardrail_dro.data.cells`` says what a cell reads as; ``guardrail_dro.data.layouts``
builds items from these rows.
"""

from __future__ import annotations

import csv
import gzip
import json
import lzma
import sys
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import IO

from guardrail_dro.errors import ReaderError

__all__ = [
    "COMPRESSED_SUFFIXES",
    "CSV_FIELD_LIMIT",
    "DuplicateKeyError",
    "csv_header",
    "data_suffix",
    "header_again",
    "is_jsonl",
    "iter_csv",
    "iter_jsonl",
    "json_object_pairs",
    "not_utf8_encoding",
    "open_text",
    "read_raw",
    "shown_columns",
    "wide_json_rows",
]


# A CSV field may hold a long text (the csv module's default limit is 131,072
# characters); the bound stays finite, at 1 GiB. A runaway quote fails at the end of
# the file whatever its size: ``iter_csv`` reads strictly.
CSV_FIELD_LIMIT = min(sys.maxsize, 2**30)


COMPRESSED_SUFFIXES = (".xz", ".gz")
"""Compressions read transparently (both in the standard library: lzma, gzip)."""


def data_suffix(path: Path) -> str:
    """The lower-cased suffix that names the layout, less a compression suffix
    (``train.csv.xz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def read_raw(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in .xz or .gz."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".xz":
            return lzma.decompress(path.read_bytes())
        if suffix == ".gz":
            return gzip.decompress(path.read_bytes())
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise ReaderError(f"cannot decompress: {exc}", path=path) from None
    return path.read_bytes()


def not_utf8_encoding(raw: bytes) -> str | None:
    """Name the encoding of bytes that are UTF-16 or UTF-32 text, else None.

    Why: such a file (Excel's "Unicode Text", PowerShell's default redirect) either failed
    as "not UTF-8 (byte 0xff)" or, without a byte-order mark, decoded as UTF-8 with a NUL
    after every character, so the header's names were unrecognisable ("no text column").
    """
    for bom, name in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if raw.startswith(bom):
            return f"{name} text (it begins with a {name} byte-order mark)"
    sample = raw[:4096]
    # ASCII in UTF-16 is every other byte NUL; UTF-8 text never has a NUL in a quarter
    # of its bytes (a stray NUL in a text is left to the reader, as data).
    if len(sample) >= 4 and sample.count(0) * 4 >= len(sample):
        return "UTF-16 or UTF-32 text (NUL bytes between its characters, no byte-order mark)"
    return None


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice; ``key`` is the name."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def json_object_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``json.loads``' ``object_pairs_hook`` that refuses a key given twice.

    Why: JSON keeps the last of two equal keys without a word, so a line with
    ``"gold": "a", ..., "gold": "b"`` (a hand edit, a careless join) read as gold ``b``.
    """
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise DuplicateKeyError(k)
            seen.add(k)
    return out


def header_again(row: dict[str, str], path: Path, line: int) -> ReaderError | None:
    """The bad row a CSV row is when it is the header once more, its names in any order:
    what concatenating exports (``cat a.csv b.csv``) leaves mid-file; else None.

    Why: such a row read as an item whose labels were the column names (``label_1``...),
    which an inferred schema then took as classes, silently. Unnamed (index) columns are
    not compared; a file of one named column is not judged (its one cell is a text, and
    "text" may be one).
    """
    first = next((k for k in row if k and not k.startswith("Unnamed:")), None)
    if first is None or str(row[first]).strip() not in row:
        return None  # the usual row, told in one look (a wide file has hundreds of columns)
    named = [k for k in row if k and not k.startswith("Unnamed:")]
    if len(named) < 2 or sorted(str(row[k]).strip() for k in named) != sorted(named):
        return None
    return ReaderError(
        "the header row again, mid-file (files joined with their headers?)", path=path, line=line
    )


def open_text(path: Path, *, newline: str | None = None) -> IO[str]:
    """Open as UTF-8 text (a byte-order mark skipped), decompressing .xz and .gz."""
    suffix = path.suffix.lower()
    if suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8-sig", newline=newline)
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
    return path.open("r", encoding="utf-8-sig", newline=newline)


def shown_columns(header: Iterable[str], most: int = 80) -> list[str]:
    """A header's named columns for a message, each cut to ``most`` characters.

    Why: a CSV without a header row has its first row's cells as column names, and a
    message listing "the columns" printed that row's texts whole (megabytes for a long
    document).
    """
    return [h if len(h) <= most else h[: most - 3] + "..." for h in header if h]


def _check_header(header: list[str], path: Path) -> None:
    """Refuse a header a row cannot be mapped by: a file split on another separator, or
    a column name twice (a row would silently keep only the last one's cell)."""
    if header[0].startswith("sep=") and len(header) <= 2 and not any(header[1:]):
        raise ReaderError(
            f"the first line {','.join(header)!r} is a spreadsheet's separator hint, not "
            "a header: delete that line so the header comes first",
            path=path,
            line=1,
        )
    if len(header) == 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab")):
            if sep in header[0]:
                raise ReaderError(
                    f"the file looks {name}-separated (its header {header[0][:80]!r} is one "
                    "column): save it as comma-separated CSV",
                    path=path,
                    line=1,
                )
    # Unnamed index columns (empty, pandas' ``Unnamed: 0``) are never read by name.
    counts = Counter(h for h in header if h and not h.startswith("Unnamed:"))
    dup = [h for h, n in counts.items() if n > 1]
    if dup:
        raise ReaderError(
            f"the header names column(s) {dup} more than once; rename them so each "
            f"column has its own name (columns are {shown_columns(header)})",
            path=path,
            line=1,
            column=dup[0],
        )


def _csv_error(exc: csv.Error, path: Path, start: int, line: int) -> ReaderError:
    """A ``csv.Error`` of the strict reader as one line naming where to look: a quote
    never closed names the line its field began on (the reader only stops at the end of
    the file, which says nothing about where to look)."""
    if "unexpected end of data" in str(exc):
        return ReaderError(
            "a quoted field that begins on this line is never closed, so the rest of the "
            "file would read as one cell: close the quote (a quote inside a quoted field "
            'is written "")',
            path=path,
            line=start,
        )
    return ReaderError(f"malformed CSV: {exc}", path=path, line=line)


def is_jsonl(path: Path) -> bool:
    """A JSON-lines file by its name (compression suffixes aside)."""
    return data_suffix(path) in (".jsonl", ".json", ".ndjson")


def csv_header(path: Path) -> list[str]:
    """The header row of a CSV file as ``iter_csv`` reads it (names stripped); empty for
    an empty file. For messages that list a file's columns."""
    with open_text(path, newline="") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def iter_csv(path: Path) -> tuple[list[str], Generator[tuple[int, dict[str, str]]]]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    f = open_text(path, newline="")
    # strict: a quote opened and never closed is an error; the lenient reader took the
    # rest of the file as one cell, silently (or failed past the field size limit).
    reader = csv.reader(f, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        f.close()
        raise ReaderError("the file is empty (no header row)", path=path) from None
    except csv.Error as exc:
        f.close()
        raise _csv_error(exc, path, 1, reader.line_num) from None
    header = [h.strip() for h in header]
    try:
        _check_header(header, path)
    except ReaderError:
        f.close()
        raise

    def rows() -> Generator[tuple[int, dict[str, str]]]:
        with f:
            start = reader.line_num + 1  # the line the next row begins on
            try:
                for row in reader:
                    start = reader.line_num + 1  # where the row after this begins
                    if row and row[0].startswith("\ufeff"):
                        # A byte-order mark mid-file: files concatenated (``cat``), the
                        # later one's mark kept; it made its first cell another label.
                        row[0] = row[0][1:]
                    # A blank line (or one of spaces in a file of several columns) is no
                    # row; a whitespace-only cell of a one-column file is an empty text,
                    # which the layout reports (it was skipped here, silently).
                    blank_line = len(header) > 1 and len(row) == 1 and not row[0].strip()
                    if not row or all(c == "" for c in row) or blank_line:
                        continue
                    if len(row) != len(header):
                        raise ReaderError(
                            f"row has {len(row)} fields, the header has {len(header)}",
                            path=path,
                            line=reader.line_num,
                        )
                    yield reader.line_num, dict(zip(header, row, strict=True))
            except csv.Error as exc:
                raise _csv_error(exc, path, start, reader.line_num) from None

    return header, rows()


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line; a line that is not a JSON object,
    or whose object names a key twice, raises ``ReaderError`` naming it."""
    with open_text(path) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            # A byte-order mark mid-file: files concatenated, the later one's mark kept.
            line = line.removeprefix("\ufeff")
            try:
                obj = json.loads(line, object_pairs_hook=json_object_pairs)
            except json.JSONDecodeError as exc:
                raise ReaderError(f"not valid JSON: {exc.msg}", path=path, line=n) from None
            except DuplicateKeyError as exc:
                raise ReaderError(
                    f"the key {exc.key!r} appears twice in one object (JSON would keep the "
                    "last silently): keep one",
                    path=path,
                    line=n,
                    column=exc.key,
                ) from None
            if not isinstance(obj, dict):
                raise ReaderError("each line must be a JSON object", path=path, line=n)
            yield n, obj


def _json_cell(value: object, path: Path, line: int, column: str) -> str:
    """A flat JSON value as the CSV cell it stands for (null: a blank cell)."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise ReaderError("a nested JSON value where a cell was expected", path=path,
                          line=line, column=column)  # fmt: skip
    return str(value).lower() if isinstance(value, bool) else str(value)


def wide_json_rows(path: Path) -> tuple[list[str], Iterable[tuple[int, dict[str, str]]]]:
    """A JSONL of flat rows (``{"text": ...}``, with label_* / gold / group keys or
    none) read as the wide layout reads a CSV: the header is every key, in order."""
    objs = list(iter_jsonl(path))
    header = list(dict.fromkeys(k for _, obj in objs for k in obj))
    rows = (
        (line, {k: _json_cell(obj.get(k), path, line, k) for k in header}) for line, obj in objs
    )
    return header, rows
