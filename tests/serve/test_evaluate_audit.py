"""``guardrail-dro evaluate`` as a user runs it (a real subprocess): an --out it cannot
write, and metrics a split cannot define, in strict JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "guardrail_dro"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture()
def test_file(synthetic, tmp_path: Path) -> Path:
    path = tmp_path / "test.jsonl"
    synthetic["test"].save_jsonl(path)
    return path


def test_an_out_that_cannot_be_written_is_refused_before_scoring(
    tiny_model_dir: Path, test_file: Path, tmp_path: Path
) -> None:
    # It used to score the whole split, then fail on out.parent.mkdir with a
    # FileExistsError traceback (exit 1) and print nothing of what it measured.
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run("evaluate", "--model", str(tiny_model_dir), "--test", str(test_file),
            "--out", str(blocker / "metrics.json"))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "--out" in r.stderr and "is a file, not a folder" in " ".join(r.stderr.split())
    assert "accuracy" not in r.stdout  # refused before the scoring, not after


def test_metrics_a_one_class_split_cannot_define_are_null_in_strict_json(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.data.items import AnnotatedDataset

    data = synthetic["test"]
    safe = AnnotatedDataset([it for it in data if it.gold == "safe"], data.schema, name="safe")
    path = tmp_path / "safe.jsonl"
    safe.save_jsonl(path)
    out = tmp_path / "m" / "metrics.json"
    r = run("evaluate", "--model", str(tiny_model_dir), "--test", str(path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    got = _strict(out.read_text())
    assert got["n"] == len(safe)
    # No toxic text: recall and ROC AUC are undefined, and said so, never 0 or NaN.
    assert got["toxic_recall"] is None and got["toxic_roc_auc"] is None
    assert got["toxic_fpr"] is not None
