"""The issue-6 examples run as scripts (tiny backbone, small data, local servers only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_annotate_then_train(tiny_backbone: Path, tmp_path: Path) -> None:
    pytest.importorskip("anthropic")
    out = run(
        "annotate_then_train.py",
        "--backbone",
        str(tiny_backbone),
        "--out",
        str(tmp_path),
        "--n-train",
        "60",
    )
    assert "train: openai:gpt-4o-mini: 60 labelled" in out
    assert "anthropic:claude-sonnet-4-5: 60 labelled" in out
    assert "worst-group accuracy" in out and (tmp_path / "train.jsonl").is_file()


def test_train_on_crowd_labels(tiny_backbone: Path, tmp_path: Path) -> None:
    out = run(
        "train_on_crowd_labels.py",
        "--backbone",
        str(tiny_backbone),
        "--out",
        str(tmp_path),
        "--n-train",
        "200",
    )
    n = int(out.split(" annotators")[0].split(", ")[-1])
    assert n > 100
    assert "ours: test accuracy" in out and "  mv: test accuracy" in out


def test_export_and_serve(tiny_backbone: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = run("export_and_serve.py", "--backbone", str(tiny_backbone), "--out", str(tmp_path))
    assert "model.int8.onnx" in out and "guard.json" in out
    assert "p50" in out and "provider cpu" in out


def test_labeling_config(tmp_path: Path) -> None:
    pytest.importorskip("anthropic")
    out = run("labeling_config.py", "--out", str(tmp_path), "--n", "30")
    assert "# one openai request, as it would be sent:" in out
    assert "# one anthropic request, as it would be sent:" in out
    assert "Label the comment, not the topic" in out  # the guidelines reached the request
    assert "paid calls: pilot 40, full run 20 (2 annotators x 10 new items)" in out
    assert "kappa vs gold" in out and (tmp_path / "agreement.png").is_file()
