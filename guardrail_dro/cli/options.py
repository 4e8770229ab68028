"""Option groups: options that several commands share, declared once and taken as one object.

A command names a group as one parameter, and ``@takes_option_groups`` turns it into the
group's typer options (same names, help and panels in every command) and back into one
typed, frozen object when the command runs::

    @takes_option_groups
    def evaluate(model: ..., *, columns: ColumnOptions) -> None:
        data = read_dataset(test, columns.reader_options())

The data groups, mapped one to one on the library's types:

- ``ColumnOptions`` (``--format``, ``--text-col``, ``--id-col``, ``--annotator-cols``,
  ``--gold-col``, ``--group-col``, ``--llm-annotators``, ``--on-bad-rows``) -> ``ReaderOptions``;
- ``SchemaOptions`` (``--labels``, ``--safe``, ``--schema``) -> ``LabelSchema`` or None.

Commands that read the schema from a model (evaluate, export) take only ``ColumnOptions``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_type_hints

import typer

from guardrail_dro.data.layouts import Format as ReaderFormat
from guardrail_dro.data.readers import ReaderOptions
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError

__all__ = [
    "AnnotatorCols",
    "ColumnOptions",
    "Format",
    "GoldCol",
    "GroupCol",
    "GuardDir",
    "IdCol",
    "Labels",
    "LlmAnnotators",
    "OnBadRows",
    "OptionGroup",
    "Safe",
    "SchemaOptions",
    "SchemaPath",
    "TextCol",
    "takes_option_groups",
]

R = TypeVar("R")


# ---- the mechanism ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptionGroup:
    """Base of a frozen dataclass whose fields are typer options (``Annotated`` aliases
    with their default), taken by a command as one parameter (see the module docstring)."""

    @classmethod
    def parameters(cls) -> list[inspect.Parameter]:
        """The group's fields as keyword-only command parameters, in field order."""
        hints = get_type_hints(cls, include_extras=True)
        return [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
            )
            for f in dataclasses.fields(cls)
        ]


def _group_of(param: inspect.Parameter) -> type[OptionGroup] | None:
    a = param.annotation
    return a if isinstance(a, type) and issubclass(a, OptionGroup) else None


def takes_option_groups(command: Callable[..., R]) -> Callable[..., R]:
    """Expand each ``OptionGroup`` parameter of ``command`` into the group's options.

    Typer reads the returned function's signature: the group's options stand where the
    group parameter stood. When typer calls it, the options are gathered back into the
    group object and ``command`` receives that object under the parameter's name.

    Raises:
        TypeError: an option name of a group is also another parameter's name.
    """
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, type[OptionGroup]] = {}
    params: list[inspect.Parameter] = []
    for p in signature.parameters.values():
        group = _group_of(p)
        if group is None:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        else:
            groups[p.name] = group
            params += group.parameters()
    names = [p.name for p in params]
    clashes = {n for n in names if names.count(n) > 1} | (set(groups) & set(names))
    if clashes:
        raise TypeError(f"{command.__name__}: option names used twice: {sorted(clashes)}")

    @functools.wraps(command)
    def run(**options: Any) -> R:
        for name, group in groups.items():
            fields = {f.name: options.pop(f.name) for f in dataclasses.fields(group)}
            options[name] = group(**fields)
        return command(**options)

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


# ---- data columns -----------------------------------------------------------------------

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
        "--id-col",
        help="Item id column (default: item_id or id, else the index column or row number).",
        rich_help_panel=_P,
    ),
]
AnnotatorCols = Annotated[
    str | None,
    typer.Option(
        "--annotator-cols",
        help="Comma-separated annotator columns of a wide CSV (default: every label_*, "
        "annotator_* and annotation_* column).",
        rich_help_panel=_P,
    ),
]
GoldCol = Annotated[
    str | None,
    typer.Option(
        "--gold-col",
        help="Gold label column (default: gold, label or gold_label).",
        rich_help_panel=_P,
    ),
]
GroupCol = Annotated[
    str | None,
    typer.Option(
        "--group-col",
        help="Group column (default: group, dominant_topics, topic or domain).",
        rich_help_panel=_P,
    ),
]
LlmAnnotators = Annotated[
    str | None,
    typer.Option(
        "--llm-annotators", help="Comma-separated annotator ids that are LLMs.", rich_help_panel=_P
    ),
]


OnBadRows = Annotated[
    str,
    typer.Option(
        "--on-bad-rows",
        help="error: stop at a bad row (empty text, a blank id, an annotator giving one item "
        "two labels, an item id twice, the header row again mid-file); skip: drop such rows "
        "and report how many and on which lines.",
        rich_help_panel=_P,
    ),
]


def _split(v: str | None) -> tuple[str, ...] | None:
    return None if v is None else tuple(x.strip() for x in v.split(",") if x.strip())


def _reader_format(v: str) -> ReaderFormat:
    for known in get_args(ReaderFormat):
        if v == known:
            return known
    raise ConfigError(f"--format must be auto, wide, long or jsonl, not {v!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ColumnOptions(OptionGroup):
    """How to read a data file's columns: the ``Data columns`` options."""

    format: Format = "auto"
    text_col: TextCol = None
    id_col: IdCol = None
    annotator_cols: AnnotatorCols = None
    gold_col: GoldCol = None
    group_col: GroupCol = None
    llm_annotators: LlmAnnotators = None
    on_bad_rows: OnBadRows = "error"

    def reader_options(self) -> ReaderOptions:
        """The library's ``ReaderOptions``; comma-separated lists become tuples.

        Raises:
            ConfigError: ``--format`` is not auto, wide, long or jsonl, or ``--on-bad-rows``
                is not error or skip.
        """
        if self.on_bad_rows not in ("error", "skip"):
            raise ConfigError(f"--on-bad-rows must be error or skip, not {self.on_bad_rows!r}")
        return ReaderOptions(
            format=_reader_format(self.format),
            text_col=self.text_col,
            id_col=self.id_col,
            annotator_cols=_split(self.annotator_cols),
            gold_col=self.gold_col,
            group_col=self.group_col,
            llm_annotators=_split(self.llm_annotators) or (),
            on_bad_rows="skip" if self.on_bad_rows == "skip" else "error",
        )


# ---- label schema -----------------------------------------------------------------------

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
GuardDir = Annotated[
    Path,
    typer.Option(
        "--guard",
        help="Guard artifact directory (from `export`).",
        exists=True,
        file_okay=False,
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class SchemaOptions(OptionGroup):
    """The label schema given on the command line: the ``Label schema`` options."""

    labels: Labels = None
    safe: Safe = None
    schema: SchemaPath = None

    def label_schema(self) -> LabelSchema | None:
        """The schema from ``--schema`` or ``--labels``/``--safe``, or None to infer it
        from the data.

        Raises:
            ConfigError: both ``--labels`` and ``--schema``, or ``--safe`` alone.
        """
        if self.labels and self.schema:
            raise ConfigError("give either --labels or --schema, not both")
        if self.schema is not None:
            return LabelSchema.load(self.schema)
        if self.labels:
            return LabelSchema.parse_list(self.labels, safe=self.safe)
        if self.safe:
            raise ConfigError("--safe needs --labels (or put 'safe' in the --schema file)")
        return None
