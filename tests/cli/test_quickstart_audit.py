"""What a new user meets in ``guardrail-dro quickstart``: options that would silently undo
each other are refused before any work, and every path and command it prints can be
copied as printed (a folder with a space or brackets, a console narrower than the line)."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from guardrail_dro.data.synthetic import make_synthetic

pytest.importorskip("openai")

# Each conflict beside ``--data`` naming no folder: the code before the refusal read the
# data first and failed there (a DataError), so the test fails without the refusal and
# never starts a run with it.
CONFLICTS = {
    "annotator-without-live": (["--annotator", "openai:gpt-4o"], "--annotator takes --live"),
    "no-background-and-safe": (
        ["--no-background", "--background-safe", "everyday-requests"],
        "--no-background and --background-safe",
    ),
    "no-background-and-harmful": (
        ["--no-background", "--background-harmful", "harmful-requests"],
        "--no-background trains no harmful text",
    ),
    "no-harmful-and-harmful": (
        ["--no-harmful", "--background-harmful", "harmful-requests"],
        "--no-harmful and --background-harmful",
    ),
    "choose-without-background": (
        ["--no-background", "--choose-background"],
        "--choose-background needs background-safe text",
    ),
    "synthetic-choose": (["--synthetic", "--choose-background"], "--choose-background needs"),
    "synthetic-harmful-alone": (
        ["--synthetic", "--background-harmful", "harmful-requests"],
        "--background-harmful with --synthetic needs --background-safe",
    ),
}


@pytest.mark.parametrize("args, message", CONFLICTS.values(), ids=CONFLICTS.keys())
def test_options_that_undo_each_other_are_refused_before_any_work(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from guardrail_dro.cli.app import app

    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["quickstart", "--out", str(out), "--data", str(tmp_path / "none"), *args]
    )
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not out.exists()  # refused before the first stage wrote anything


def test_a_schema_with_the_synthetic_set_is_refused(tmp_path: Path) -> None:
    """The synthetic set has its own schema: --schema was ignored without a word."""
    from guardrail_dro.cli.app import app

    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"classes": ["a", "b"], "safe": ["a"]}))
    res = CliRunner().invoke(
        app, ["quickstart", "--out", str(tmp_path / "o"), "--synthetic", "--schema", str(schema),
              "--data", str(tmp_path / "none")],
    )  # fmt: skip
    assert res.exit_code == 2 and "--schema reads --data" in " ".join(res.output.split())


def test_the_printed_escalation_command_is_one_line_that_the_shell_reads_back(
    tmp_path: Path,
) -> None:
    """An --out with brackets raised rich's MarkupError ('[/x]'), and a narrow console
    broke the command over lines; a space split the path when pasted."""
    from guardrail_dro.cli.quick_escalation import escalation_step

    out = tmp_path / "my [/x] [red]run"
    data = make_synthetic(n_train=10, n_valid=10, n_test=10, seed=3)
    buf = io.StringIO()
    escalation_step(out / "guard", data, ["openai:m"], "", False, out, Console(file=buf, width=60))
    line = next(ln for ln in buf.getvalue().splitlines() if "guardrail-dro escalation" in ln)
    words = shlex.split(line.split("choose a band with: ", 1)[1])
    assert words[:3] == ["guardrail-dro", "escalation", "--guard"]
    opts = dict(zip(words[2::2], words[3::2], strict=False))
    assert opts["--guard"] == str(out / "guard") and opts["--judge"] == "openai:m"
    assert opts["--valid"] == str(out / "data" / "valid.jsonl")
    assert opts["--out"] == str(out / "escalation-band.json")


@pytest.mark.slow
def test_what_the_quickstart_prints_exists_and_its_check_command_runs(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    """Into a folder a shell or rich would mangle, on an 80-column console: every path it
    names is on disk and the closing ``guardrail-dro check`` line runs as printed."""
    pytest.importorskip("onnxruntime")
    from guardrail_dro.cli.app import app
    from guardrail_dro.cli.quickstart import run_quickstart

    out = tmp_path / "quick start [/x]"
    buf = io.StringIO()
    run_quickstart(
        out, synthetic=True, backbone=str(tiny_backbone), sizes=(80, 40, 30), seeds=1,
        console=Console(file=buf, width=80),
    )  # fmt: skip
    text = buf.getvalue()
    assert "[/x]" in text and "[/]" not in text  # printed as written, no markup leaked
    for name in ("data", "model", "guard", "escalation-band.json", "report/group_accuracy.png"):
        assert str(out / name) in " ".join(text.split()), name
        assert (out / name).exists(), name
    assert re.search(r"\d\.\d{6,}", text) is None  # no raw floats
    last = [ln for ln in text.splitlines() if "try: guardrail-dro check" in ln][-1]
    words = shlex.split(last.split("try: ", 1)[1])
    assert words[:2] == ["guardrail-dro", "check"]
    res = CliRunner().invoke(app, words[1:])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["allowed"] in (True, False)


def test_the_synthetic_help_does_not_promise_seconds() -> None:
    """--synthetic said 'seconds'; the command (MiniLM, every method) took 4 min 4 s
    resumed from its annotation cache on the 2-core machine."""
    from guardrail_dro.cli.app import app

    res = CliRunner().invoke(app, ["quickstart", "--help"], env={"COLUMNS": "200"})
    synthetic = " ".join(res.output.split("--synthetic", 1)[1].split("--live", 1)[0].split())
    assert "seconds" not in synthetic and "minutes" in synthetic, synthetic


def test_a_student_larger_than_the_backbone_is_refused_before_any_work(tmp_path: Path) -> None:
    """distill refused --student 8 on the 6-layer MiniLM only after the bench and the
    export had run, minutes in."""
    from guardrail_dro.cli.app import app

    out = tmp_path / "out"
    args = ["quickstart", "--out", str(out), "--synthetic", "--student", "8"]
    res = CliRunner().invoke(app, args)
    said = " ".join(res.output.replace("│", " ").split())  # rich's error box, unwrapped
    assert res.exit_code == 2 and "has 6 layers; a student takes 1..6" in said, res.output
    assert not out.exists()
