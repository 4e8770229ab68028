"""How names (classes, groups, annotators) are ordered and quoted in messages.

Why a module of its own: the data layer (schema, items, split) and the trainer's notes
both sort labels the way a person counts and quote a long list of names as one line;
the trainer may import the data layer, never the reverse, so the shared helpers live
here, below both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["natural_key", "quoted_names"]


def natural_key(label: str) -> tuple[str | int, ...]:
    """Sort key under which "2" comes before "10"; mixed names sort by their text.

    Example:
        >>> sorted(["group10", "group2", "b", "a"], key=natural_key)
        ['a', 'b', 'group2', 'group10']
    """
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", label))


def quoted_names(values: Iterable[str], most: int = 5) -> str:
    """Quoted, comma-separated, the first ``most`` then how many more: a note stays one
    readable line even for a crowd of hundreds.

    Example:
        >>> quoted_names(["a", "b", "c", "d"], most=2)
        "'a', 'b' and 2 more"
    """
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")
