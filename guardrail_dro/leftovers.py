"""Temporary build folders that carry their owner, and the sweep that clears dead ones.

Why: a model or guard directory is built in a sibling folder (``.OUT.tmp-*``,
``.OUT.new-*``, ``.OUT.old-*``) that is renamed into place. A killed writer (SIGKILL, an
out-of-memory kill, a lost machine) runs no cleanup, and its folder stayed beside the
output, hundreds of MB of ONNX for an export, unseen (a dot name) and never named by the
next run.

The owner goes into the folder's name, ``.OUT.tmp-HOST-PID-RANDOM``, rather than into a
file inside it: the name exists from the ``mkdir`` on, so no kill can leave an unowned
folder of the new kind (an owner file is written after the ``mkdir``, and would have to
be taken out again before the rename or it ships in the artifact, where the manifests
list every file); ``ls -a`` shows who made it. HOST is the host name with anything but
letters, digits and ``-`` turned into ``_`` (so it has no dot and the name parses from
the right), at most 24 characters (a longer one: its first 15, ``_`` and 8 hex digits
of its sha256).

``sweep_leftovers(out, kinds)`` runs when a writer starts: a folder of this output's
kinds whose owner ran on this host and is no longer running is removed (or, for a save's
``old`` folder holding the only copy of the earlier model, moved back); anything it
cannot attribute (another host, an alive pid, an older name without an owner) is left
alone and named. An alive pid may be an unrelated process that reused the number:
leaving the folder is the safe side of that doubt. Not told apart: two hosts whose names
shorten alike, or containers that share a host name but not a pid namespace; a writer
there looks dead here (its pid is not visible) and would lose its folder. That needs the
same output written at the same time from both, on a shared disk.

A file written whole through ``outputs.replace_file`` goes the same way: its temporary
file beside it, ``.NAME.tmp-HOST-PID-RANDOM``, is removed by the writer on any exception
but not after a SIGKILL; ``sweep_temp_files(path)`` clears a dead owner's when the next
write of that file starts. ``sweep_leftovers`` looks at folders only, so neither sweep
touches what the other one's writers make.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Leftover", "owner_tag", "sweep_leftovers", "sweep_temp_files"]

_log = logging.getLogger(__name__)

#: After the kind's prefix: the owner's host and pid and 8 random hex digits.
_OWNED = re.compile(r"(?P<host>[A-Za-z0-9_-]+)-(?P<pid>[1-9][0-9]{0,9})-[0-9a-f]{8}")
#: Before owners were named: ``new_folder``'s 8 hex digits or ``mkdtemp``'s 8 characters.
_UNOWNED = re.compile(r"[a-z0-9_]{8}")


def _host() -> str:
    full = socket.gethostname()
    name = re.sub(r"[^A-Za-z0-9-]", "_", full) or "_"
    if len(name) > 24:
        name = f"{name[:15]}_{hashlib.sha256(full.encode()).hexdigest()[:8]}"
    return name


def owner_tag() -> str:
    """``HOST-PID`` of this process, as temporary folder names carry it."""
    return f"{_host()}-{os.getpid()}"


@dataclass(frozen=True)
class Leftover:
    """A sibling folder (a temporary file, from ``sweep_temp_files``) of an output that an
    earlier writer of it left."""

    path: Path
    size: int
    """Bytes of the files in it, measured before anything was done to it."""
    action: str
    """``removed``, ``restored`` (the earlier model moved back), ``left alone`` or
    ``not removed`` (the removal failed)."""
    message: str
    """The one line the sweep logged about it."""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process here that may still write (a zombie cannot)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a huge number
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile by its writer
                continue
    return total


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size:,} bytes"


def sweep_leftovers(out: str | Path, kinds: Sequence[str]) -> list[Leftover]:
    """Clear the temporary folders earlier writers of ``out`` left beside it.

    Looks only at siblings named ``.{out.name}.{kind}-`` followed by an owner
    (``HOST-PID-RANDOM``) or by the 8 random characters of the names made before owners
    were recorded; nothing else is touched, whatever its name. Each one found is logged
    as one line (logger ``guardrail_dro.leftovers``, level WARNING: on stderr when
    logging is not configured):

    - owner on this host, no longer running: removed, with its size. A save's ``old``
      folder that holds ``model`` while ``out`` is absent is the earlier model, moved
      aside by a save killed between its two renames: it is moved back to ``out``, as
      the save would have left it.
    - owner running (or a pid reused by an unrelated process: the safe side), another
      host, no owner in the name: left alone, named, with what to do.

    Args:
        out: the output folder (a guard or model directory).
        kinds: the writer's kinds: ``("tmp",)`` for an export, ``("new", "old")`` for
            ``TrainedModel.save``.

    Returns:
        What was found and done, by name.
    """
    out = Path(out)
    if os.name != "posix" or not out.parent.is_dir():  # no pid check there; no siblings
        return []
    found = []
    for path in sorted(out.parent.iterdir()):
        kind = next((k for k in kinds if path.name.startswith(f".{out.name}.{k}-")), None)
        if kind is None or path.is_symlink() or not path.is_dir():
            continue
        rest = path.name[len(f".{out.name}.{kind}-") :]
        owned = _OWNED.fullmatch(rest)
        if owned is None and not _UNOWNED.fullmatch(rest):
            continue
        found.append(_settle(path, out, kind, owned))
    return found


def sweep_temp_files(path: str | Path) -> list[Leftover]:
    """Clear the temporary files a killed ``replace_file`` of ``path`` left beside it.

    Why: such a file is as big as the output (a Triton ``model.onnx`` copy: hundreds of
    MB), hidden by its dot name, and no later run names it. Only siblings named
    ``.{path.name}.tmp-HOST-PID-RANDOM`` are looked at. Owner on this host, no longer
    running: removed, logged as ``sweep_leftovers`` logs a folder. Owner running: left
    alone without a word (another writer of the same file at this moment: two benches
    resumed into one runs folder). Another host: left alone and named.

    Returns:
        What was removed or named.
    """
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    if os.name != "posix" or not path.parent.is_dir():
        return []
    with os.scandir(path.parent) as entries:
        names = sorted(e.name for e in entries if e.name.startswith(prefix))
    found = []
    for name in names:
        tmp, owned = path.parent / name, _OWNED.fullmatch(name[len(prefix) :])
        if owned is None or tmp.is_symlink() or not tmp.is_file():
            continue
        size = _size_of(tmp)
        what = f"{tmp} ({_mb(size)})"
        if owned["host"] != _host():
            why = f"made on host {owned['host']}, whose processes cannot be seen from here"
            msg = f"left alone: {what}: {why}; remove it if nothing there is writing {path}"
            found.append(_note(tmp, size, "left alone", msg))
        elif not _running(int(owned["pid"])):
            gone = f"left by process {owned['pid']} on this host, which is no longer running"
            try:
                tmp.unlink()
            except FileNotFoundError:  # another writer's sweep removed it first
                continue
            except OSError as exc:
                msg = f"could not remove {what}, {gone}: {exc.strerror}; remove it by hand"
                found.append(_note(tmp, size, "not removed", msg))
                continue
            found.append(_note(tmp, size, "removed", f"removed {what}, {gone}"))
    return found


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # renamed into place or removed meanwhile by its writer
        return 0


def _settle(path: Path, out: Path, kind: str, owned: re.Match[str] | None) -> Leftover:
    size = _size(path)
    what = f"{path} ({_mb(size)})"
    if owned is None:
        why = "its name does not say which process made it (an older guardrail-dro)"
    elif owned["host"] != _host():
        why = f"made on host {owned['host']}, whose processes cannot be seen from here"
    elif _running(int(owned["pid"])):
        why = (
            f"process {owned['pid']} on this host is running and may be writing it (or is "
            "an unrelated process that reused the number)"
        )
    else:
        gone = f"left by process {owned['pid']} on this host, which is no longer running"
        return _clear(path, out, kind, f"{what}, {gone}", size)
    why += f"; remove it if no export or train to {out} is running"
    return _note(path, size, "left alone", f"left alone: {what}: {why}")


def _clear(path: Path, out: Path, kind: str, what: str, size: int) -> Leftover:
    action, earlier = "removed", path / "model"
    # A save killed between its two renames: the earlier model is only in there.
    vacant = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    if kind == "old" and earlier.is_dir() and vacant:
        try:
            earlier.rename(out)
        except OSError as exc:
            why = f"it holds the earlier {out.name}, which could not be moved back"
            msg = f"left alone: {what}: {why} ({exc.strerror}); move {earlier} to {out}"
            return _note(path, size, "left alone", msg)
        action, what = "restored", f"{out}, the earlier model moved aside in {what}"
    try:
        shutil.rmtree(path)
    except FileNotFoundError:  # another writer's sweep removed it first
        pass
    except OSError as exc:
        msg = f"could not remove {what}: {exc.strerror}; remove it by hand"
        return _note(path, size, "not removed", msg)
    return _note(path, size, action, f"{action} {what}")


_SAID: set[str] = set()
"""Lines already logged by this process: ``train`` sweeps its output when it starts and
again when it saves, and a folder left alone was named twice."""


def _note(path: Path, size: int, action: str, message: str) -> Leftover:
    if message not in _SAID:
        _SAID.add(message)
        _log.warning(message)
    return Leftover(path, size, action, message)
