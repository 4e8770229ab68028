"""The bench report's plots: per-group accuracy, learned annotator weights, and the
paired differences of ``ours`` against each rival. Apart from ``bench.py`` so that the
runner and its tables stay one concept; matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from guardrail_dro.train.metrics import WORST_GROUP_ACCURACY

if TYPE_CHECKING:
    from guardrail_dro.train.bench import BenchReport

__all__ = ["plot_annotator_weights", "plot_group_accuracy", "plot_paired"]


def plot_group_accuracy(report: BenchReport, path: Path) -> Path | None:
    """Heatmap: test accuracy per group (columns) and method (rows), worst group marked."""
    plt = _pyplot()

    res = sorted(report.results.values(), key=lambda r: -(r.mean.get(WORST_GROUP_ACCURACY) or 0.0))
    if not res or not res[0].group_accuracy:
        return None
    groups = list(res[0].group_accuracy)
    mat = np.array([[r.group_accuracy[g] for g in groups] for r in res])
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(groups), 1.2 + 0.4 * len(res)))
    im = ax.imshow(mat, cmap="RdYlGn", vmin=max(0.0, mat.min() - 0.05), vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
    ax.set_yticks(
        range(len(res)), [f"{r.method}  (worst {r.mean[WORST_GROUP_ACCURACY]:.3f})" for r in res]
    )
    for i in range(mat.shape[0]):
        j = int(mat[i].argmin())
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
        for jj in range(mat.shape[1]):
            ax.text(jj, i, f"{mat[i, jj]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("group")
    ax.set_title("Test accuracy per group (box = worst group)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _save(fig, path)


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
    fig, axes = plt.subplots(1, len(learned), squeeze=False, figsize=(5.5 * len(learned), 4.5))
    for ax, (method, w) in zip(axes[0], learned, strict=True):
        groups = list(w)
        ann = list(w[groups[0]])
        mat = np.array([[w[g][a] for a in ann] for g in groups])
        im = ax.imshow(mat, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(ann)), ann, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(groups)), groups, fontsize=7)
        ax.set_title(f"{method}: learned annotator weight by group")
        fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(fig, path)


def plot_paired(report: BenchReport, path: Path) -> Path | None:
    """The paired intervals as a forest plot: worst-group and accuracy differences,
    reference minus rival, one row per rival, the zero line drawn."""
    plt = _pyplot()

    rows = sorted(report.paired.values(), key=lambda c: c.worst_group_accuracy.diff)
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(10, 1.2 + 0.35 * len(rows)))
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
        ax.set_title(f"{title}: {rows[0].reference} − rival")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [c.rival for c in rows], fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"Test differences with {rows[0].level:.0%} paired bootstrap intervals "
        f"({rows[0].draws:,} group-stratified resamples)",
        fontsize=10,
    )
    return _save(fig, path)


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
