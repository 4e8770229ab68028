"""The ``guardrail-dro`` command line: a thin shell over the library's entry points.

Each command calls exactly one library function with the same parameter names and adds
no logic of its own. Heavy imports (torch, SDKs) happen inside the commands, so
``guardrail-dro --help`` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from guardrail_dro.cli import options as O
from guardrail_dro.errors import GuardrailError

__all__ = ["app", "main"]

app = typer.Typer(
    name="guardrail-dro",
    help="Train content-moderation guardrails from crowd + LLM labels, robust on the "
    "worst group (bi-level soft-label GroupDRO), export them to ONNX, and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def _register_plugins() -> None:
    # Other packages of the distribution add their own commands; their modules import
    # only typer and guardrail_dro at top level, so this stays cheap.
    for module in (
        "guardrail_dro.cli.annotate",
        "guardrail_dro.cli.export",
        "guardrail_dro.cli.check",
    ):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


def main() -> None:
    """Console entry point: library errors become one red line and exit code 2."""
    _register_plugins()
    from pydantic import ValidationError

    try:
        app()
    except GuardrailError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except ValidationError as exc:  # a typed config built from options: name the field
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or exc.title
            msg = e["msg"].removeprefix("Value error, ")
            err.print(f"[bold red]error:[/] {where}: {msg}", highlight=False)
        sys.exit(2)


# ---- shared bits ------------------------------------------------------------------------

_T = "Training"
Method = Annotated[
    str,
    typer.Option(
        "--method",
        help="ours (default) | ours-agree | soft | mv | ds | dro-mv | best-single | gold | "
        "single:<annotator>",
        rich_help_panel=_T,
    ),
]
Mode = Annotated[
    str,
    typer.Option(
        "--mode",
        help="frozen: heads on cached embeddings (CPU, "
        "seconds); full: fine-tune the encoder (GPU).",
        rich_help_panel=_T,
    ),
]
Backbone = Annotated[
    str | None,
    typer.Option(
        "--backbone",
        help="Hugging Face encoder folder or name (default: embedded all-MiniLM-L6-v2).",
        rich_help_panel=_T,
    ),
]
Epochs = Annotated[
    int | None, typer.Option("--epochs", help="Default 40 frozen / 3 full.", rich_help_panel=_T)
]
Seed = Annotated[int, typer.Option("--seed", rich_help_panel=_T)]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Embedding cache folder (default $GUARDRAIL_DRO_CACHE or ~/.cache/guardrail-dro).",
        rich_help_panel=_T,
    ),
]
KeepOverlap = Annotated[
    bool,
    typer.Option(
        "--keep-overlap",
        help="Keep training items whose text also appears in valid/test (by default they "
        "are dropped: the upper level and model selection would see their own training "
        "items).",
        rich_help_panel=_T,
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        "--device", help="cpu, cuda, cuda:1 (default: best available).", rich_help_panel=_T
    ),
]


def _read(
    paths: dict[str, Path | None],
    fmt,
    text_col,
    id_col,
    annotator_cols,
    gold_col,
    group_col,
    llm_annotators,
    labels,
    safe,
    schema,
):
    from guardrail_dro.data.items import find_leakage
    from guardrail_dro.data.readers import read_splits

    opts = O.make_reader_options(
        fmt, text_col, id_col, annotator_cols, gold_col, group_col, llm_annotators
    )
    splits, sch = read_splits(paths, opts, schema=O.make_schema(labels, safe, schema))
    for line in find_leakage(splits).lines() if len(splits) > 1 else []:
        err.print(f"[yellow]warning: leakage:[/] {line}", highlight=False)
    return splits, sch


def _metrics_table(rows: dict[str, dict]) -> None:
    from rich.table import Table

    t = Table(show_header=True, header_style="bold")
    t.add_column("split")
    keys = [
        "accuracy",
        "group_mean_accuracy",
        "worst_group_accuracy",
        "macro_f1",
        "toxic_precision",
        "toxic_recall",
        "toxic_fpr",
    ]
    for k in keys:
        t.add_column(k.replace("_", " "), justify="right")
    for name, m in rows.items():
        t.add_row(name, *("-" if m.get(k) is None else f"{m[k]:.3f}" for k in keys))
    Console().print(t)


@app.command()
def train(
    train: Annotated[Path, typer.Option("--train", help="Training data (annotator labels).")],
    valid: Annotated[
        Path,
        typer.Option(
            "--valid",
            help="Validation data with gold labels and "
            "groups: the upper level and all model selection.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    method: Method = "ours",
    mode: Mode = "frozen",
    backbone: Backbone = None,
    epochs: Epochs = None,
    seed: Seed = 0,
    cache_dir: CacheDir = None,
    keep_overlap: KeepOverlap = False,
    device: Device = None,
    format: O.Format = "auto",
    text_col: O.TextCol = None,
    id_col: O.IdCol = None,
    annotator_cols: O.AnnotatorCols = None,
    gold_col: O.GoldCol = None,
    group_col: O.GroupCol = None,
    llm_annotators: O.LlmAnnotators = None,
    labels: O.Labels = None,
    safe: O.Safe = None,
    schema: O.SchemaPath = None,
) -> None:
    """Train a guard classifier from annotator labels, robust on its worst group.

    The default method (ours) learns, per item, how much to trust each annotator, so
    that the soft labels agree with the validation gold on every group, the worst one
    included (GroupDRO). Epochs and checkpoints are chosen on --valid, never on test.

    Example: guardrail-dro train --train train.csv --valid valid.csv --out model/
    --schema examples/toxic_questions_schema.json --method ours
    """
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    splits, _ = _read(
        {"train": train, "valid": valid},
        format,
        text_col,
        id_col,
        annotator_cols,
        gold_col,
        group_col,
        llm_annotators,
        labels,
        safe,
        schema,
    )
    cfg = TrainConfig(
        method=method,
        mode=mode,
        backbone=backbone,
        epochs=epochs,
        seed=seed,
        cache_dir=cache_dir,
        device=device,
        drop_overlap=not keep_overlap,
    )
    result = BiLevelTrainer(cfg).fit(splits["train"], splits["valid"])
    if not result.is_main_process:  # other ranks of `accelerate launch` / `torchrun`
        return
    hashes = {k: v.content_hash() for k, v in splits.items()}
    TrainedModel.from_result(result, hashes).save(out)
    for n in result.notes:
        err.print(f"note: {n}", highlight=False)
    _metrics_table({f"valid (epoch {result.best_epoch})": result.valid_metrics.headline()})
    Console().print(f"model written to [bold]{out}[/] ({result.seconds:.1f} s)")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="A trained model directory.")],
    test: Annotated[Path, typer.Option("--test", help="Data with gold labels (and groups).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write metrics JSON here.")] = None,
    format: O.Format = "auto",
    text_col: O.TextCol = None,
    id_col: O.IdCol = None,
    annotator_cols: O.AnnotatorCols = None,
    gold_col: O.GoldCol = None,
    group_col: O.GroupCol = None,
    llm_annotators: O.LlmAnnotators = None,
) -> None:
    """Score a trained model on a labelled split: accuracy, group-mean and worst-group
    accuracy, macro-F1, toxic precision / recall / FPR."""
    from guardrail_dro.train.metrics import score_split
    from guardrail_dro.train.modeldir import TrainedModel

    m = TrainedModel.load(model)
    from guardrail_dro.data.readers import read_splits

    opts = O.make_reader_options(
        format, text_col, id_col, annotator_cols, gold_col, group_col, llm_annotators
    )
    data = read_splits({"test": test}, opts, schema=m.schema)[0]["test"]
    pred = m.predict_proba(data.texts).argmax(1)
    metrics = score_split(data, pred)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(metrics.model_dump_json(indent=2) + "\n")
    _metrics_table({"test": metrics.headline()})
    if metrics.worst_group is not None:
        Console().print(f"worst group: {metrics.worst_group!r}")


@app.command()
def bench(
    train: Annotated[Path, typer.Option("--train", help="Training data (annotator labels).")],
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
            "--methods", help="Comma-separated; default: all built-in + each single annotator."
        ),
    ] = None,
    mode: Mode = "frozen",
    backbone: Backbone = None,
    epochs: Epochs = None,
    cache_dir: CacheDir = None,
    keep_overlap: KeepOverlap = False,
    device: Device = None,
    format: O.Format = "auto",
    text_col: O.TextCol = None,
    id_col: O.IdCol = None,
    annotator_cols: O.AnnotatorCols = None,
    gold_col: O.GoldCol = None,
    group_col: O.GroupCol = None,
    llm_annotators: O.LlmAnnotators = None,
    labels: O.Labels = None,
    safe: O.Safe = None,
    schema: O.SchemaPath = None,
) -> None:
    """Train every method for every seed with the same backbone and budget, score each on
    test, and write a JSON report, a markdown table and per-group plots."""
    from guardrail_dro.train.bench import run_bench
    from guardrail_dro.train.trainer import TrainConfig

    splits, _ = _read(
        {"train": train, "valid": valid, "test": test},
        format,
        text_col,
        id_col,
        annotator_cols,
        gold_col,
        group_col,
        llm_annotators,
        labels,
        safe,
        schema,
    )
    cfg = TrainConfig(
        mode=mode,
        backbone=backbone,
        epochs=epochs,
        cache_dir=cache_dir,
        device=device,
        drop_overlap=not keep_overlap,
    )
    report = run_bench(
        splits["train"],
        splits["valid"],
        splits["test"],
        methods=methods.split(",") if methods else None,
        seeds=seeds,
        config=cfg,
        out_dir=out,
    )
    Console().print(report.table())
    Console().print(f"report and plots in [bold]{out}[/]")


@app.command()
def quickstart(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for data, caches, reports, model and guard.")
    ] = Path("quickstart-out"),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="A folder with train.csv, valid.csv, test.csv (e.g. "
            "../shared/datasets/toxic-questions) instead of the synthetic data.",
        ),
    ] = None,
    schema: O.SchemaPath = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Annotate with the real providers (keys from "
            "OPENAI_API_KEY / ANTHROPIC_API_KEY) instead of the local replay.",
        ),
    ] = False,
    annotator: Annotated[
        list[str] | None,
        typer.Option(
            "--annotator",
            help="With --live: provider:model, repeatable (default openai:gpt-4o-mini).",
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per method.")] = 1,
) -> None:
    """See the whole product work, offline, in a few minutes on a CPU: an LLM annotation
    pass (real runner and SDK against a local replay endpoint; cached), our method against
    the baselines on frozen MiniLM (table and plots), the int8 ONNX guard with its parity
    check, and guard.check on a few chat turns. Run it again: it resumes from its caches.
    """
    from guardrail_dro.cli.quickstart import run_quickstart

    run_quickstart(
        out,
        data=data,
        schema=schema,
        live=live,
        annotator_specs=annotator or ("openai:gpt-4o-mini",),
        seeds=seeds,
    )
