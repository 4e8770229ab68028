"""Is an output path writable? Asked before the work whose result it will hold.

Why: every command that computes for seconds to hours and writes at the end (``train``,
``bench``, ``export``, ``distill``, ``escalation``, ``agreement``) failed on an output it
could not write only at the end, with an ``OSError`` traceback and the work lost (``train
--out /proc/x/model``: a minute of training, then ``FileNotFoundError``). A permission
check (``os.access``) is not enough: as root it says yes to ``/proc``. So the probe makes
(and removes) a file where the output will go. Nothing is left behind.

And is it written whole? ``replace_file`` / ``replace_text`` write a final output through
a temporary file renamed over it, so no reader ever sees half of one.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from guardrail_dro.errors import ConfigError
from guardrail_dro.leftovers import owner_tag, sweep_temp_files

__all__ = ["as_path", "check_writable", "replace_file", "replace_text"]


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


def replace_file(path: str | Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` whole or not at all: ``write(tmp)`` fills a new temporary file
    beside it, which is then renamed over it (``os.replace``, atomic).

    Why: a file written in place and cut off (a crash, Ctrl-C, a full disk) is a half
    file the next reader may take for a whole one: a JSONL with fewer rows, a stored run
    a resumed bench reuses, a ``model.onnx`` a polling Triton loads. Five writers had
    their own copy of this; three used a fixed temporary name (two benches resumed into
    one runs folder wrote the same one) and left it behind when the write failed.

    - The temporary file is ``.NAME.tmp-HOST-PID-RANDOM`` in ``path``'s folder (a rename
      is atomic only within one file system), new for every call. It is removed on any
      exception, KeyboardInterrupt and the CLI's SIGTERM (SystemExit) included; after a
      SIGKILL the next ``replace_file`` of ``path`` removes it
      (``leftovers.sweep_temp_files``).
    - Its mode is what ``open(path, "w")`` would give: an existing file's is kept (a
      read-only one is still replaced, as a rename always did), a new one gets 0666 less
      the umask (``tempfile.mkstemp``'s 0600 would make an output unreadable to every
      other user, a serving account included).
    - It is fsynced before the rename: otherwise a power loss can keep the rename but not
      the data (ext4, XFS), an empty file under the final name. The folder is not
      fsynced: a rename lost that way leaves the earlier file, whole.
    - Missing parent folders are made.

    Args:
        path: the file to write.
        write: writes the whole content to the path it is given (not to ``path``); what
            it returns is ignored.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(path)
    try:
        keep: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        keep = None  # a new file: _new_temp's is 0666 less the umask already
    tmp = _new_temp(path, 0o666 if keep is None else 0o600)
    try:
        if keep is not None:  # writable by us even where the output is read-only
            os.chmod(tmp, keep | stat.S_IWUSR)
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep is not None and not keep & stat.S_IWUSR:
            os.chmod(tmp, keep)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (``replace_file``)."""
    replace_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _new_temp(path: Path, mode: int) -> Path:
    """A new empty file ``.NAME.tmp-HOST-PID-RANDOM`` beside ``path``, made exclusively
    (no other call or process can have it) with ``mode`` less the umask. 0600 where an
    existing file's mode is put on it next: no one it would deny opens it meanwhile."""
    while True:
        tmp = path.with_name(f".{path.name}.tmp-{owner_tag()}-{secrets.token_hex(4)}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        except FileExistsError:
            continue
        except BaseException as exc:
            # A signal raised as os.open returns (KeyboardInterrupt, the CLI's SystemExit)
            # comes after the file was made but before the caller can remove it.
            if not isinstance(exc, OSError):
                tmp.unlink(missing_ok=True)
            raise
        return tmp
