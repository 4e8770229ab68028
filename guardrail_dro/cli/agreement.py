"""``guardrail-dro agreement``: how annotators agree, with each other and with gold.

Imports only typer and the standard library at top level (``--help`` stays instant);
scikit-learn, rich's tables and matplotlib load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from guardrail_dro.cli.options import ColumnOptions, SchemaOptions, takes_option_groups
from guardrail_dro.errors import ConfigError

__all__ = ["agreement_command", "print_agreement", "register"]

_HELP = """Quality before training: each annotator's agreement with the others and with gold.

Per annotator: Cohen's kappa and accuracy against gold (where items have
gold), per-class recall and confusion against gold, Cohen's kappa with
every other annotator, refusal and invalid rates (from the failures file
of an `annotate` run, found beside its output), and the mean confidence of
right and of wrong labels (LLM annotators). All metrics are scikit-learn's.

\b
Examples:
  # after `guardrail-dro annotate ... --out labelled.jsonl`
  guardrail-dro agreement --data labelled.jsonl --heatmap agreement.png
  # the bundled dataset's humans, vendor and LLMs against its gold labels
  guardrail-dro agreement --data toxic-questions:valid --name label_4=GPT-4
      --heatmap tq.png --json tq.json
"""


def _names(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--name {p!r}: expected ANNOTATOR=DISPLAY NAME, e.g. label_4=GPT-4")
        out[key.strip()] = value.strip()
    return out


def print_agreement(
    dataset: object,
    failures: list[dict[str, Any]] | None,
    names: dict[str, str],
    heatmap: Path | None = None,
    json_out: Path | None = None,
) -> None:
    """Compute the report and print its tables to stderr (shared with ``annotate``).

    ``failures``: the failures of the run (None: not known, no rates shown).
    """
    from rich.console import Console

    from annotators.agreement import agreement_report
    from annotators.agreement_view import (
        pairwise_table,
        quality_table,
        recall_table,
        save_heatmap,
    )

    rows = failures
    report = agreement_report(dataset, rows, names)  # type: ignore[arg-type]
    console = Console(stderr=True, emoji=False)
    if not console.is_terminal:  # a log or a pipe: wide enough for the tables
        console.width = 120
    console.print(quality_table(report))
    console.print(pairwise_table(report))
    recall = recall_table(report)
    if recall is not None:
        console.print(recall)
    if rows is None:
        console.print(
            "refusal / invalid rates: not known (no failures file; an annotate "
            "run writes OUT.failures.jsonl)",
            highlight=False,
        )
    if heatmap is not None:
        schema = dataset.schema  # type: ignore[attr-defined]
        save_heatmap(report, heatmap, class_names=dict(schema.descriptions))
        console.print(f"wrote {heatmap}", highlight=False, markup=False)
    if json_out is not None:
        report.save_json(json_out)
        console.print(f"wrote {json_out}", highlight=False, markup=False)


@takes_option_groups
def agreement_command(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Annotated dataset (JSONL from `annotate`, CSV with annotator "
            "columns, or a bundled split such as toxic-questions:valid).",
        ),
    ],
    *,
    failures: Annotated[
        Path | None,
        typer.Option(
            "--failures",
            help="Failures file of the annotate run, for refusal / invalid "
            "rates (default: DATA.failures.jsonl when it exists).",
            dir_okay=False,
        ),
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option("--name", help="ANNOTATOR=DISPLAY NAME, repeatable (e.g. label_4=GPT-4)."),
    ] = None,
    heatmap: Annotated[
        Path | None,
        typer.Option(
            "--heatmap",
            help="Write the kappa and per-class recall heatmaps to this PNG.",
            dir_okay=False,
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Write every number (kappa, agreement, confusion matrices) as JSON.",
            dir_okay=False,
        ),
    ] = None,
    schema_options: SchemaOptions,
    columns: ColumnOptions,
) -> None:
    from guardrail_dro.data.readers import read_dataset
    from guardrail_dro.outputs import check_writable

    if heatmap is not None:  # a format matplotlib cannot write fails now, not after the work
        from annotators.agreement_view import check_heatmap_path

        check_heatmap_path(heatmap)
        check_writable(heatmap, "--heatmap")  # before the data is read, not after
    if json_out is not None:
        check_writable(json_out, "--json")
    dataset = read_dataset(data, columns.reader_options(), schema=schema_options.label_schema())
    for n in dataset.notes:
        typer.echo(f"note: {n}", err=True)
    from annotators.agreement import read_failures

    beside = data.with_name(data.name + ".failures.jsonl")
    path = failures or (beside if beside.exists() else None)
    print_agreement(
        dataset, read_failures(path) if path is not None else None, _names(name), heatmap, json_out
    )


def register(app: typer.Typer) -> None:
    """Add the ``agreement`` command to the ``guardrail-dro`` app."""
    app.command("agreement", help=_HELP)(agreement_command)
