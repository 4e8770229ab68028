"""Issue 12: the annotate command and the annotators under hostile or broken servers
(regression tests; real SDKs against the shipped fake server, no mocks)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.annotators.ann_helpers import KEY
from tests.annotators.test_ann_cli import _csv, _env, _run


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_annotate_exits_non_zero_when_nothing_was_labelled(tmp_path: Path) -> None:
    data = _csv(tmp_path / "in.csv", ["hello", "you idiot", "fine"])
    out = tmp_path / "out.jsonl"
    r = _run(["--data", str(data), "--text-col", "question", "--out", str(out),
              "--labels", "safe,toxic", "--annotator", "openai:gpt-4o-mini",
              "--base-url", f"http://127.0.0.1:{_closed_port()}/v1", "--max-attempts", "1",
              "--timeout", "2", "--no-progress"],
             _env(OPENAI_API_KEY=KEY))
    assert "0 labelled, 0 refused, 0 invalid, 3 error(s)" in r.stderr, r.stderr
    assert r.returncode == 4, r.stderr


def test_annotate_help_documents_its_exit_codes() -> None:
    r = _run(["--help"], _env(COLUMNS="120"))
    text = " ".join(r.stdout.split())
    assert "Exit codes" in text and "nothing labelled" in text
