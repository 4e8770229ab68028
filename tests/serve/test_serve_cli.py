"""``guardrail-dro serve``: the command's errors (CliRunner), and the real command in a
subprocess through ``examples/serve_moderations.py`` (which starts it, calls it with the
openai SDK and compares every answer with in-process ``Guard.check``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from guardrail_dro.cli.app import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "serve_moderations.py"


def test_help_teaches() -> None:
    res = CliRunner().invoke(app, ["serve", "--help"])
    assert res.exit_code == 0
    for part in ("/v1/moderations", "--api-key-env", "--max-batch-texts", "--timeout-ms"):
        assert part in res.output


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--api-key-env", "GUARDRAIL_TEST_UNSET_VAR"], "unset or empty"),
        (["--api-key-file", "{empty}"], "holds no key"),
        (["--on-error", "sideways"], "closed or open"),
    ],
    ids=["env", "file", "on-error"],
)
def test_bad_options_are_named(
    guard_dir: Path, tmp_path: Path, args: list[str], match: str
) -> None:
    empty = tmp_path / "keys.txt"
    empty.write_text("# no key here\n\n")
    args = [a.replace("{empty}", str(empty)) for a in args]
    res = CliRunner().invoke(app, ["serve", "--guard", str(guard_dir), *args])
    assert res.exit_code != 0
    message = str(res.exception) if res.exception else res.output
    assert match in message or match in res.output, (res.output, res.exception)


def test_the_example_serves_and_matches_in_process(guard_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--guard", str(guard_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert sum("same_as_in_process=True" in ln for ln in lines) == 3, proc.stdout
    assert 'guardrail_requests_total{path="/v1/moderations",status="200"} 1.0' in proc.stdout
