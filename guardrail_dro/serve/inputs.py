"""What the guard's checks accept: a str, or a sequence of str for the batch calls.

Shared by the sync and async calls (and so by the rails on them), so that every entry
point refuses the same inputs with the same message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["check_text", "text_list"]


def check_text(text: object) -> None:
    """TypeError unless ``text`` is a str (bytes get a hint to decode them)."""
    if not isinstance(text, str):
        hint = " (decode bytes first)" if isinstance(text, bytes | bytearray) else ""
        raise TypeError(f"guard checks a str, got {type(text).__name__}{hint}")


def text_list(texts: object, call: str) -> list[str]:
    """``texts`` as a list, when it is a sequence (list, tuple...) of str.

    Anything else is a TypeError naming what was wrong: iterating a dict would check
    its keys, a set has no order to match the results to, a single str would be checked
    character by character.
    """
    if isinstance(texts, str | bytes | bytearray):
        raise TypeError(
            f"{call} takes a sequence of str, not a single {type(texts).__name__} "
            "(wrap one text in a list: [text])"
        )
    if isinstance(texts, Mapping):
        raise TypeError(
            f"{call} takes a sequence of str, not a {type(texts).__name__} (iterating it "
            "would check its keys; pass list(d.values()) to check its values)"
        )
    if not isinstance(texts, Sequence):
        raise TypeError(
            f"{call} takes a sequence of str (a list or tuple), not "
            f"{type(texts).__name__} (results come back in order: pass list(...))"
        )
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            hint = " (decode bytes first)" if isinstance(t, bytes | bytearray) else ""
            raise TypeError(f"{call}: texts[{i}] is a {type(t).__name__}, not a str{hint}")
    return out
