"""``guardrail-dro distill``'s per-epoch lines each start a line of the terminal.

Before: they were printed while the progress bar was drawn and not cleared, so each
came out on the bar's line: "distil L1:  50%|#####  | 2/4 [...]  epoch 1: loss ...".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _screen(stream: str) -> list[str]:
    """The lines a terminal shows for ``stream``: a carriage return goes back to the
    start of the line, and what follows overwrites what was there."""
    shown = []
    for line in stream.split("\n"):
        cells: list[str] = []
        col = 0
        for ch in line:
            if ch == "\r":
                col = 0
                continue
            if col < len(cells):
                cells[col] = ch
            else:
                cells.append(ch)
            col += 1
        shown.append("".join(cells).rstrip())
    return shown


def test_screen_overwrites_after_a_carriage_return() -> None:
    assert _screen("bar 50%\r       \r  epoch 1\nx") == ["  epoch 1", "x"]
    assert _screen("bar 50%  epoch 1") == ["bar 50%  epoch 1"]


def test_each_epoch_line_starts_a_line(tiny_model_dir: Path, synthetic, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    for split in ("train", "valid"):
        synthetic[split].save_jsonl(tmp_path / f"{split}.jsonl")
    r = subprocess.run(
        [
            sys.executable, "-m", "guardrail_dro", "distill", "--model", str(tiny_model_dir),
            "--out", str(tmp_path / "student"), "--layers", "1", "--epochs", "2",
            "--augment", "0", "--train", str(tmp_path / "train.jsonl"),
            "--valid", str(tmp_path / "valid.jsonl"), "--cache-dir", str(tmp_path / "cache"),
        ],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "distil L1" in r.stderr  # the bar was drawn
    shown = _screen(r.stderr)
    for epoch in (1, 2):
        lines = [s for s in shown if f"epoch {epoch}: loss" in s]
        assert len(lines) == 1, shown
        assert lines[0].startswith(f"  epoch {epoch}: loss"), shown
