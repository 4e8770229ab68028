"""What a bench will run and where, checked before its first run trains: a mistake
found after minutes of training (an unknown method, an annotator train lacks, ``dro-mv``
without groups, an output path that is a file) cost those minutes and left no report."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.names import quoted_names
from guardrail_dro.errors import ConfigError
from guardrail_dro.train.baselines import SINGLE_CANDIDATES, one_label_annotators
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.data_checks import MIN_GROUP_ITEMS
from guardrail_dro.train.methods import METHODS, lookup

__all__ = [
    "GROUP_METHOD",
    "bench_methods",
    "check_arguments",
    "check_out_dir",
    "default_methods",
    "method_note_lines",
    "one_label_names",
]


#: The method that cannot run without groups on valid (GroupDRO over them).
GROUP_METHOD = "dro-mv"


def check_arguments(
    splits: Mapping[str, object], config: object, methods: object, out_dir: object
) -> None:
    """``run_bench``'s arguments, checked at the entry by name: a split of None failed
    with an AttributeError from inside, ``methods="ours"`` asked for methods 'o', 'u', 'r'
    and 's', and ``out_dir=None`` is the one thing None means there (no files written).

    Raises:
        TypeError: naming the argument and the type it got.
    """
    for name, ds in splits.items():
        if not isinstance(ds, AnnotatedDataset):
            raise TypeError(f"{name} must be an AnnotatedDataset, not {type(ds).__name__}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig or None, not {type(config).__name__}")
    if isinstance(methods, str):
        raise TypeError(f"methods must be a list of method names, not a str: [{methods!r}]")
    if out_dir is not None and not isinstance(out_dir, str | os.PathLike):
        raise TypeError(
            f"out_dir must be a folder path (str or Path) or None, not {type(out_dir).__name__}"
        )


def default_methods(train: AnnotatedDataset, *, singles: bool = True) -> list[str]:
    """Every built-in method, plus one single-annotator run per annotator when few; not
    for an annotator that gave one label only (``one_label_annotators``)."""
    out = list(METHODS)
    if singles and len(train.annotators) <= SINGLE_CANDIDATES:
        skip = one_label_names(train)
        out += [f"single:{a}" for a in train.annotators if a not in skip]
    return out


def one_label_names(train: AnnotatedDataset) -> list[str]:
    """The annotators of ``train`` that gave every item they labelled the same class,
    when some other did not (``best-single`` then skips them: ``single_candidates``)."""
    one = one_label_annotators(train.label_matrix())
    return [train.annotators[a] for a in one] if len(one) < len(train.annotators) else []


def _one_label_note(
    methods: Sequence[str] | None, out: list[str], train: AnnotatedDataset
) -> list[str]:
    """The bench's note naming the annotators left out for giving one label only. A few
    are named, the rest counted (``quoted_names``): on a sparse crowd every annotator of
    one item is one of them, and 300 names made a line of kilobytes."""
    skip = one_label_names(train)
    left_out = methods is None and len(train.annotators) <= SINGLE_CANDIDATES
    consider = "best-single" in out
    if not skip or not (left_out or consider):
        return []
    what = [
        *(["their single:<a> runs are left out of the default methods"] if left_out else []),
        *(["best-single does not consider them"] if consider else []),
    ]
    return [
        f"annotator(s) {quoted_names(skip)} gave every training item they labelled "
        f"the same class: a classifier taught one class can only predict it, so "
        f"{' and '.join(what)} (name single:<a> in --methods to train one anyway)"
    ]


def bench_methods(
    methods: Sequence[str] | None,
    train: AnnotatedDataset,
    valid: AnnotatedDataset,
    test: AnnotatedDataset | None = None,
) -> tuple[list[str], list[str]]:
    """The methods a bench runs (``methods``, or ``default_methods``) and its notes.

    ``test`` is noted too when it has no groups or tiny ones (``_test_notes``).

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
    notes = [*([] if test is None else _test_notes(test)), *_one_label_note(methods, out, train)]
    if valid.groups or GROUP_METHOD not in out:
        return out, notes
    if methods:
        raise ConfigError(
            f"{GROUP_METHOD} needs groups on the validation split (--group-col): give valid "
            f"a group column or leave {GROUP_METHOD} out of --methods"
        )
    out.remove(GROUP_METHOD)
    return out, [f"{GROUP_METHOD} left out: the validation split has no groups", *notes]


def _test_notes(test: AnnotatedDataset) -> list[str]:
    """What the report's worst-group numbers cannot say about ``test``: without groups
    its worst-group column reads n/a and the paired comparison (resampled within test
    groups) is left out, which the report did not say (``evaluate`` does); a group of
    a few items moves in steps of 1/n, so one item can decide the worst group."""
    if not test.groups:
        return [
            "the test split has no groups (--group-col): no group or worst-group accuracy, "
            "and no paired comparison of the methods (it resamples test within groups)"
        ]
    sizes = Counter(it.group for it in test if it.group is not None)
    small = sorted((n, g) for g, n in sizes.items() if n < MIN_GROUP_ITEMS)
    if not small:
        return []
    shown = ", ".join(f"{g!r} ({n})" for n, g in small[:5])
    more = f" and {len(small) - 5} more" if len(small) > 5 else ""
    return [
        f"test group(s) with fewer than {MIN_GROUP_ITEMS} items: {shown}{more}: a group's "
        f"accuracy moves in steps of 1/n there, so one item can decide the worst-group "
        "accuracy; merge small groups or add test items to them"
    ]


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


class _Noted(Protocol):
    method: str
    notes: list[str]


def method_note_lines(results: Iterable[_Noted]) -> list[str]:
    """Each method's notes on its runs, one ``method: note`` line each; a note that names
    its method already (the trainer's "ours: 3 of 300 train items ...") is not prefixed
    twice (it read "ours: ours: ...")."""
    return [
        n if n.startswith(f"{r.method}: ") else f"{r.method}: {n}" for r in results for n in r.notes
    ]
