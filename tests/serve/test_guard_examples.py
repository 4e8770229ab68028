"""The examples run as scripts against the fake server they start themselves.

The tiny test guard's scores mean nothing, so each test first reads the scores its
example's texts get, then sets each rail's threshold between them, so that the prompt
passes, the model is called, and it is the model's reply that gets stopped (mid-stream
for the streaming example)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from guardrail_dro.serve.guard import Guard
from tests.conftest import load_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, guard_dir: Path, *args: str) -> tuple[str, str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--guard", str(guard_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def example(name: str) -> ModuleType:
    return load_script(EXAMPLES / name)


def between(scores: list[float]) -> float:
    """A threshold just under the highest score and above the next one."""
    top, second = sorted(set(scores), reverse=True)[:2]
    assert top - second > 0.002, scores
    return (top + second) / 2


def test_wrap_openai_chat(guard_dir: Path, guard: Guard) -> None:
    ex = example("wrap_openai_chat.py")
    questions = ex.QUESTIONS
    t_in = between([guard.check(q).toxic_score for q in questions])
    asked = [q for q in questions if guard.check(q).toxic_score < t_in]  # reach the model
    replies = [ex.REPLIES.get(q, "Happy to help with that.") for q in asked]
    t_out = between([guard.check(r).toxic_score for r in replies])
    out, _ = run(
        "wrap_openai_chat.py",
        guard_dir,
        "--input-threshold",
        str(t_in),
        "--output-threshold",
        str(t_out),
    )
    assert out.count("Q: ") == 3 and "guard checks:" in out
    assert f"the model was called {len(asked)} time(s)" in out and len(asked) == 2
    assert out.count("[content_filter]") == 2 and out.count("[stop]") == 1
    checks = re.findall(r"^  (input|output) +(\w+)", out, flags=re.M)
    assert checks.count(("input", "replace")) == 1 and checks.count(("output", "replace")) == 1
    stopped = [r for r in replies if guard.check(r).toxic_score >= t_out]
    passed = [r for r in replies if r not in stopped]
    assert len(stopped) == 1 and f"A: {passed[0]}  [stop]" in out


def test_async_web_handler(guard_dir: Path, guard: Guard) -> None:
    ex = example("async_web_handler.py")
    messages = ex.MESSAGES
    t_in = between([guard.check(m).toxic_score for m in messages])
    asked = [m for m in messages if guard.check(m).toxic_score < t_in]
    t_out = between([guard.check("Happy to help: " + m).toxic_score for m in asked])
    out, _ = run(
        "async_web_handler.py",
        guard_dir,
        "--input-threshold",
        str(t_in),
        "--output-threshold",
        str(t_out),
    )
    rows = re.findall(r"^(\d{3}) (\S+) +toxic=", out, flags=re.M)
    assert len(rows) == 12 and "12 concurrent requests" in out
    assert f"the model was called {len(asked)} time(s)" in out and len(asked) < 12
    assert rows.count(("400", "-")) == 12 - len(asked)  # stopped before the model
    replaced = rows.count(("200", "content_filter"))
    assert replaced >= 1 and replaced + rows.count(("200", "stop")) == len(asked)
    gap = float(re.search(r"longest gap between 5 ms ticks ([\d.]+) ms", out).group(1))
    # The guard runs in worker threads: a check on the loop would show here as a long
    # stall; the loop's own work (the SDK building 12 requests) stays well under this.
    assert 5 <= gap < 200, out


def _stream_checks(stderr: str) -> list[list[tuple[str, float]]]:
    """The checks of each streamed reply, in order: [(rail, toxic score), ...]."""
    runs: list[list[tuple[str, float]]] = []
    for rail, score in re.findall(r"check (input|output) +\w+ +toxic=([\d.]+)", stderr):
        if rail == "input":
            runs.append([])
        runs[-1].append((rail, float(score)))
    return runs


def test_streaming_stop(guard_dir: Path) -> None:
    reply, refusal = example("streaming_stop.py").REPLY, example("streaming_stop.py").REFUSAL
    # First pass: nothing stopped, every check's score logged.
    _, err = run(
        "streaming_stop.py", guard_dir, "--input-threshold", "1", "--output-threshold", "1"
    )
    openai_run, anthropic_run = _stream_checks(err)
    assert openai_run == anthropic_run  # the same text, checked at the same places
    s_in = openai_run[0][1]
    outs = [score for _, score in openai_run[1:]]
    # Stop at the check that rises most above every check before it (never the first:
    # a harmless prefix must be released before the refusal).
    j = max(range(1, len(outs)), key=lambda k: outs[k] - max(outs[:k]))
    assert outs[j] - max(outs[:j]) > 0.002, outs
    t_out = (outs[j] + max(outs[:j])) / 2
    t_in = (s_in + 1) / 2
    out, err = run(
        "streaming_stop.py",
        guard_dir,
        "--input-threshold",
        str(t_in),
        "--output-threshold",
        str(t_out),
    )
    assert out.count("[model calls: 1]") == 2  # the prompt passed, once per SDK
    for marker in ("[openai finish_reason=content_filter]", "[anthropic stop_reason=refusal]"):
        streamed = out.split(marker)[0].rstrip("\n").rsplit("\n", 1)[-1]
        assert streamed.endswith(refusal)
        prefix = streamed.removesuffix(refusal)
        assert prefix and reply.startswith(prefix) and len(prefix) < len(reply)
    assert [len(r) for r in _stream_checks(err)] == [j + 2, j + 2]  # stopped at check j
