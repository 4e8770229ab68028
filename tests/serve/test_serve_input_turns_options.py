"""``serve --max-input-turns`` as a user meets it: it bounds the turns that
``--input-turns user|all`` checks, so under the default (``last``, one turn) it bounds
nothing. Given alone it was accepted and ignored, so a user who set it believed every
turn was checked and bounded; it is refused by name now, as ``--input-turns user``
without a proxy is. Its help no longer promises that the caller is told a request was
refused unscored (a proxy answers its usual refusal)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from guardrail_dro.cli.app import app


def test_max_input_turns_without_input_turns_is_refused_by_name(guard_dir: Path) -> None:
    args = ["serve", "--guard", str(guard_dir), "--upstream", "http://127.0.0.1:9/v1"]
    res = CliRunner().invoke(app, [*args, "--max-input-turns", "2"], terminal_width=200)
    said = f"{res.output}{res.exception}"
    assert res.exit_code != 0, said
    assert "--max-input-turns" in said and "--input-turns user or all" in said, said


def test_max_input_turns_help_says_what_the_caller_gets() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    said = next(p.help for p in serve.params if p.name == "max_input_turns")
    assert "saying so" not in said and "the caller gets the usual refusal" in said, said
