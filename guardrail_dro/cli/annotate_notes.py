"""What ``guardrail-dro annotate`` says besides its summary: the options a path does not
read, and the line a stopped run ends with (which signal, what is kept, what to run).

Kept apart from ``cli/annotate.py`` so that the command module stays the option list and
the one call; this imports only typer and the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import typer

__all__ = ["note_ignored", "say_stopped"]


def note_ignored(batch: bool, run: Mapping[str, object], **given: float | None) -> None:
    """A note for each option the chosen path does not read: the live limits under
    ``--batch`` (the provider schedules a batch job), given on the command line or in
    the labeling config's ``[run]`` (``run``), and the batch waits without it. They were
    ignored in silence, so ``--batch --rpm 60`` read as a limit that was none."""
    unused = ("concurrency", "rpm", "tpm") if batch else ("poll_interval", "max_wait")
    for name in unused:
        if given[name] is None and run.get(name) is not None:
            typer.echo(f"note: [run] {name} in the labeling config has no effect with "
                       "--batch: the provider schedules a --batch job's requests", err=True)
        if given[name] is not None:
            flag = "--" + name.replace("_", "-")
            why = (
                "the provider schedules a --batch job's requests"
                if batch
                else "it is for --batch runs only"
            )
            typer.echo(f"note: {flag} has no effect here: {why}", err=True)


def say_stopped(exc: KeyboardInterrupt, *, batch: bool, cache: Path) -> int:
    """Print the line a run stopped by Ctrl-C or SIGTERM ends with; return its exit code
    (130, or 143 for SIGTERM). A ``--batch`` run's jobs keep running at the provider, so
    its line says so: it exited silently on SIGTERM before, leaving the user to guess."""
    from annotators.interrupt import Terminated

    term = isinstance(exc, Terminated)
    said = "SIGTERM" if term else "Ctrl-C"
    if batch:
        typer.echo(
            f"stopped ({said}): the submitted batch job(s) keep running at the "
            f"provider and every result collected is in {cache}; the same command "
            "collects them (nothing is submitted twice)",
            err=True,
        )
    else:
        typer.echo(
            f"stopped ({said}): every answer received is in {cache}; the same "
            "command resumes, asking only what is missing",
            err=True,
        )
    return 143 if term else 130
