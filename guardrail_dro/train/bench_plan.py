"""What a bench will run and where, checked before its first run trains: a mistake
found after minutes of training (an unknown method, an annotator train lacks, ``dro-mv``
without groups, an output path that is a file) cost those minutes and left no report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError
from guardrail_dro.train.methods import METHODS, lookup

__all__ = ["GROUP_METHOD", "bench_methods", "check_out_dir", "default_methods"]


#: The method that cannot run without groups on valid (GroupDRO over them).
GROUP_METHOD = "dro-mv"


def default_methods(train: AnnotatedDataset, *, singles: bool = True) -> list[str]:
    """Every built-in method, plus one single-annotator run per annotator when few."""
    out = list(METHODS)
    if singles and len(train.annotators) <= 12:
        out += [f"single:{a}" for a in train.annotators]
    return out


def bench_methods(
    methods: Sequence[str] | None, train: AnnotatedDataset, valid: AnnotatedDataset
) -> tuple[list[str], list[str]]:
    """The methods a bench runs (``methods``, or ``default_methods``) and its notes.

    Checked before any training: an unknown method, a ``single:<a>`` whose annotator
    train lacks, or ``dro-mv`` without groups on valid used to fail after the methods
    before it had trained, and the bench wrote no report. ``dro-mv`` asked for by name
    is refused; among the defaults, left out with a note.

    Raises:
        ConfigError: an unknown method, one that cannot work on ``train``
            (``TargetSource.check_data``), or ``dro-mv`` named in ``methods`` and valid
            has no groups.
    """
    out = list(methods or default_methods(train))
    for method in out:
        row, argument = lookup(method)
        if row.argument:
            row.targets.from_argument(argument).check_data(train)
    if valid.groups or GROUP_METHOD not in out:
        return out, []
    if methods:
        raise ConfigError(
            f"{GROUP_METHOD} needs groups on the validation split (--group-col): give valid "
            f"a group column or leave {GROUP_METHOD} out of --methods"
        )
    out.remove(GROUP_METHOD)
    return out, [f"{GROUP_METHOD} left out: the validation split has no groups"]


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` when the bench can write its folder there (it may exist: a bench
    resumes from its ``runs/``), checked before any training: an existing file there
    failed only once the first run had trained and was being saved.

    Raises:
        ConfigError: ``out_dir``, or the nearest of its parents that exists, is a file.
    """
    out = Path(out_dir)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == out else f" (its parent {p} is a file)"
                raise ConfigError(
                    f"{out}: the bench's output must be a folder (results, plots and runs/ "
                    f"go there), not a file{where}; pass a new or existing folder"
                )
            break
    return out
