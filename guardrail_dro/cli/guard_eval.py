"""``guardrail-dro evaluate --guard``: an exported guard's decisions on a labelled split,
as binary metrics at its operating point (``guardrail_dro.serve.evaluate``), in a table
beside the validation point ``guard.json`` recorded. What a split cannot measure (recall
without toxic texts, FPR without safe ones, precision with nothing blocked) reads n/a. A
guard whose decision is close to constant on it gets the warning ``evaluate --model``
gives (``train/collapse.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.serve.evaluate import GuardEvaluation

__all__ = ["evaluate_guard_dir"]

err = Console(stderr=True, emoji=False)  # ":smile:" in a path or label is text


def evaluate_guard_dir(
    guard_dir: Path,
    test: Path,
    reader: Any,
    precision: str = "auto",
    target_recall: float | None = None,
    target_fpr: float | None = None,
):
    """Load the guard (CPU), read ``test`` with its label schema, evaluate, print.

    Returns:
        The ``GuardEvaluation``.
    """
    from rich.table import Table

    from guardrail_dro.data.readers import read_splits
    from guardrail_dro.serve.artifact import load_artifact
    from guardrail_dro.serve.evaluate import evaluate_guard
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.policy import Policy

    schema = load_artifact(guard_dir, verify=False).schema
    data = read_splits({"test": test}, reader, schema=schema)[0]["test"]
    for n in data.notes:  # a path or a label of "[v2]" is text, not markup
        err.print(f"note: {n}", highlight=False, markup=False)
    policy = Policy(target_recall=target_recall, target_fpr=target_fpr)
    g = Guard.load(guard_dir, provider="cpu", precision=precision, policy=policy)
    cal = g.artifact.manifest.calibration if g.artifact is not None else None
    if cal is not None and cal.split_hash is not None and cal.split_hash == data.content_hash():
        err.print(
            f"note: {test} is the split this guard's operating point was chosen on "
            f"({cal.split}): these numbers are a validation score, not a test",
            highlight=False,
            markup=False,
        )
        data.name = "valid"  # the title and the row said "test" all the same
    with err.status(f"checking {len(data)} texts with the {g.precision} guard"):
        result = evaluate_guard(g, data)
    if result.roc_auc is None:  # one kind of text: say why the table has gaps
        kind, measured, missing, other = "safe", "FPR", "recall", "toxic"
        if result.point.fpr is None:
            kind, measured, missing, other = "toxic", "recall", "FPR", "safe"
        err.print(
            f"note: {test} has {kind} texts only: {measured} is the share of them blocked; "
            f"{missing} and ROC AUC need {other} texts too (n/a)",
            highlight=False,
            markup=False,
        )
    how = str(result.objective) if result.calibrated else "uncalibrated"
    how += f" {result.target:g}" if result.target is not None else ""
    console = Console(emoji=False)
    # The title on its own line: a long guard path must not squeeze the table.
    console.print(
        f"[bold]{escape(str(guard_dir))}[/] ({result.precision_variant}, {how}): toxic ROC AUC "
        f"{_num(result.roc_auc)} on {result.split}",
        soft_wrap=True,
        highlight=False,
    )
    t = Table(header_style="bold")
    cols = (
        "split", "threshold", "precision", "recall", "FPR", "binary acc", "worst group",
        "worst-group balanced",
    )  # fmt: skip
    for col in cols:
        t.add_column(col, justify="left" if col == "split" else "right")
    for name, p in result.rows():
        worst = "-" if p.worst_group_accuracy is None else f"{p.worst_group_accuracy:.3f}"
        worst += f" ({p.worst_group})" if p.worst_group is not None else ""
        bal = p.worst_group_balanced_accuracy
        nums = (p.threshold, p.precision, p.recall, p.fpr, p.accuracy)
        t.add_row(name, *(_num(v) for v in nums), worst, "-" if bal is None else f"{bal:.3f}")
    console.print(t, markup=False)  # the worst group is a name from the data: "[people]"
    _warn_collapse(str(guard_dir), data, result)
    return result


def _warn_collapse(who: str, data: AnnotatedDataset, result: GuardEvaluation) -> None:
    """The warning ``evaluate --model``, ``train`` and ``bench`` give (``collapse.py``),
    on the guard's own decisions: binary accuracy on a skewed split reads well even when
    the guard allows (or blocks) every text."""
    from guardrail_dro.train.collapse import decision_warning

    line = decision_warning(who, result.split, data, result.point, valid=result.valid_point)
    if line is not None:
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


def _num(value: float | None) -> str:
    """A metric to three places, or n/a where the split has nothing to count."""
    return "n/a" if value is None else f"{value:.3f}"
