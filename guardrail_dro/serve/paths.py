"""Paths of a guard artifact that must not be trusted: what ``load_artifact`` refuses.

Two checks, kept apart from the manifest model so each reads on its own: a path in
``guard.json`` that is absolute or climbs out (``unsafe_path``), and a file or folder in
the directory, present or listed, that resolves outside it through a symlink
(``escaping_links``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

__all__ = ["escaping_links", "unsafe_path"]


def unsafe_path(rel: str) -> bool:
    """A path that is absolute, has a drive, or climbs out with ``..``."""
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    return (
        not rel
        or posix.is_absolute()
        or win.is_absolute()
        or bool(win.drive)
        or ".." in posix.parts
        or ".." in win.parts
    )


def escaping_links(d: Path, listed: Iterable[str]) -> list[str]:
    """Paths in ``d`` (present, or listed in the manifest) that resolve outside it: a
    symlinked model would load bytes from elsewhere, and ``rglob`` never enters a
    symlinked folder, hiding its files from the unlisted-file check. The walk does not
    follow links, so nothing outside is ever read."""
    root = d.resolve()
    present = [Path(p) / n for p, ds, fs in os.walk(d) for n in (*ds, *fs)]
    bad = set()
    for p in (*present, *(d / rel for rel in listed)):
        target = p.resolve()
        if (p.is_symlink() or p.exists()) and target != root and root not in target.parents:
            bad.add(f"{p.relative_to(d).as_posix()} -> {target}")
    return sorted(bad)
