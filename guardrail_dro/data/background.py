"""Background-safe text: ordinary text that is safe by construction, no labels needed.

toxic-questions' safe class is made of borderline red-team questions, so a guard
trained on it alone has never seen ordinary chat and blocks "How do I bake bread?".
Background text fills that gap: every text is taken as the schema's safe class with a
hard target and no annotators (``train.background``). It is read from

- a bundled set, by name: ``convabuse-background`` (the non-abusive user turns of
  ConvAbuse, CC BY 4.0), ``everyday-requests`` (ordinary requests to an assistant
  written for this project), ``assistant-replies``, and the harmful-by-construction
  ``harmful-requests`` and ``harmful-replies`` (read with ``harmful=True``: they train
  as 'not safe');
  ``NAME:train`` / ``NAME:heldout`` for one part;
- a file: ``.txt`` (one text per line), ``.csv`` (a ``text`` column, or the only
  column), ``.jsonl`` (objects with ``text``, or JSON strings), optionally ``.xz`` /
  ``.gz`` compressed.

Every source comes as a train part and a held-out part: the bundled sets are shipped
split; a user's file is split here by a hash of each normalised text (1 in 5 held out,
the rule the bundled sets were built with), so the split is deterministic and no text
is on both sides. The held-out part never trains: it chooses the background's weight
and amount and measures the guard's block rate on ordinary text.

Example:
    >>> bg = load_background(["convabuse-background", "everyday-requests"])
    >>> len(bg.train), len(bg.heldout)
    (2038, 513)
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from guardrail_dro.data.items import AnnotatedDataset, Item, normalise_text
from guardrail_dro.data.rows import data_suffix, open_text
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError

__all__ = [
    "BACKGROUND",
    "BackgroundSet",
    "BackgroundText",
    "background_dataset",
    "load_background",
    "read_background_file",
    "split_by_hash",
]

_HERE = Path(__file__).resolve().parent / "bundled"
PARTS = ("train", "heldout")
HELDOUT_EVERY = 5
"""1 text in ``HELDOUT_EVERY`` (by hash) is held out."""


@dataclass(frozen=True)
class BackgroundSet:
    """A bundled background set: ``train.csv.xz`` and ``heldout.csv.xz`` (column ``text``)."""

    name: str
    license: str
    source: str
    harmful: bool = False
    """Harmful by construction (trains as 'not safe': ``--background-harmful``)."""

    @property
    def folder(self) -> Path:
        return _HERE / self.name

    def path(self, part: str) -> Path:
        if part not in PARTS:
            raise DataError(
                f"bundled background {self.name!r} has no part {part!r}; "
                f"its parts are {', '.join(PARTS)}"
            )
        return self.folder / f"{part}.csv.xz"


BACKGROUND: dict[str, BackgroundSet] = {
    s.name: s
    for s in (
        BackgroundSet(
            "convabuse-background",
            license="CC BY 4.0, Cercas Curry, Abercrombie and Rieser (EMNLP 2021)",
            source="github.com/amandacurry/convabuse 2_splits @ "
            "c0a9469f48956e868276c605d499010ea3c7c0d0",
        ),
        BackgroundSet(
            "everyday-requests",
            license="Apache-2.0 (this project)",
            source="written for guardrail-dro (scripts/data/everyday_requests.txt)",
        ),
        BackgroundSet(
            "assistant-replies",
            license="Apache-2.0 (this project)",
            source="written for guardrail-dro (scripts/data/assistant_replies.txt)",
        ),
        BackgroundSet(
            "harmful-requests",
            license="Apache-2.0 (this project)",
            source="written for guardrail-dro (scripts/data/harmful_requests.txt)",
            harmful=True,
        ),
        BackgroundSet(
            "harmful-replies",
            license="Apache-2.0 (this project)",
            source="written for guardrail-dro (scripts/data/harmful_replies.txt)",
            harmful=True,
        ),
    )
}
"""Every bundled background set by name."""


@dataclass(frozen=True)
class BackgroundText:
    """Background texts from one or more sources, split into train and held-out parts."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    sources: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.train)


def split_by_hash(texts: Iterable[str]) -> tuple[list[str], list[str]]:
    """(train, held-out): de-duplicated by normalised text, 1 in 5 held out by its hash."""
    seen: dict[str, str] = {}
    for t in texts:
        key = normalise_text(t)
        if key:
            seen.setdefault(key, t)
    train: list[str] = []
    heldout: list[str] = []
    for key, t in seen.items():
        h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
        (heldout if h % HELDOUT_EVERY == 0 else train).append(t)
    if not heldout and len(train) > 1:  # a short file: still one text to measure on
        heldout.append(train.pop())
    return train, heldout


LABEL_KEYS = ("label", "gold", "labels", "annotations")
"""Columns / keys of labelled data: a background file whose rows carry more than one
label value is refused (``_check_unlabelled``)."""


def _check_unlabelled(path: Path, labels: set[str]) -> None:
    """Background text trains as one kind (safe, or harmful) whatever its rows say: a
    file whose labels differ (an annotated split, toxic rows among them) is refused."""
    if len(labels) > 1:
        shown = ", ".join(repr(v) for v in sorted(labels)[:5])
        raise DataError(
            f"{path}: its rows carry different labels ({shown}); every background text "
            "trains as one kind (--background-safe as safe, --background-harmful as "
            "harmful) whatever its label says: pass a file of that kind's texts only "
            f"(no {'/'.join(LABEL_KEYS)} column), or train on labelled data with --train"
        )


def _csv_texts(path: Path, one_kind: bool = True) -> list[str]:
    with open_text(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "text" in header:
            col = "text"
        elif len(header) == 1:
            col = header[0]
        else:
            raise DataError(
                f"{path}: a background CSV needs a 'text' column (or a single column); "
                f"its columns are {header}"
            )
        rows = list(reader)
    keys = [k for k in header if k.strip().lower() in LABEL_KEYS]
    if one_kind:
        _check_unlabelled(path, {(r[k] or "").strip() for r in rows for k in keys} - {""})
    return [row[col] or "" for row in rows]


def _row_labels(obj: dict) -> set[str]:
    """The label values a JSONL object carries (its own, its annotations')."""
    out = {str(obj[k]) for k in ("label", "gold") if obj.get(k) not in (None, "")}
    listed = obj.get("annotations") or obj.get("labels")
    for a in listed if isinstance(listed, list) else []:
        if isinstance(a, dict) and a.get("label") not in (None, ""):
            out.add(str(a["label"]))
        elif isinstance(a, str):
            out.add(a)
    return out


def _jsonl_texts(path: Path, one_kind: bool = True) -> list[str]:
    out = []
    labels: set[str] = set()
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                out.append(obj["text"])
                labels |= _row_labels(obj)
            elif isinstance(obj, str):
                out.append(obj)
            else:
                raise DataError(
                    f"{path}:{n}: a background JSONL line must be a string or an object "
                    "with a 'text' string"
                )
    if one_kind:
        _check_unlabelled(path, labels)
    return out


def read_background_file(path: str | Path, *, one_kind: bool = True) -> list[str]:
    """The texts of a background file (.txt, .csv, .jsonl; optionally .xz / .gz).

    Args:
        one_kind: the texts train as one kind (safe or harmful): rows whose labels
            differ are refused (``_check_unlabelled``); False reads them all.

    Raises:
        DataError: a missing file, an unknown suffix, no text column, a bad line,
            rows of different labels (``one_kind``), or no text at all; the message
            names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(
            f"background text {str(path)!r}: no such file, and not a bundled background "
            f"set ({', '.join(sorted(BACKGROUND))})"
        )
    suffix = data_suffix(p)
    try:
        if suffix == ".txt":
            with open_text(p) as f:
                texts = f.read().splitlines()
        elif suffix == ".csv":
            texts = _csv_texts(p, one_kind)
        elif suffix == ".jsonl":
            texts = _jsonl_texts(p, one_kind)
        else:
            raise DataError(
                f"{p}: background text must be .txt (one per line), .csv (a 'text' column) "
                f"or .jsonl, optionally .xz / .gz; got {suffix or 'no suffix'!r}"
            )
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise DataError(f"{p}: no background text in it")
    return texts


def _one(spec: str | Path, harmful: bool | None) -> tuple[list[str], list[str]]:
    text = str(spec)
    name, colon, part = text.partition(":")
    if not Path(text).exists() and name in BACKGROUND:
        bundled = BACKGROUND[name]
        if harmful is not None and bundled.harmful != harmful:
            raise DataError(
                f"{name} is harmful text: pass it with --background-harmful "
                "(background_harmful), never as background-safe text"
                if bundled.harmful
                else f"{name} is safe text: pass it with --background-safe "
                "(background_safe), never as harmful text"
            )
        parts = [part] if colon else list(PARTS)
        got = {p: _csv_texts(bundled.path(p)) for p in parts}
        return got.get("train", []), got.get("heldout", [])
    # read as either kind (distill's extra texts, which its teacher labels): labels may differ
    return split_by_hash(read_background_file(spec, one_kind=harmful is not None))


def load_background(
    specs: Sequence[str | Path], *, require_both: bool = True, harmful: bool | None = False
) -> BackgroundText:
    """Read and split every source (bundled name or file); texts in several sources once.

    Args:
        require_both: fail unless there is text to train on and text held out (what
            training needs); False to read one part alone (``NAME:heldout``).
        harmful: what the sources are read as: safe text (False), harmful text (True),
            or either (None); a bundled set of the other kind is refused (harmful text
            trained as safe would teach the guard to let it through).

    Raises:
        DataError: a source that is neither a bundled set nor a readable file, or a
            bundled set of the other kind.
    """
    train: dict[str, str] = {}
    heldout: dict[str, str] = {}
    for spec in specs:
        tr, ho = _one(spec, harmful)
        for t in ho:
            heldout.setdefault(normalise_text(t), t)
        for t in tr:
            train.setdefault(normalise_text(t), t)
    for key in heldout:  # a held-out text trains nowhere
        train.pop(key, None)
    if require_both and (not train or not heldout):
        raise DataError(
            f"background text {', '.join(map(str, specs))}: needs at least 2 distinct texts "
            f"(one to train, one held out); got {len(train)} + {len(heldout)}"
        )
    return BackgroundText(tuple(train.values()), tuple(heldout.values()), tuple(map(str, specs)))


def background_dataset(
    texts: Sequence[str], schema: LabelSchema, name: str = "background", *, harmful: bool = False
) -> AnnotatedDataset:
    """Items with gold = the schema's first safe class and no annotations; with
    ``harmful``, items with no gold (harmful text's class is unknown: it trains as 'not
    safe', ``train.background``).

    Raises:
        DataError: the schema names no safe class (background text needs one).
    """
    if not schema.safe:
        raise DataError(
            "background text needs a schema with a safe class ('safe' in the schema "
            "file, or --safe)"
        )
    gold = None if harmful else schema.safe[0]
    items = [Item(item_id=f"{name}-{i}", text=t, gold=gold) for i, t in enumerate(texts)]
    return AnnotatedDataset(items, schema, name=name)
