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
        (["--max-inputs", "0"], "'--max-inputs'"),
        (["--max-chars", "0"], "'--max-chars'"),
    ],
    ids=["env", "file", "on-error", "max-inputs", "max-chars"],
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


def test_max_chars_is_the_guards_limit_too(guard_dir: Path, monkeypatch) -> None:
    """--max-chars sets the HTTP limit and the guard's Policy.max_chars: the server's
    20,000 against the guard's 16,384 admitted texts it answered degraded, unscored."""
    import guardrail_dro.serve.http as http
    from guardrail_dro.errors import ConfigError
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.http import ServeConfig, create_app
    from guardrail_dro.serve.policy import DEFAULT_MAX_CHARS, Policy

    served: list = []
    monkeypatch.setattr(http, "serve", lambda app, **kw: served.append(app))
    res = CliRunner().invoke(app, ["serve", "--guard", str(guard_dir), "--max-chars", "30000"])
    assert res.exit_code == 0, res.output
    assert len(served) == 1
    assert ServeConfig().max_chars == DEFAULT_MAX_CHARS == Policy().max_chars
    guard = Guard.load(guard_dir, provider="cpu", precision="fp32")
    with pytest.raises(ConfigError, match="admits texts the guard never scores"):
        create_app(guard, ServeConfig(max_chars=DEFAULT_MAX_CHARS + 1))
    long = "how do I bake bread? " * 1_000  # 21,000 characters
    wide = Guard.load(guard_dir, provider="cpu", precision="fp32", policy=Policy(max_chars=30_000))
    assert "max_chars" not in (wide.check(long).error or "")
