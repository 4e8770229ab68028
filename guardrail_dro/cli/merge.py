"""``guardrail-dro merge``: the command-line shell over ``read_inputs`` + ``merge_datasets``.

Imports only typer, the standard library and light parts of guardrail_dro at top level;
the data layer loads inside the command.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from guardrail_dro.cli.options import ColumnOptions, SchemaOptions, takes_option_groups
from guardrail_dro.errors import ConfigError
from guardrail_dro.outputs import replace_text

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.data.merge import JoinOn, OnConflict

__all__ = ["merge_command", "register"]

_HELP = """Join label files of the same items into one dataset to train on.

Each FILE is read as `train` reads data (wide CSV, long CSV / JSONL, our
JSONL, or a bundled split). Items are joined by item id and their
annotations unioned per annotator, each keeping its kind, model, rationale
and confidence. An annotator giving an item the same label in two files is
one vote; two different labels (or two golds, or two groups) stop the merge
with the files, item and annotator named, unless --on-conflict says which
to keep. Items that only some files have are kept: a file of gold labels
for a validation sample is fine.

The label schema: --schema or --labels, else the first one a FILE brings
(an `annotate` output's OUT.schema.json, a bundled split's), else inferred
from every file. Every FILE is checked against it.

The data column options apply to every FILE alike (each file's layout is
detected on its own). A file that needs other column options (its own
--text-col): merge it alone first, then merge that JSONL with the others.

OUT is our JSONL, with its label schema beside it (OUT.schema.json),
written when the merge has succeeded; it may not be one of the FILEs.

\b
Example:
  # crowd labels in a CSV (columns label_*), two `annotate` runs
  guardrail-dro merge crowd.csv gpt.jsonl claude.jsonl
      --labels safe,toxic --safe safe --out labels.jsonl
  guardrail-dro agreement --data labels.jsonl
"""

_M = "Merge"
_SHOWN = 20  # annotators listed by name; a crowd of hundreds is summed up after them


def _choice(value: str, option: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        names = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
        raise ConfigError(f"{option} must be {names}, not {value!r}")
    return value


def _check_out(out: Path, files: list[Path]) -> None:
    """Refuse an OUT that would replace one of the inputs (or its schema sidecar)."""
    from guardrail_dro.data.items import schema_sidecar
    from guardrail_dro.data.readers import resolve_path
    from guardrail_dro.outputs import check_writable

    if out.suffix != ".jsonl":
        raise ConfigError(f"--out {out}: the merged dataset is JSONL; name it OUT.jsonl")
    written = {out.resolve(), schema_sidecar(out).resolve()}
    for f in files:
        if resolve_path(f).resolve() in written:
            raise ConfigError(
                f"--out {out} would overwrite the input {f}: write the merge to a new file"
            )
    check_writable(out, "--out")


def _summary(inputs: list[AnnotatedDataset], merged: AnnotatedDataset, out: Path) -> None:
    """Per file and merged counts, annotators, notes: typer.echo prints data literally
    (an annotator or path with brackets is text)."""
    from guardrail_dro.data.items import schema_sidecar

    for ds in inputs:
        typer.echo(f"{ds.name}: {len(ds)} item(s)")
    gold = sum(it.gold is not None for it in merged)
    typer.echo(
        f"merged: {len(merged)} item(s), {gold} with gold, {len(merged.groups)} group(s), "
        f"{len(merged.annotators)} annotator(s)"
    )
    counts = Counter(a.annotator for it in merged for a in it.annotations)
    shown = list(merged.annotators[:_SHOWN])
    width = max((len(a) for a in shown), default=0)
    for a in shown:
        typer.echo(f"  {a:<{width}}  {merged.annotator_kinds[a]:<5}  {counts[a]} item(s)")
    rest = merged.annotators[_SHOWN:]
    if rest:
        kinds = [merged.annotator_kinds[a] for a in rest]
        typer.echo(
            f"  ... and {len(rest)} more ({kinds.count('human')} human, {kinds.count('llm')} llm)"
        )
    for ds in [*inputs, merged]:
        for n in ds.notes:
            typer.echo(f"note: {n}", err=True)
    typer.echo(f"wrote {out} (label schema: {schema_sidecar(out)})")


def _carry_failures(files: list[Path], out: Path) -> str | None:
    """Join the inputs' ``FILE.failures.jsonl`` (an ``annotate`` run's refused, invalid
    and failed answers, kept beside its output, not in it) into ``OUT.failures.jsonl``,
    where ``agreement --data OUT`` reads them. Why: after a merge, agreement said the
    refusal rates were "not known". Returns the note saying so, or None when no input
    has such a file (an earlier ``OUT.failures.jsonl`` is then removed)."""
    found = [p for f in files if (p := f.with_name(f.name + ".failures.jsonl")).is_file()]
    dest = out.with_name(out.name + ".failures.jsonl")
    if not found:  # an earlier merge's failures would be read as this one's
        dest.unlink(missing_ok=True)
        return None
    text = "".join(
        t if t.endswith("\n") or not t else t + "\n"
        for t in (f.read_text(encoding="utf-8", errors="replace") for f in found)
    )
    replace_text(dest, text)
    rows = len(text.splitlines())
    return f"{rows} refused / invalid / failed answer(s) of {len(found)} annotate run(s) -> {dest}"


@takes_option_groups
def merge_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Label files of the same items (CSV, JSONL, optionally .xz / .gz, or a "
            "bundled split such as toxic-questions:valid), in order: messages and "
            "--on-conflict keep-first / keep-last go by it.",
            metavar="FILE",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            dir_okay=False,
            help="Merged dataset, our JSONL (the label schema is written beside it).",
        ),
    ],
    *,
    join: Annotated[
        str,
        typer.Option(
            "--join",
            help="id: join items by item id; text: by their text (case, Unicode form and "
            "whitespace aside; the first file's id is kept), for files whose ids differ.",
            rich_help_panel=_M,
        ),
    ] = "id",
    on_conflict: Annotated[
        str,
        typer.Option(
            "--on-conflict",
            help="An annotator (or gold, or group) with two different labels for one item: "
            "error stops; keep-first / keep-last keep the earlier / later file's; drop "
            "keeps neither.",
            rich_help_panel=_M,
        ),
    ] = "error",
    schema_options: SchemaOptions,
    columns: ColumnOptions,
) -> None:
    from guardrail_dro.data.merge import merge_datasets, read_inputs

    how = _choice(join, "--join", ("id", "text"))
    policy = _choice(on_conflict, "--on-conflict", ("error", "keep-first", "keep-last", "drop"))
    _check_out(out, files)
    inputs = read_inputs(files, columns.reader_options(), schema=schema_options.label_schema())
    merged = merge_datasets(
        inputs,
        join=cast("JoinOn", how),
        on_conflict=cast("OnConflict", policy),
        name=out.stem,
    )
    merged.save_jsonl(out)
    _summary(inputs, merged, out)
    if (note := _carry_failures([Path(ds.name) for ds in inputs], out)) is not None:
        typer.echo(f"note: {note}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``merge`` command to the ``guardrail-dro`` app."""
    app.command("merge", help=_HELP, no_args_is_help=True)(merge_command)
