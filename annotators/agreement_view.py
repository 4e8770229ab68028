"""The agreement report as people read it: rich tables and a heatmap PNG.

Kept apart from ``annotators.agreement`` (the numbers) so that computing a report needs
neither rich's console nor matplotlib; the heatmap imports matplotlib (Agg backend, no
display) only when it is drawn.

Names from the data (annotator ids, display names, classes) go into the tables as
``Text``, not as strings: a string cell is read as rich markup (and emoji codes, on a
console that reads them), so an annotator ``[team-a]`` printed as an empty cell.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from annotators.agreement import GOLD, AgreementReport
from guardrail_dro.errors import ConfigError, require

__all__ = ["MATRIX_MAX", "TICKS_MAX", "check_heatmap_path", "pairwise_table", "quality_table",
           "recall_table", "save_heatmap"]


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "not known" if x is None else f"{100 * x:.1f}%"


def quality_table(report: AgreementReport) -> Table:
    """One row per annotator: vs gold, rates, confidence of right / wrong labels."""
    t = Table(title=f"Annotators ({report.items} items)")
    for col in ("annotator", "kind", "labelled", "kappa vs gold", "acc vs gold",
                "refused", "invalid", "conf. right", "conf. wrong"):
        t.add_column(col, justify="left" if col in ("annotator", "kind") else "right",
                     overflow="fold" if col == "annotator" else "ellipsis")
    for q in report.annotators:
        t.add_row(Text(q.name), q.kind, str(q.labelled), _f(q.kappa_gold), _f(q.accuracy_gold),
                  _pct(q.refusal_rate), _pct(q.invalid_rate), _f(q.confidence_right),
                  _f(q.confidence_wrong))
    return t


#: More annotators than this (a crowd) and a matrix no longer fits a terminal: the
#: pairwise table becomes one row per annotator, the recall table keeps this many.
MATRIX_MAX = 12


def _crowd_table(report: AgreementReport) -> Table:
    """Per annotator of a crowd: with how many others it shares items, and its kappa
    with them (their mean, weighted by the items shared)."""
    others = [n for n in report.names if n != GOLD]
    t = Table(
        title=f"Cohen's kappa, {len(others)} annotators: one row each, not a matrix "
        "(every pair in --json; --heatmap draws the matrix)"
    )
    for col in ("annotator", "partners", "shared items", "mean kappa with partners"):
        t.add_column(col, justify="left" if col == "annotator" else "right",
                     no_wrap=col == "annotator")
    for a in others:
        partners = [b for b in others if b != a and report.overlap[a][b]]
        # kappa is undefined (None) for a pair whose labels never vary: no weight there.
        pairs = [
            (report.overlap[a][b], k) for b in partners if (k := report.kappa[a][b]) is not None
        ]
        weight = sum(n for n, _ in pairs)
        mean = sum(n * k for n, k in pairs) / weight if weight else None
        shared = sum(report.overlap[a][b] for b in partners)
        t.add_row(Text(a), str(len(partners)), str(shared), _f(mean))
    return t


def pairwise_table(report: AgreementReport) -> Table:
    """Cohen's kappa between every two annotators (and gold), on the items both labelled;
    for a crowd of more than ``MATRIX_MAX``, a row per annotator instead."""
    if len([n for n in report.names if n != GOLD]) > MATRIX_MAX:
        return _crowd_table(report)
    t = Table(title="Cohen's kappa (row vs column; raw agreement in the JSON)")
    t.add_column("", no_wrap=True)
    for n in report.names:
        t.add_column(Text(n), justify="right", overflow="fold")
    for a in report.names:
        t.add_row(Text(a), *(_f(report.kappa[a][b], 2) for b in report.names))
    return t


def recall_table(report: AgreementReport) -> Table | None:
    """Per class: each annotator's recall against gold (None without gold)."""
    rows = [q for q in report.annotators if q.recall_per_class]
    if not rows:
        return None
    title = "Per-class recall vs gold (confusion matrices in the JSON)"
    if len(rows) > MATRIX_MAX:
        title += f"; the {MATRIX_MAX} annotators of {len(rows)} with the most gold items"
        rows = sorted(rows, key=lambda q: -q.n_gold)[:MATRIX_MAX]
    t = Table(title=title)
    t.add_column("class", no_wrap=True)
    for q in rows:
        t.add_column(Text(q.name), justify="right", overflow="fold")
    for c in report.classes:
        t.add_row(Text(c), *(_f(q.recall_per_class.get(c), 2) for q in rows))
    return t


#: More names than this in the kappa matrix: no tick labels (a crowd's hundreds of names
#: overprinted each other); the per-cell numbers go beyond MATRIX_MAX + gold already.
TICKS_MAX = 60


def check_heatmap_path(path: str | Path) -> None:
    """Refuse, before any work, a --heatmap whose extension matplotlib cannot write."""
    require("matplotlib", "annotate")
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix.lstrip(".").lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if fmt and fmt not in known:
        raise ConfigError(f"--heatmap {path}: matplotlib cannot write {fmt!r} images; "
                          f"use .png (or one of {', '.join(sorted(known))})")


def save_heatmap(report: AgreementReport, path: str | Path, *,
                 class_names: dict[str, str] | None = None) -> Path:
    """Draw the kappa matrix (and per-class recall vs gold, when there is gold) to PNG.

    A crowd's matrix is drawn without its numbers (beyond ``MATRIX_MAX`` annotators) and
    names (beyond ``TICKS_MAX``); its recall panel keeps the ``MATRIX_MAX`` annotators
    with the most gold items, as the recall table does: the figure stays readable, and
    its cost bounded (300 workers' 90,000 cell labels took 23 s)."""
    matplotlib = require("matplotlib", "annotate")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = report.names
    kappa = np.array([[np.nan if report.kappa[a][b] is None else report.kappa[a][b]
                       for b in names] for a in names], dtype=float)
    rows = [q for q in report.annotators if q.recall_per_class]
    crowd = len(rows) > MATRIX_MAX
    if crowd:
        rows = sorted(rows, key=lambda q: -q.n_gold)[:MATRIX_MAX]
    ncols = 2 if rows else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols + 1, 5.5), squeeze=False)
    ax = axes[0][0]
    # -1..1, white at chance (0): a pair that disagrees more than chance is red, not drawn
    # as chance; grey: no kappa (no shared items, or undefined)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.75")
    im = ax.imshow(kappa, vmin=-1, vmax=1, cmap=cmap, interpolation="nearest")
    if len(names) <= TICKS_MAX:
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right",
                      fontsize=None if len(names) <= MATRIX_MAX + 1 else 5)
        ax.set_yticks(range(len(names)), names,
                      fontsize=None if len(names) <= MATRIX_MAX + 1 else 5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"{len(names)} names, in the order of --json's \"names\"")
    if len(names) <= MATRIX_MAX + 1:
        for i in range(len(names)):
            for j in range(len(names)):
                if not np.isnan(kappa[i, j]):
                    ax.text(j, i, f"{kappa[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if abs(kappa[i, j]) >= 0.6 else "black")
    ax.set_title("Cohen's kappa" + (f" (incl. {GOLD})" if GOLD in names else "")
                 + ("\ngrey: none (no shared items, or labels that never vary)"
                    if np.isnan(kappa).any() else ""))
    fig.colorbar(im, ax=ax, fraction=0.046)
    if rows:
        ax = axes[0][1]
        rec = np.array([[np.nan if q.recall_per_class.get(c) is None
                         else q.recall_per_class[c] for q in rows] for c in report.classes],
                       dtype=float)
        im = ax.imshow(rec, vmin=0, vmax=1, cmap="magma", aspect="auto",
                       interpolation="nearest")
        ax.set_xticks(range(len(rows)), [q.name for q in rows], rotation=45, ha="right")
        # a class's description is a sentence: cut, it left no room for the kappa panel
        labels = [_cut(f"{c} {class_names[c]}") if class_names and class_names.get(c) else c
                  for c in report.classes]
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title("Recall vs gold, per class"
                     + (f" ({MATRIX_MAX} with the most gold items)" if crowd else ""))
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cut(text: str, n: int = 32) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
