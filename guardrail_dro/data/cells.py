"""What one cell of a data file reads as: a label, a gold label, a group, or missing.

Files written by pandas spell a missing value in many ways (``NaN``, ``None``, ``NA``...)
and write a column of integers with a blank cell as floats (``1.0``). Read blindly, the
first hides a class spelt like a missing value (``None`` as "no toxicity") and the second
makes ``1`` and ``1.0`` two classes. So a label or gold cell is read knowing the label
schema's classes where they are known before reading: a declared class is always that
label, and only then are missing spellings and integral floats interpreted. A group cell
has a narrower rule (``NA`` is North America, see ``GROUP_MISSING_SPELLINGS``).
``guardrail_dro.data.layouts`` reads rows through these.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from guardrail_dro.errors import ReaderError

__all__ = [
    "GROUP_MISSING_SPELLINGS",
    "MISSING_SPELLINGS",
    "cell",
    "clean_our_item",
    "confidence_cell",
    "group_cell",
    "label_cell",
    "missing_spellings_note",
]

# The spellings pandas reads as a missing value (``pandas.read_csv``'s default
# ``na_values``): a label or gold cell spelt so is missing, unless it names a declared class.
MISSING_SPELLINGS = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip

# A group cell is missing only when empty or spelt as programs write a missing float or
# null (pandas, numpy, Python, SQL, spreadsheets). ``NA``, ``N/A`` and ``n/a`` stay group
# names (``NA`` is North America): a spurious group costs little, it shows in the per-group
# table, while a dropped one takes its items out of the worst-group objective unseen.
GROUP_MISSING_SPELLINGS = frozenset(
    {
        "", "nan", "NaN", "-nan", "-NaN", "None", "null", "NULL", "<NA>", "#N/A", "#N/A N/A",
        "#NA",
    }
)  # fmt: skip

# How pandas writes an integer of a column that also has a blank cell: ``1.0``.
_INTEGRAL_FLOAT = re.compile(r"[+-]?\d+\.0+")


def cell(value: object) -> str | None:
    """The cell's text, stripped; None when absent or blank."""
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def label_cell(
    value: object, classes: Collection[str] | None = None, dropped: Counter[str] | None = None
) -> str | None:
    """A label or gold cell: its label, or None when missing.

    A cell naming one of ``classes`` (the schema known before reading) is that label as
    spelt. Otherwise a missing spelling (``MISSING_SPELLINGS``) is missing, and counted in
    ``dropped`` when not blank, so the user can learn a class was lost to its spelling; and
    an integral float (``1.0``, pandas' int with a blank cell) is its integer (``1``).
    """
    if isinstance(value, float) and value != value:
        return None
    if classes is not None and isinstance(value, str) and value in classes:
        return value  # spelt exactly as declared, surrounding spaces and all
    s = cell(value)
    if s is None:
        return None
    if classes is not None and s in classes:
        return s
    if s in MISSING_SPELLINGS:
        if dropped is not None:
            dropped[s] += 1
        return None
    if _INTEGRAL_FLOAT.fullmatch(s):
        return str(int(s.split(".")[0]))
    return s


def confidence_cell(raw: object, path: Path, line: int) -> float | None:
    """A confidence cell: a number in [0, 1], or None when blank; anything else (``nan``,
    ``high``, a percentage) is refused with its value and the range, naming ``path`` and
    ``line``."""
    text = cell(raw)
    if text is None:
        return None
    try:
        conf = float(text)
    except ValueError:
        conf = float("nan")
    if not 0.0 <= conf <= 1.0:  # NaN fails too
        raise ReaderError(
            f"confidence {text!r} is not a number in [0, 1]",
            path=path,
            line=line,
            column="confidence",
        )
    return conf


def group_cell(value: object) -> str | None:
    """A group cell: its group name, or None when missing (see ``GROUP_MISSING_SPELLINGS``)."""
    if isinstance(value, float) and value != value:
        return None
    s = cell(value)
    return None if s is None or s in GROUP_MISSING_SPELLINGS else s


def clean_our_item(
    obj: dict, classes: Collection[str] | None = None, dropped: Counter[str] | None = None
) -> dict:
    """A line of our JSONL with labels, gold and group read as cells are: missing labels
    dropped, missing gold/group unset, integral float labels made integers."""
    out = dict(obj)
    if _scalar(out.get("gold")):
        out["gold"] = label_cell(out["gold"], classes, dropped)
    if _scalar(out.get("group")):
        out["group"] = group_cell(out["group"])
    anns = out.get("annotations")
    if isinstance(anns, list):
        kept = []
        for a in anns:
            if isinstance(a, dict) and "label" in a and a["label"] is None:
                continue  # "label": null, a missing label
            if isinstance(a, dict) and _scalar(a.get("label")):
                label = label_cell(a["label"], classes, dropped)
                if label is None:
                    continue
                a = {**a, "label": label}
            kept.append(a)
        out["annotations"] = kept
    return out


def _scalar(value: object) -> bool:
    # What ``clean_our_item`` reads as a cell; anything else (a bool, a list) is left to
    # the item's validation, which names it.
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def missing_spellings_note(path: object, dropped: Counter[str]) -> str | None:
    """The note for label/gold cells read as missing because of their spelling, if any."""
    if not dropped:
        return None
    spelt = ", ".join(f"{s!r} x {n}" for s, n in dropped.most_common())
    return (
        f"{path}: {dropped.total()} label/gold cell(s) read as missing for their spelling "
        f"({spelt}); if that is a class name, declare it (--labels or --schema) to keep them"
    )
