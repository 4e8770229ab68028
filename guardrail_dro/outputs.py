"""Is an output path writable? Asked before the work whose result it will hold.

Why: every command that computes for seconds to hours and writes at the end (``train``,
``bench``, ``export``, ``distill``, ``escalation``, ``agreement``) failed on an output it
could not write only at the end, with an ``OSError`` traceback and the work lost (``train
--out /proc/x/model``: a minute of training, then ``FileNotFoundError``). A permission
check (``os.access``) is not enough: as root it says yes to ``/proc``. So the probe makes
(and removes) a file where the output will go. Nothing is left behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from guardrail_dro.errors import ConfigError

__all__ = ["as_path", "check_writable"]


def as_path(value: object, name: str, what: str = "a path (str or os.PathLike)") -> Path:
    """``value`` as a ``Path``, or a ``TypeError`` naming the argument ``name`` and
    ``what`` it must be.

    Why: ``Path(None)`` fails deep inside an entry point (``TrainedModel.load(None)``:
    "expected str, bytes or os.PathLike object, not NoneType" from pathlib), naming
    neither the argument nor the call; a ``None`` from an unset option or a missing
    dict key is the usual cause. ``""`` is refused too: ``Path("")`` is the working
    directory (``Guard.load("")`` loaded it and said it was no guard).
    """
    if isinstance(value, str | os.PathLike) and value != "":
        return Path(value)
    got = "an empty string" if value == "" else type(value).__name__
    raise TypeError(f"{name} must be {what}, not {got}")


def check_writable(path: str | Path, option: str, *, beside: bool = False) -> None:
    """Raise ``ConfigError`` naming ``option`` when ``path`` cannot be written: a parent
    that is a file, a folder no file can be made in, an existing file that cannot be
    opened for writing. An existing folder at ``path`` (an output folder) is probed
    inside, or with ``beside`` in its parent (a model or guard directory is built in a
    sibling folder and renamed into place); missing folders are not made (the writer
    makes them), their nearest existing ancestor is probed instead.
    """
    path = Path(path)
    if beside and path.is_dir():
        path = path.absolute().parent
    if path.is_file():
        try:
            with path.open("ab"):  # not truncated: the writer replaces it when done
                return
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot write it ({exc.strerror})") from None
    folder = next(p for p in (path, *path.absolute().parents) if p.exists() or p == p.parent)
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".guardrail-dro-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: cannot write a file in {folder} ({exc.strerror})"
        ) from None
