"""``guardrail-dro split``: the command-line shell over ``read_dataset`` + ``split_dataset``.

Imports only typer, the standard library and light parts of guardrail_dro at top level;
the data layer loads inside the command.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from guardrail_dro.cli.options import ColumnOptions, SchemaOptions, takes_option_groups
from guardrail_dro.errors import ConfigError

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset

__all__ = ["register", "split_command"]

_HELP = """Split one labelled dataset into train and valid (and test) files by its gold labels.

DATA is read as `train` reads data (a merged labels.jsonl, a CSV with a
gold column named by --gold-col, ...). Items with a gold label go to valid,
items without to train. With --test-fraction F, that share of the gold
items goes to test instead, drawn with --seed per group (per gold label
when there are no groups), each group keeping at least one item in valid.

No text is in two splits: items whose texts are equal (case, Unicode form
and whitespace aside) stay together, and items without gold whose text a
gold item has are left out of train (a note counts them).

DIR gets train.jsonl, valid.jsonl (and test.jsonl), each with its label
schema beside it, read by `train` without column options. Split files
already in DIR are refused unless --overwrite (which also removes a
test.jsonl the new split does not make).

\b
Example:
  # after `guardrail-dro merge ... --out labels.jsonl`
  guardrail-dro split labels.jsonl --out-dir splits --test-fraction 0.5
  guardrail-dro train --train splits/train.jsonl --valid splits/valid.jsonl
      --out model
"""

_S = "Split"
_NAMES = ("train", "valid", "test")


def _split_files(out_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Each split's file and label schema sidecar in ``out_dir``."""
    from guardrail_dro.data.items import schema_sidecar

    return {n: (out_dir / f"{n}.jsonl", schema_sidecar(out_dir / f"{n}.jsonl")) for n in _NAMES}


def _check_out_dir(out_dir: Path, data: Path, overwrite: bool) -> None:
    """Refuse, before reading DATA, a DIR that is a file, one that cannot be written,
    one that holds DATA as a split file, and earlier split files without ``overwrite``."""
    from guardrail_dro.data.readers import resolve_path
    from guardrail_dro.outputs import check_writable

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} is a file: the splits go to a folder")
    pairs = _split_files(out_dir).values()
    files = [p for pair in pairs for p in pair]
    if data.exists() and resolve_path(data).resolve() in {p.resolve() for p in files}:
        raise ConfigError(
            f"--out-dir {out_dir} would overwrite DATA {data}: write the splits to another folder"
        )
    # each split by its data file; a schema sidecar only where its data file is gone
    there = [(f if f.exists() else s).name for f, s in pairs if f.exists() or s.exists()]
    if there and not overwrite:
        raise ConfigError(
            f"--out-dir {out_dir} already holds {', '.join(there)} (an earlier split?): pass "
            "--overwrite to replace them, or choose another --out-dir"
        )
    check_writable(out_dir, "--out-dir")


def _describe(ds: AnnotatedDataset) -> str:
    """One split's line: its items, and for a gold split its gold classes and groups."""
    line = f"{ds.name}: {len(ds)} item(s)"
    if ds.name == "train":
        return f"{line}, {len(ds.annotators)} annotator(s)"
    gold = Counter(it.gold for it in ds)
    classes = ", ".join(f"{c} {gold[c]}" for c in ds.schema.classes if gold[c])
    line += f"; gold: {classes}"
    sizes = Counter(it.group for it in ds if it.group is not None)
    if sizes:
        least = min(ds.groups, key=lambda g: sizes[g])
        line += f"; {len(sizes)} group(s), the smallest {least!r} ({sizes[least]})"
    return line


def _next_steps(files: dict[str, Path]) -> list[str]:
    q = {n: shlex.quote(str(p)) for n, p in files.items()}
    steps = [f"guardrail-dro train --train {q['train']} --valid {q['valid']} --out model"]
    if "test" in q:
        steps.append(f"guardrail-dro evaluate --model model --test {q['test']}")
    return steps


@takes_option_groups
def split_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="The labelled dataset (CSV, JSONL, optionally .xz / .gz, or a bundled "
            "split), some of its items with a gold label.",
            metavar="DATA",
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out-dir",
            help="Folder for train.jsonl, valid.jsonl (and test.jsonl); made if missing.",
        ),
    ],
    *,
    test_fraction: Annotated[
        float,
        typer.Option(
            "--test-fraction",
            min=0.0,
            max=0.9,
            help="Share of the gold items that goes to test, not valid (0: no test split).",
            rich_help_panel=_S,
        ),
    ] = 0.0,
    seed: Annotated[
        int, typer.Option("--seed", help="Seeds the draw of the test items.", rich_help_panel=_S)
    ] = 0,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace split files already in --out-dir.", rich_help_panel=_S
        ),
    ] = False,
    schema_options: SchemaOptions,
    columns: ColumnOptions,
) -> None:
    from guardrail_dro.data.readers import read_dataset
    from guardrail_dro.data.split import split_dataset
    from guardrail_dro.train.data_checks import ungrouped_note, valid_size_notes

    _check_out_dir(out_dir, data, overwrite)
    dataset = read_dataset(data, columns.reader_options(), schema=schema_options.label_schema())
    parts = split_dataset(dataset, test_fraction=test_fraction, seed=seed)
    paths = _split_files(out_dir)
    written = {}
    for name, ds in parts.splits().items():
        ds.save_jsonl(paths[name][0])
        written[name] = paths[name][0]
    notes = [*dataset.notes, *parts.notes]
    if parts.test is None:
        stale = [p for p in paths["test"] if p.exists()]
        for p in stale:  # an earlier split's test would share items with this valid
            p.unlink()
        if stale:
            notes.append(f"removed {paths['test'][0]} of an earlier split (--overwrite)")
    notes += valid_size_notes(parts.valid)
    if (ungrouped := ungrouped_note(parts.valid)) is not None:
        notes.append(ungrouped)

    gold = sum(it.gold is not None for it in dataset)
    typer.echo(f"{data}: {len(dataset)} item(s), {gold} with gold")
    for ds in parts.splits().values():
        typer.echo(_describe(ds))
    for n in notes:  # typer.echo: a label or path with brackets is text, not markup
        typer.echo(f"note: {n}", err=True)
    typer.echo(f"wrote {', '.join(map(str, written.values()))} (label schema beside each)")
    typer.echo("next:")
    for step in _next_steps(written):
        typer.echo(f"  {step}")


def register(app: typer.Typer) -> None:
    """Add the ``split`` command to the ``guardrail-dro`` app."""
    app.command("split", help=_HELP, no_args_is_help=True)(split_command)
