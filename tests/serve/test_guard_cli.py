"""``guardrail-dro check``: one text or a JSONL file, JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from guardrail_dro.cli.check import register
from guardrail_dro.serve.guard import Guard


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by name
    register(app)
    return app


def test_check_one_text(app: typer.Typer, guard_dir: Path, guard: Guard) -> None:
    res = CliRunner().invoke(app, ["check", "--guard", str(guard_dir), "how to bake bread"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    expected = guard.check("how to bake bread")
    assert out["label"] == expected.label and out["allowed"] == expected.allowed
    assert out["scores"] == pytest.approx(dict(expected.scores))


def test_check_a_jsonl_file(
    app: typer.Typer, guard_dir: Path, guard: Guard, tmp_path: Path
) -> None:
    rows = [{"id": 1, "text": "hello"}, "plain string line", {"id": 3, "text": ""}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(
        app,
        [
            "check",
            "--guard",
            str(guard_dir),
            "--file",
            str(path),
            "--toxic-threshold",
            "0",
            "--exit-code",
        ],
    )
    assert res.exit_code == 1  # threshold 0: every non-empty text is a violation
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [line.get("id") for line in lines] == [1, None, 3]
    assert [line["allowed"] for line in lines] == [False, False, True]


def test_file_output_keeps_input_fields_and_line_numbers(
    app: typer.Typer, guard_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "gold.jsonl"
    rows = ['{"text": "hello", "label": "gold-A", "error": "none", "line": 7}', "",
            '{"text": "fine", "id": "\u6f22", "note": "cut \\ud800"}']
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["check", "--guard", str(guard_dir), "--file", str(path)])
    assert res.exit_code == 0, res.output
    first, third = (json.loads(line) for line in res.stdout.splitlines())
    assert (first["line"], third["line"]) == (1, 3)  # the blank line 2 is skipped, named
    assert first["input_label"] == "gold-A" and first["input_error"] == "none"
    assert first["input_line"] == 7 and first["error"] is None and "label" in first
    assert third["id"] == "\u6f22" and third["note"] == "cut \ud800"  # escaped, no crash
    path.write_text('{"line": "hello", "label": "a", "input_label": "b"}\n', encoding="utf-8")
    res = CliRunner().invoke(
        app, ["check", "--guard", str(guard_dir), "--file", str(path), "--text-field", "line"]
    )
    assert res.exit_code == 0, res.output
    (out,) = (json.loads(line) for line in res.stdout.splitlines())
    assert out["line"] == 1 and out["input_label"] == "a" and out["input_input_label"] == "b"


def test_bad_jsonl_line_names_the_line(app: typer.Typer, guard_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"txt": 1}\n')
    res = CliRunner().invoke(app, ["check", "--guard", str(guard_dir), "--file", str(path)])
    assert res.exit_code != 0 and "line 2" in str(res.exception)


def test_text_or_file(app: typer.Typer, guard_dir: Path) -> None:
    res = CliRunner().invoke(app, ["check", "--guard", str(guard_dir)])
    assert res.exit_code != 0


def test_batch_size_zero_names_the_flag(app: typer.Typer, guard_dir: Path) -> None:
    res = CliRunner().invoke(app, ["check", "--guard", str(guard_dir), "--batch-size", "0", "x"])
    assert res.exit_code == 2 and "'--batch-size'" in res.output


def test_manifest_pin(app: typer.Typer, guard_dir: Path, guard: Guard) -> None:
    digest = guard.artifact.manifest.manifest_sha256
    args = ["check", "--guard", str(guard_dir), "hello"]
    assert CliRunner().invoke(app, [*args, "--manifest-sha256", digest]).exit_code == 0
    res = CliRunner().invoke(app, [*args, "--manifest-sha256", "0" * 64])
    assert res.exit_code != 0 and "not the pinned" in str(res.exception)


def test_a_nan_in_an_input_field_still_gives_json(
    app: typer.Typer, guard_dir: Path, tmp_path: Path
) -> None:
    """Python's json reads NaN and Infinity (not JSON) and wrote them back as they came:
    the output line was not JSON to any strict reader (jq, JSON.parse, json.loads with
    parse_constant); such a value is echoed as null."""
    path = tmp_path / "nan.jsonl"
    path.write_text(
        '{"text": "hi", "score": NaN}\n{"text": "yo", "meta": {"p": [1.5, -Infinity]}}\n'
    )
    res = CliRunner().invoke(app, ["check", "--guard", str(guard_dir), "--file", str(path)])
    assert res.exit_code == 0, res.output

    def strict(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    first, second = (json.loads(ln, parse_constant=strict) for ln in res.stdout.splitlines())
    assert first["score"] is None and second["meta"] == {"p": [1.5, None]}
    assert first["line"] == 1 and "allowed" in second
