"""Command-line options shared by every command that reads data (train, bench, annotate...).

Kept apart from the command modules so that every command (``guardrail_dro.cli.annotate``)
takes the very same options with the same names and help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardrail_dro.data.readers import ReaderOptions
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError

__all__ = [
    "AnnotatorCols",
    "Format",
    "GoldCol",
    "GroupCol",
    "IdCol",
    "Labels",
    "LlmAnnotators",
    "Safe",
    "SchemaPath",
    "TextCol",
    "make_reader_options",
    "make_schema",
]

_P = "Data columns"
Format = Annotated[
    str,
    typer.Option(
        "--format", help="auto | wide | long | jsonl (auto reads the columns).", rich_help_panel=_P
    ),
]
TextCol = Annotated[
    str | None,
    typer.Option(
        "--text-col",
        help="Text column of a wide CSV (default: text, question...).",
        rich_help_panel=_P,
    ),
]
IdCol = Annotated[
    str | None,
    typer.Option(
        "--id-col", help="Item id column (default: index or row number).", rich_help_panel=_P
    ),
]
AnnotatorCols = Annotated[
    str | None,
    typer.Option(
        "--annotator-cols",
        help="Comma-separated annotator columns of a wide CSV (default: every label_* column).",
        rich_help_panel=_P,
    ),
]
GoldCol = Annotated[
    str | None,
    typer.Option(
        "--gold-col", help="Gold label column (default: gold or label).", rich_help_panel=_P
    ),
]
GroupCol = Annotated[
    str | None,
    typer.Option(
        "--group-col",
        help="Group column (default: group, dominant_topics, topic).",
        rich_help_panel=_P,
    ),
]
LlmAnnotators = Annotated[
    str | None,
    typer.Option(
        "--llm-annotators", help="Comma-separated annotator ids that are LLMs.", rich_help_panel=_P
    ),
]
_S = "Label schema"
Labels = Annotated[
    str | None,
    typer.Option(
        "--labels", help="Comma-separated class names, in index order.", rich_help_panel=_S
    ),
]
Safe = Annotated[
    str | None,
    typer.Option(
        "--safe",
        help="Comma-separated safe (non-toxic) classes, with --labels.",
        rich_help_panel=_S,
    ),
]
SchemaPath = Annotated[
    Path | None,
    typer.Option(
        "--schema",
        help="Label schema JSON: {classes, safe, descriptions}.",
        rich_help_panel=_S,
        exists=True,
        dir_okay=False,
    ),
]


def _split(v: str | None) -> tuple[str, ...] | None:
    return None if v is None else tuple(x.strip() for x in v.split(",") if x.strip())


def make_reader_options(
    format: str = "auto",
    text_col: str | None = None,
    id_col: str | None = None,
    annotator_cols: str | None = None,
    gold_col: str | None = None,
    group_col: str | None = None,
    llm_annotators: str | None = None,
) -> ReaderOptions:
    if format not in ("auto", "wide", "long", "jsonl"):
        raise ConfigError(f"--format must be auto, wide, long or jsonl, not {format!r}")
    return ReaderOptions(
        format=format,  # type: ignore[arg-type]
        text_col=text_col,
        id_col=id_col,
        annotator_cols=_split(annotator_cols),
        gold_col=gold_col,
        group_col=group_col,
        llm_annotators=_split(llm_annotators) or (),
    )


def make_schema(labels: str | None, safe: str | None, schema: Path | None) -> LabelSchema | None:
    """The schema from --schema or --labels/--safe, or None to infer it from the data."""
    if labels and schema:
        raise ConfigError("give either --labels or --schema, not both")
    if schema is not None:
        return LabelSchema.load(schema)
    if labels:
        return LabelSchema.parse_list(labels, safe=safe)
    if safe:
        raise ConfigError("--safe needs --labels (or put 'safe' in the --schema file)")
    return None
