"""How a data file is read (``ReaderOptions``) and what reading it noticed (``ReadLog``).

Why a module of its own: every layout of ``guardrail_dro.data.layouts`` takes the one and
fills the other, and the command line maps its options onto the first; kept apart, the
layouts module stays about the layouts. Both are re-exported by
``guardrail_dro.data.layouts`` and ``guardrail_dro.data.readers``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from guardrail_dro.data.cells import missing_spellings_note
from guardrail_dro.errors import ReaderError

__all__ = ["Format", "OnBadRows", "ReadLog", "ReaderOptions"]

#: what a raised bad row's error adds: the way on, where the place alone gave none
BAD_ROW_HINT = "fix or delete that row, or pass --on-bad-rows skip to skip such rows and count them"

Format = Literal["auto", "wide", "long", "jsonl"]
OnBadRows = Literal["error", "skip"]


class ReaderOptions(BaseModel):
    """How to map a file's columns; every command that reads data takes these.

    Unset fields are guessed from the columns (see ``guardrail_dro.data.layouts``).
    """

    model_config = ConfigDict(extra="forbid")

    format: Format = "auto"
    text_col: str | None = Field(None, description="Text column (wide).")
    id_col: str | None = Field(None, description="Item id column (wide); default: index/row.")
    annotator_cols: tuple[str, ...] | None = Field(None, description="Annotator columns (wide).")
    gold_col: str | None = Field(
        None, description="Gold label column; a file without it has no gold (noted)."
    )
    group_col: str | None = Field(
        None, description="Group column; a file without it has no groups (noted)."
    )
    llm_annotators: tuple[str, ...] = Field(
        (), description="Annotator ids whose kind is 'llm' (wide and long without a kind column)."
    )
    on_bad_rows: OnBadRows = Field(
        "error",
        description="error: stop at a bad row (an empty text, a blank id, the header row "
        "again mid-file, an annotator giving one item two different labels, an item id "
        "twice); skip: drop it and report how many were skipped and on which lines.",
    )
    classes: tuple[str, ...] | None = Field(
        None,
        description="The label schema's classes when known before reading: a label or gold "
        "cell naming one is that label, even when spelt like a missing value ('None', 'NA') "
        "or an integral float ('1.0').",
    )


@dataclass
class ReadLog:
    """What reading one file noticed: notes for the user, skipped rows, each item's line.

    Attributes:
        notes: one line per thing worth telling (merged duplicates, skipped rows).
        lines: each item id's first line in the file (errors found later name it).
        skipped: (line, reason) of every row skipped under ``on_bad_rows="skip"``.
        merged: how many identical duplicate annotations were merged into one.
        dropped: non-blank label/gold cells read as missing, by spelling (``'None'``...).
    """

    notes: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    merged: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def bad_row(self, opts: ReaderOptions, error: ReaderError) -> None:
        """Raise ``error``, or record its row as skipped under ``on_bad_rows="skip"``.

        Raised, a row's error also says what to do: the file, line and column alone left
        the user to find ``--on-bad-rows`` in the help. ``reason`` stays as it was (a
        skipped row's note reads it)."""
        if error.line is None:
            raise error
        if opts.on_bad_rows != "skip":
            hinted = ReaderError(
                f"{error.reason}: {BAD_ROW_HINT}",
                path=error.path,
                line=error.line,
                column=error.column,
            )
            hinted.reason = error.reason
            raise hinted
        self.skipped.append((error.line, error.reason))

    def finish(self, path: Path) -> None:
        """Turn the counts into notes."""
        if self.merged:
            self.notes.append(
                f"{path}: merged {self.merged} identical duplicate annotation(s) "
                "(an annotator giving an item the same label twice)"
            )
        if self.skipped:
            reasons = Counter(r for _, r in self.skipped)
            lines = [n for n, _ in self.skipped]
            shown = ", ".join(map(str, lines[:20])) + (", ..." if len(lines) > 20 else "")
            why = "; ".join(f"{n} x {r}" for r, n in reasons.most_common())
            self.notes.append(f"{path}: skipped {len(lines)} bad row(s) on lines {shown} ({why})")
        if (note := missing_spellings_note(path, self.dropped)) is not None:
            self.notes.append(note)

    def empty_columns(self, columns: list[str], path: Path) -> None:
        """Note annotator columns that gave no label in any row: an annotator named
        (``--annotator-cols``) or found by name whose column is blank in this file was
        left out without a word (a column shifted in an export, a wrong name)."""
        if columns:
            self.notes.append(
                f"{path}: annotator column(s) {columns} have no label in any row, so "
                "those annotators are not in this file"
            )

    def no_column(self, what: str, name: str, path: Path) -> None:
        """Note that a gold or group column named explicitly is not in ``path``: a train
        split has neither, so its absence means none, not an error."""
        self.notes.append(
            f"no {what} column {name!r} (--{what}-col) in {path}: its items carry no {what}"
        )
