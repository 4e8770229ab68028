"""Notes the CLI prints are text, not rich markup: a data path such as ``runs/[v2]/test.jsonl``
or a group named ``[people]`` kept its brackets only in error lines; in a note they
vanished ("note: runs//test.jsonl: skipped 1 bad row(s)")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "guardrail_dro"]


def test_a_bracketed_path_and_group_survive_in_notes(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    test = synthetic["test"]
    items = [it.model_copy(update={"group": f"[{it.group}]"}) for it in test.items]
    data = tmp_path / "runs" / "[v2]" / "[[annotators]]" / "test.jsonl"
    data.parent.mkdir(parents=True)
    type(test)(items, test.schema, name="test").save_jsonl(data)
    with data.open("a") as f:  # one row --on-bad-rows skip drops, and notes with the path
        f.write(json.dumps({"item_id": "empty", "text": "", "annotations": []}) + "\n")
    env = {**os.environ, "COLUMNS": "1000"}  # one line per message, whatever the path
    args = ["evaluate", "--model", str(tiny_model_dir), "--test", str(data)]
    res = subprocess.run(
        [*CLI, *args, "--on-bad-rows", "skip"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert f"note: {data}: skipped 1 bad row(s)" in res.stderr, res.stderr
    worst = next(ln for ln in res.stdout.splitlines() if ln.startswith("worst group:"))
    assert worst.startswith("worst group: '[") and worst.endswith("]'"), res.stdout
