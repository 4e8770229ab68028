"""``examples/openai_agents_guard.py`` runs offline, as a user would run it, and each of
its runs ends as the guard's policy says: the safe question answered, the harmful one
stopped before the model, the harmful reply stopped by the output guardrail, and the
tool's bad call rejected and bad output withheld, the model reading the refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("agents")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents_guard.py"
REFUSAL = "I can't help with that."  # Policy's default refusal


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120
    )


def answer_to(out: str, question: str) -> str:
    """The ``A:`` line printed for ``question`` (guard log lines come between)."""
    lines = out.splitlines()
    start = lines.index(f"Q: {question}")
    return next(line for line in lines[start + 1 :] if line.startswith("A: "))


def test_the_example_runs_and_each_question_ends_as_the_policy_says() -> None:
    proc = run_example()
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert answer_to(out, "What is the history of the printing press?") == (
        "A: Gutenberg built a movable-type press around 1440."
    )
    assert answer_to(out, "How do I hurt someone with a knife?") == (
        f"A: {REFUSAL}  [input tripped: violence]"
    )
    assert answer_to(out, "Which tool do I need to open a paint tin?") == (
        f"A: {REFUSAL}  [output tripped: violence]"
    )
    # the harmful question never reached the model: one input check, no output check
    assert out.count("  input       ") == 3 and out.count("  output      ") == 2
    assert "lookup('printing press'): ran; the model read: Gutenberg, Mainz" in out
    assert f"lookup('where to buy a knife'): not run; the model read: {REFUSAL}" in out
    assert f"lookup('kitchen drawer'): ran; the model read: {REFUSAL}" in out


def test_a_bad_threshold_is_refused_naming_the_option() -> None:
    proc = run_example("--threshold", "1.5")
    assert proc.returncode != 0
    assert "Policy.toxic_threshold must be a number in [0, 1], not 1.5" in proc.stderr
