"""File digests shared by the trained model directory and the guard artifact.

Both manifests list every file with its sha256 and verify them at load; the digest
lives here, below ``train`` and ``serve``, so neither floor imports the other for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256"]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
