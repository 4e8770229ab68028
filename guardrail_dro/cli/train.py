"""``guardrail-dro train``, ``evaluate`` and ``bench``: shells over ``BiLevelTrainer.fit``,
``TrainedModel`` + ``score_split`` and ``run_bench``.

torch loads inside the commands (through ``guardrail_dro.train``), never at import.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from guardrail_dro.cli.options import ColumnOptions, SchemaOptions, takes_option_groups
from guardrail_dro.cli.training_options import TRAINING_PANEL as _T
from guardrail_dro.cli.training_options import TrainingOptions

if TYPE_CHECKING:
    import numpy as np

    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.train.metrics import Metrics

__all__ = ["TrainingOptions", "bench", "evaluate", "register", "train"]

# No emoji codes: a path, group or annotator name with ":smile:" in it is text.
err = Console(stderr=True, emoji=False)


def _stdout() -> Console:
    """A console on stdout, made at each print as before (the width of the moment), with
    no emoji codes either."""
    return Console(emoji=False)


_SPLIT = (
    "A file (CSV / JSONL, optionally .xz / .gz) or a split shipped with the package: "
    "toxic-questions:train, :valid, :test (its label schema comes with it)."
)


def _read_splits(
    paths: dict[str, str | Path | None], columns: ColumnOptions, schema: SchemaOptions
) -> dict[str, AnnotatedDataset]:
    """``read_splits`` with the command's options; warns about texts shared by splits."""
    from guardrail_dro.data.items import find_leakage
    from guardrail_dro.data.readers import read_splits

    splits, _ = read_splits(paths, columns.reader_options(), schema=schema.label_schema())
    print_read_notes(splits.values())
    for line in find_leakage(splits).lines() if len(splits) > 1 else []:
        err.print(f"[yellow]warning: leakage:[/] {escape(line)}", highlight=False)
    return splits


def print_read_notes(datasets: Iterable[AnnotatedDataset]) -> None:
    """Print what reading the data noticed (merged duplicates, skipped bad rows)."""
    for ds in datasets:
        for n in ds.notes:  # a path or a label of "[v2]" is text, not markup
            err.print(f"note: {n}", highlight=False, markup=False)


def _metrics_table(split: str, metrics: Metrics) -> None:
    from rich.table import Table

    headline = metrics.headline()
    t = Table(show_header=True, header_style="bold")
    t.add_column("split")
    for k in headline:
        t.add_column(k.replace("_", " "), justify="right")
    t.add_row(split, *("-" if v is None else f"{v:.3f}" for v in headline.values()))
    _stdout().print(t)


def _warn_collapse(
    who: str, split: str, data: AnnotatedDataset, metrics: Metrics, pred: np.ndarray | None = None
) -> None:
    """The bench's warning (``collapse.py``) for one model: accuracy on a skewed split
    reads well even when the model answers one class to everything."""
    from guardrail_dro.train.collapse import collapse_warning

    line = collapse_warning(who, split, data, metrics.headline(), pred)
    if line is not None:
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


AverageSeeds = Annotated[
    int,
    typer.Option(
        "--average-seeds",
        min=1,
        max=32,
        help="Frozen mode: train k seeds (k x --seed to k x --seed + k - 1; in bench, "
        "k x s to k x s + k - 1 for each of its seeds s) and keep one "
        "head, their average (the mean of their logits). Costs k trainings and nothing at "
        "inference with a linear head. On toxic-questions the average of 4 seeds of ours "
        "beat the seeds' mean test worst-group accuracy by +0.010 / +0.029 (README, "
        "Averaging seeds, measured).",
        rich_help_panel=_T,
    ),
]


@takes_option_groups
def train(
    train: Annotated[
        Path, typer.Option("--train", help=f"Training data (annotator labels). {_SPLIT}")
    ],
    valid: Annotated[
        Path,
        typer.Option(
            "--valid",
            help="Validation data with gold labels and "
            "groups: the upper level and all model selection.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Model directory to write (an earlier model there is replaced whole; "
            "a non-empty folder that is not a model is refused).",
        ),
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="ours (default) | ours-agree | soft | mv | ds | dro-mv | best-single | gold "
            "| single:<annotator> | teacher:<model dir> (a trained model's probabilities, "
            "e.g. a larger encoder's, taught to this backbone)",
            rich_help_panel=_T,
        ),
    ] = "ours",
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=_T)] = 0,
    average_seeds: AverageSeeds = 1,
    *,
    training: TrainingOptions,
    columns: ColumnOptions,
    schema_options: SchemaOptions,
) -> None:
    """Train a guard classifier from annotator labels, robust on its worst group.

    The default method (ours) learns, per item, how much to trust each
    annotator, so that the soft labels agree with the validation gold on every
    group, the worst one included (GroupDRO). Epochs and checkpoints are chosen
    on --valid, never on test.

    Example: guardrail-dro train --train train.csv --valid valid.csv --out model/
    --schema examples/toxic_questions_schema.json --method ours
    """
    from guardrail_dro.outputs import check_writable
    from guardrail_dro.train.data_checks import check_train_annotators
    from guardrail_dro.train.modeldir import TrainedModel, check_save_target
    from guardrail_dro.train.trainer import BiLevelTrainer

    check_save_target(out)  # refused now, not after the training
    check_writable(out, "--out", beside=True)
    cfg = training.config(method=method, seed=seed, average_seeds=average_seeds)
    splits = _read_splits({"train": train, "valid": valid}, columns, schema_options)
    check_train_annotators(splits["train"], [method], train)
    result = BiLevelTrainer(cfg).fit(splits["train"], splits["valid"])
    if not result.is_main_process:  # other ranks of `accelerate launch` / `torchrun`
        return
    hashes = {k: v.content_hash() for k, v in splits.items()}
    TrainedModel.from_result(
        result,
        hashes,
        data_names={"train": str(train), "valid": str(valid)},
        data_sizes={k: len(v) for k, v in splits.items()},
    ).save(out)
    for n in result.notes:
        err.print(f"note: {n}", highlight=False, markup=False)
    _warn_collapse(method, "valid", splits["valid"], result.valid_metrics)
    avg = result.averaged_seeds
    shown = f"{len(avg)} seeds averaged" if avg else f"epoch {result.best_epoch}"
    _metrics_table(f"valid ({shown})", result.valid_metrics)
    if result.background is not None:
        _stdout().print(result.background.summary(), highlight=False)
    _stdout().print(f"model written to [bold]{escape(str(out))}[/] ({result.seconds:.1f} s)")


_G = "Exported guard (--guard)"


@takes_option_groups
def evaluate(
    test: Annotated[
        Path, typer.Option("--test", help=f"Data with gold labels (and groups). {_SPLIT}")
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="A trained model directory: its class-level metrics."),
    ] = None,
    guard: Annotated[
        Path | None,
        typer.Option(
            "--guard",
            help="An exported guard directory instead of --model: its own decisions (the "
            "ONNX variant it serves, windows, its threshold) as binary metrics at its "
            "operating point, beside the validation point guard.json recorded.",
            rich_help_panel=_G,
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto (int8 on CPU when exported), int8, fp32 or fp16.",
            rich_help_panel=_G,
        ),
    ] = "auto",
    target_recall: Annotated[
        float | None,
        typer.Option(
            "--target-recall",
            help="Evaluate at the point of the guard's validation curve with the lowest "
            "FPR at recall >= this (Policy(target_recall=...)).",
            rich_help_panel=_G,
        ),
    ] = None,
    target_fpr: Annotated[
        float | None,
        typer.Option(
            "--target-fpr",
            help="... or with the highest recall at FPR <= this.",
            rich_help_panel=_G,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", dir_okay=False, help="Write metrics JSON here.")
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Also store these test metrics in the model's manifest.json and model card "
            "(README.md), keeping the directory verifiable.",
        ),
    ] = False,
    *,
    columns: ColumnOptions,
) -> None:
    """Score a trained model (--model) or an exported guard (--guard) on a split.

    --model: accuracy, group-mean and worst-group accuracy, macro-F1 of the
    argmax over the schema's classes, and toxic (any class not marked safe)
    precision / recall / FPR and ROC AUC of its toxic score. --guard: the
    guard's block / allow decisions as binary metrics (precision, recall, FPR,
    binary accuracy, worst group, ROC AUC of the toxic score) at its operating
    point; on a split of safe texts only (benign traffic), the FPR: the share it
    blocks (recall and ROC AUC n/a).

    Example: guardrail-dro evaluate --guard runs/guard --test toxic-questions:test
    """
    from guardrail_dro.data.readers import read_splits

    if (model is None) == (guard is None):
        raise typer.BadParameter("give exactly one of --model and --guard")
    if guard is None and (target_recall is not None or target_fpr is not None):
        raise typer.BadParameter("--target-recall / --target-fpr take a --guard")
    if guard is None and precision != "auto":  # a model folder has one precision
        raise typer.BadParameter("--precision takes a --guard (an exported ONNX variant)")
    if record and model is None:
        raise typer.BadParameter("--record takes a --model (a guard folder is sealed)")
    if out is not None:  # before the scoring, not a traceback after it
        from guardrail_dro.outputs import check_writable

        check_writable(out, "--out")
    result: Any
    if model is None:
        from guardrail_dro.cli.guard_eval import evaluate_guard_dir

        assert guard is not None  # exactly one of the two, checked above
        reader = columns.reader_options()
        result = evaluate_guard_dir(guard, test, reader, precision, target_recall, target_fpr)
    else:
        from guardrail_dro.train.metrics import score_split
        from guardrail_dro.train.modeldir import TrainedModel

        m = TrainedModel.load(model)
        data = read_splits({"test": test}, columns.reader_options(), schema=m.schema)[0]["test"]
        print_read_notes([data])
        # Classes from the class head (as train and bench report them), the toxic score
        # from the exported model (a chosen binary-head mix moves its argmax).
        proba, guard_proba = m.probabilities(data.texts)
        pred = proba.argmax(1)
        result = score_split(data, pred, proba=guard_proba)
        _metrics_table("test", result)
        _warn_collapse(str(model), "test", data, result, pred)
        if result.worst_group is not None:
            _stdout().print(f"worst group: {result.worst_group!r}", markup=False)
        elif not data.groups:
            _stdout().print(
                "note: the test split has no groups (--group-col): no group or worst-group "
                "accuracy",
                highlight=False,
            )
        if record:
            TrainedModel.record_test_metrics(
                model, result, data_name=str(test), data_hash=data.content_hash()
            )
            _stdout().print(
                f"test metrics recorded in {model / 'manifest.json'} and README.md", markup=False
            )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.model_dump_json(indent=2) + "\n")
        _stdout().print(f"metrics written to {out}", highlight=False, markup=False, soft_wrap=True)


@takes_option_groups
def bench(
    train: Annotated[
        Path, typer.Option("--train", help=f"Training data (annotator labels). {_SPLIT}")
    ],
    valid: Annotated[Path, typer.Option("--valid", help="Validation data (gold + groups).")],
    test: Annotated[Path, typer.Option("--test", help="Test data (gold + groups).")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for results.json, results.md and the plots.")
    ],
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, help="Seeds per method (mean ± std).")
    ] = 3,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated; default: all built-in + each single annotator (the "
            "single annotators only on a crowd of 12 or fewer, and none that gave every "
            "item one label).",
        ),
    ] = None,
    average_seeds: AverageSeeds = 1,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--fresh",
            help="Each finished (method, seed) run is kept in OUT/runs/ as it ends; "
            "--resume (default) reuses those trained with the same settings and data, so "
            "a restarted bench only trains what is missing; --fresh trains everything.",
        ),
    ] = True,
    *,
    training: TrainingOptions,
    columns: ColumnOptions,
    schema_options: SchemaOptions,
) -> None:
    """Train every method for every seed with the same backbone and budget.

    Each run is scored on test; the bench writes a JSON report, a markdown table
    and per-group plots. It compares ours with each rival on the same test
    items: the difference, with a 95 % interval over resamples of the test
    items within each group (spanning 0: a lead the test cannot tell from noise).

    Resumable: an interrupted bench (a full-mode run takes minutes) started
    again with the same options loses at most the run that was in progress.
    """
    from guardrail_dro.cli.annotator_info import annotator_info
    from guardrail_dro.outputs import check_writable
    from guardrail_dro.train.bench import check_out_dir, default_methods, run_bench
    from guardrail_dro.train.data_checks import check_train_annotators
    from guardrail_dro.train.judges import judge_table

    check_out_dir(out)  # refused now, not after the first run trained
    check_writable(out, "--out")
    names = None
    if methods is not None:
        # "mv, soft": the space is no part of the name; a name given twice runs once
        names = list(dict.fromkeys(m.strip() for m in methods.split(",") if m.strip()))
        if not names:
            raise typer.BadParameter(f"--methods names no method: {methods!r}")
    splits = _read_splits({"train": train, "valid": valid, "test": test}, columns, schema_options)
    check_train_annotators(splits["train"], names or default_methods(splits["train"]), train)
    report = run_bench(
        splits["train"],
        splits["valid"],
        splits["test"],
        methods=names,
        seeds=seeds,
        config=training.config(average_seeds=average_seeds),
        out_dir=out,
        annotator_info=annotator_info(test, splits["test"]),
        resume=resume,
    )
    # Tables of names from the data: no rich markup (an annotator "label[gpt]" showed
    # as "label"; one with "[/x]" raised a MarkupError once every run had trained).
    _stdout().print(report.table(), highlight=False, markup=False)
    for line in report.warnings:  # a method whose decision is close to constant
        _stdout().print(f"warning: {line}", highlight=False, markup=False)
    for line in report.note_lines():  # e.g. the annotators best-single skipped
        _stdout().print(f"note: {line}", highlight=False, markup=False)
    if report.judges:  # a test split without annotator labels has no judge to show
        _stdout().print(judge_table(report.judges), highlight=False, markup=False)
    if report.paired:
        from guardrail_dro.train.paired import paired_table

        level = next(iter(report.paired.values())).level
        _stdout().print(
            f"paired test differences ({level:.0%} group-stratified bootstrap; an interval "
            "spanning 0 is a lead the test split cannot tell from noise):"
        )
        _stdout().print(paired_table(report.paired), highlight=False, markup=False)
    _stdout().print(f"report and plots in [bold]{escape(str(out))}[/]")  # a path of "[x]"


def register(app: typer.Typer) -> None:
    """Add the ``train``, ``evaluate`` and ``bench`` commands to ``app``."""
    for command in (train, evaluate, bench):
        app.command()(command)
