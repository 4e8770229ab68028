"""The bench report's plots: per-group accuracy, learned annotator weights, and the
paired differences of ``ours`` against each rival. Apart from ``bench.py`` so that the
runner and its tables stay one concept; matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from guardrail_dro.train.metrics import WORST_GROUP_ACCURACY

if TYPE_CHECKING:
    from guardrail_dro.train.bench import BenchReport

__all__ = ["FALLBACK_FONTS", "plot_annotator_weights", "plot_group_accuracy", "plot_paired"]

FALLBACK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK KR",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans",
    "Malgun Gothic",
    "Arial Unicode MS",
)
"""Fonts with CJK glyphs the plots fall back on, after matplotlib's default, where
installed. A name (method, annotator, group) with a character none of the fonts has is
drawn with that character escaped (``\\u5f20``): matplotlib drew a box for each, so
``single:label_张三`` and ``single:label_李四`` were two identical rows."""

_F = TypeVar("_F", bound=Callable[..., Any])


def _with_fonts(plot: _F) -> _F:
    """Draw (and save) with matplotlib's default font, then the installed
    ``FALLBACK_FONTS``, for this plot only: the caller's own matplotlib settings stay."""

    @functools.wraps(plot)
    def drawn(*args: Any, **kwargs: Any) -> Any:
        plt = _pyplot()
        with plt.rc_context({"font.family": _fonts()[0]}):
            return plot(*args, **kwargs)

    return drawn  # type: ignore[return-value]


@functools.cache
def _fonts() -> tuple[list[str], frozenset[int]]:
    """The font families the plots draw with (matplotlib's default, then each installed
    one of ``FALLBACK_FONTS``) and the code points they have glyphs for."""
    from matplotlib import font_manager as fm

    families: list[str] = []
    covered: set[int] = set()
    for name in (fm.get_font(fm.findfont(fm.FontProperties())).family_name, *FALLBACK_FONTS):
        try:
            path = fm.findfont(fm.FontProperties(family=name), fallback_to_default=False)
        except ValueError:  # not installed
            continue
        families.append(name)
        covered |= set(fm.get_font(path).get_charmap())
    return families, frozenset(covered)


def _label(name: str) -> str:
    """``name`` as the plot draws it: each character no plot font has escaped
    (``\\u5f20``), so that two names the fonts lack stay two labels, not two rows of
    boxes (with matplotlib's "Glyph missing" warning for each)."""
    covered = _fonts()[1]
    return "".join(
        c if ord(c) in covered else c.encode("ascii", "backslashreplace").decode() for c in name
    )


@_with_fonts
def plot_group_accuracy(report: BenchReport, path: Path) -> Path | None:
    """Heatmap: test accuracy per group (columns) and method (rows), worst group marked."""
    plt = _pyplot()

    res = sorted(report.results.values(), key=lambda r: -(r.mean.get(WORST_GROUP_ACCURACY) or 0.0))
    if not res or not res[0].group_accuracy:
        return None
    groups = list(res[0].group_accuracy)
    mat = np.array([[r.group_accuracy[g] for g in groups] for r in res])
    rows = [f"{_label(r.method)}  (worst {r.mean[WORST_GROUP_ACCURACY]:.3f})" for r in res]
    cols = [_label(g) for g in groups]
    fig, ax = plt.subplots(
        figsize=(
            1.0 + 0.55 * len(groups) + _inches(rows, 10),
            1.2 + 0.4 * len(res) + 0.7 * _inches(cols, 10),
        )
    )
    im = ax.imshow(mat, cmap="RdYlGn", vmin=max(0.0, mat.min() - 0.05), vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(groups)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(res)), rows)
    for i in range(mat.shape[0]):
        j = int(mat[i].argmin())
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
        for jj in range(mat.shape[1]):
            ax.text(jj, i, f"{mat[i, jj]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("group")
    ax.set_title("Test accuracy per group (box = worst group)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _save(fig, path)


@_with_fonts
def plot_annotator_weights(report: BenchReport, path: Path) -> Path | None:
    """Heatmap per learned method: mean annotator weight on the valid items of each group."""
    plt = _pyplot()

    learned = [
        (r.method, r.annotator_weight_by_group)
        for r in report.results.values()
        if r.annotator_weight_by_group
    ]
    if not learned:
        return None
    groups_shown = [_label(g) for _, w in learned for g in w]
    ann_shown = [_label(a) for _, w in learned for a in next(iter(w.values()))]
    fig, axes = plt.subplots(
        1,
        len(learned),
        squeeze=False,
        figsize=(
            (5.5 + _inches(groups_shown, 7)) * len(learned),
            4.5 + 0.7 * _inches(ann_shown, 7),
        ),
    )
    for ax, (method, w) in zip(axes[0], learned, strict=True):
        groups = list(w)
        ann = list(w[groups[0]])
        mat = np.array([[w[g][a] for a in ann] for g in groups])
        im = ax.imshow(mat, cmap="viridis", aspect="auto")
        ax.set_xticks(
            range(len(ann)), [_label(a) for a in ann], rotation=45, ha="right", fontsize=7
        )
        ax.set_yticks(range(len(groups)), [_label(g) for g in groups], fontsize=7)
        ax.set_title(f"{_label(method)}: learned annotator weight by group")
        fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(fig, path)


@_with_fonts
def plot_paired(report: BenchReport, path: Path) -> Path | None:
    """The paired intervals as a forest plot: worst-group and accuracy differences,
    reference minus rival, one row per rival, the zero line drawn."""
    plt = _pyplot()

    rows = sorted(report.paired.values(), key=lambda c: c.worst_group_accuracy.diff)
    if not rows:
        return None
    names = [_label(c.rival) for c in rows]
    fig, axes = plt.subplots(
        1, 2, sharey=True, figsize=(9.0 + _inches(names, 8), 1.2 + 0.35 * len(rows))
    )
    y = np.arange(len(rows))
    for ax, key, title in (
        (axes[0], "worst_group_accuracy", "worst-group accuracy"),
        (axes[1], "accuracy", "accuracy"),
    ):
        ivs = [getattr(c, key) for c in rows]
        # The interval as a line and the point apart: a worst-group point may sit outside
        # its percentile interval (the minimum's resampling bias), which error bars hide.
        ax.hlines(y, [i.low for i in ivs], [i.high for i in ivs], color="tab:blue", lw=2)
        ax.plot([i.diff for i in ivs], y, "o", color="tab:blue")
        ax.axvline(0.0, color="black", lw=1)
        ax.set_title(f"{title}: {_label(rows[0].reference)} − rival")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"Test differences with {rows[0].level:.0%} paired bootstrap intervals "
        f"({rows[0].draws:,} group-stratified resamples)",
        fontsize=10,
    )
    return _save(fig, path)


def _inches(labels: list[str], fontsize: float) -> float:
    """About the width of the longest of ``labels`` at ``fontsize`` points: what a figure
    adds for its tick labels, so that a long method, annotator or group name takes room
    of its own instead of squeezing the plot (an 80-character name left the heatmap's
    15 groups about 0.1 inch each, and the forest plot's two titles ran into each other)."""
    return 0.6 * fontsize / 72 * max((len(x) for x in labels), default=0)


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
