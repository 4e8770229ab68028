"""The examples run as scripts against the fake server they start themselves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, guard_dir: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--guard", str(guard_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# The tiny test guard's decisions mean nothing, so the runs that check decisions set the
# toxic threshold to 0: every text is a violation.


def test_wrap_openai_chat(guard_dir: Path) -> None:
    out = run("wrap_openai_chat.py", guard_dir, "--toxic-threshold", "0")
    assert out.count("Q: ") == 3 and "guard checks:" in out
    assert out.count("[content_filter]") == 3
    assert "the model was called 0 time(s)" in out  # every input stopped first


def test_async_web_handler(guard_dir: Path) -> None:
    out = run("async_web_handler.py", guard_dir)
    assert "12 concurrent requests" in out and "the loop was never blocked" in out


def test_streaming_stop(guard_dir: Path) -> None:
    out = run("streaming_stop.py", guard_dir, "--toxic-threshold", "0")
    assert "[openai finish_reason=content_filter]" in out
    assert "[anthropic stop_reason=refusal]" in out
    assert out.count("[reply stopped by the guardrail]") == 2
