"""Where an export may write its guard folder (``check_out``), apart from ``export.onnx``
so that the CLI checks it before any slow step without loading the exporter."""

from __future__ import annotations

from pathlib import Path

from guardrail_dro.errors import ConfigError

__all__ = ["check_out"]


def check_out(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out_dir`` unless ``overwrite``: checked first, and by the CLI
    before a long step (``export --distill``) that would be wasted on a refusal.

    ``overwrite`` replaces an earlier guard folder (one with ``guard.json``) whole and
    nothing else: it deleted whatever was there (``--out . --overwrite``: the working
    directory's files; a file typed for a folder), as ``TrainedModel.save`` never does.
    """
    from guardrail_dro.serve.artifact import GUARD_MANIFEST

    out_dir = Path(out_dir)
    here = Path.cwd().resolve()
    if out_dir.resolve() in (here, *here.parents):
        raise ConfigError(
            f"{out_dir} is the working directory or a folder above it: the guard goes to a "
            "folder of its own, replaced whole by an export: name a new folder"
        )
    nonempty = out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    if nonempty and not overwrite:
        raise ConfigError(
            f"{out_dir} exists and is not empty: pass overwrite=True (--overwrite) to replace it"
        )
    if nonempty and not (out_dir / GUARD_MANIFEST).is_file():
        what = "a file" if not out_dir.is_dir() else f"a folder without {GUARD_MANIFEST}"
        raise ConfigError(
            f"{out_dir} is {what}, not an earlier guard: overwrite replaces only a guard "
            "folder; name a new or empty folder"
        )
