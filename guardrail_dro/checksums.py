"""File digests and fresh folders shared by the trained model directory and the guard
artifact.

Both manifests list every file with its sha256 and verify them at load, and both are
built in a new sibling folder that is renamed into place; these live here, below
``train`` and ``serve``, so neither floor imports the other for them. The folder's name
says which process made it (``leftovers``), so what a killed writer left can be cleared.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from guardrail_dro.leftovers import owner_tag

__all__ = ["file_sha256", "new_folder"]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder ``parent / (prefix + HOST-PID-random)``, with the mode any
    ``mkdir`` gives (0777 less the umask). ``tempfile.mkdtemp`` makes it 0700, and the
    model or guard directory renamed from it stayed so: unreadable to every other user,
    the service account serving the guard included, although its files were 0644.

    HOST-PID names this process, so that ``leftovers.sweep_leftovers`` can tell a
    killed writer's folder from a running one's."""
    while True:
        path = Path(parent) / f"{prefix}{owner_tag()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except BaseException as exc:
            # A signal that arrives during the mkdir is raised (SystemExit from the CLI's
            # SIGTERM handler, KeyboardInterrupt) as the call returns, the folder made
            # but not yet the caller's to clean up: the export SIGTERM left it so.
            if not isinstance(exc, OSError) and path.is_dir():
                path.rmdir()
            raise
        return path
