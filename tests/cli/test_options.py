"""Option groups: declared once, expanded into typer options, gathered back into one object."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

import guardrail_dro.cli
from guardrail_dro.cli import app
from guardrail_dro.cli.options import ColumnOptions, SchemaOptions, takes_option_groups
from guardrail_dro.data.readers import ReaderOptions
from guardrail_dro.errors import ConfigError


def test_package_exports_app_and_main() -> None:
    assert guardrail_dro.cli.__all__ == ["app", "main"]
    assert callable(guardrail_dro.cli.main)


def test_every_command_is_registered_in_help_order() -> None:
    names = [c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands]
    assert names == [
        "train",
        "evaluate",
        "bench",
        "quickstart",
        "annotate",
        "agreement",
        "merge",
        "split",
        "distill",
        "export",
        "check",
        "escalation",
        "serve",
    ]


def test_column_options_map_onto_reader_options() -> None:
    cols = ColumnOptions(
        format="wide", text_col="question", annotator_cols="a, b,,c", llm_annotators="c"
    )
    assert cols.reader_options() == ReaderOptions(
        format="wide", text_col="question", annotator_cols=("a", "b", "c"), llm_annotators=("c",)
    )
    assert ColumnOptions().reader_options() == ReaderOptions()


def test_unknown_format_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--format must be auto, wide, long or jsonl, not 'xml'"):
        ColumnOptions(format="xml").reader_options()


def test_schema_options(tmp_path: Path) -> None:
    assert SchemaOptions().label_schema() is None
    s = SchemaOptions(labels="safe,toxic", safe="safe").label_schema()
    assert s is not None and s.classes == ("safe", "toxic") and s.safe == ("safe",)
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"classes": ["ok", "bad"], "safe": ["ok"]}))
    loaded = SchemaOptions(schema=path).label_schema()
    assert loaded is not None and loaded.classes == ("ok", "bad")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SchemaOptions(labels="a,b", schema=Path("s.json")), "either --labels or --schema"),
        (SchemaOptions(safe="a"), "--safe needs --labels"),
    ],
    ids=["labels-and-schema", "safe-alone"],
)
def test_schema_options_refuse_contradictions(options: SchemaOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.label_schema()


def _toy_app(command: Callable[..., None]) -> typer.Typer:
    toy = typer.Typer()
    toy.callback()(lambda: None)  # a group, so the command is called by name
    toy.command()(command)
    return toy


def test_groups_become_options_and_come_back_as_objects() -> None:
    seen: dict[str, object] = {}

    @takes_option_groups
    def read(
        path: Annotated[str, typer.Option("--path")],
        *,
        columns: ColumnOptions,
        schema_options: SchemaOptions,
    ) -> None:
        seen.update(path=path, columns=columns, schema_options=schema_options)

    args = ["read", "--path", "p", "--text-col", "q", "--labels", "a,b"]
    res = CliRunner().invoke(_toy_app(read), args)
    assert res.exit_code == 0, res.output
    assert seen == {
        "path": "p",
        "columns": ColumnOptions(text_col="q"),
        "schema_options": SchemaOptions(labels="a,b"),
    }


def test_an_option_name_used_twice_is_refused() -> None:
    def clash(text_col: str = "", *, columns: ColumnOptions) -> None: ...

    with pytest.raises(TypeError, match=r"clash: option names used twice: \['text_col'\]"):
        takes_option_groups(clash)


@pytest.mark.parametrize(
    ("command", "has_schema"),
    [("train", True), ("bench", True), ("annotate", True), ("evaluate", False), ("export", False)],
)
def test_commands_take_the_groups_they_use(command: str, has_schema: bool) -> None:
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "Data columns" in res.output and "--llm-annotators" in res.output
    assert ("--labels" in res.output) == has_schema


def test_import_stays_light() -> None:
    code = (
        "import sys, guardrail_dro.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime', 'openai', "
        "'anthropic', 'tenacity') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_paragraphs_fit_an_80_column_terminal() -> None:
    """Typer's rich help keeps a docstring's line breaks, so a hard-wrapped prose line
    longer than the 78 columns an 80-column terminal leaves wraps again and strands its
    last word on a line of its own. One-line paragraphs are rewrapped by rich, and
    indented lines (example commands) are left to the terminal."""
    command = typer.main.get_command(app)
    too_long: list[str] = []
    for name, cmd in command.commands.items():  # type: ignore[attr-defined]
        summary = (cmd.help or "").split("\n\n")[0]
        if "\n" in summary:  # the command list would break it where the source does
            too_long.append(f"{name}: a summary over two lines: {summary!r}")
        for para in (cmd.help or "").split("\n\n"):
            lines = para.splitlines()
            if len(lines) < 2:
                continue
            too_long += [f"{name}: {ln}" for ln in lines if len(ln) > 78 and ln[:1] != " "]
    assert not too_long, "\n".join(too_long)
