"""Outputs that cannot be written are refused before the work, naming the option.

``train --out /proc/nope/model`` trained for a minute, then ended in a
``FileNotFoundError`` traceback; ``escalation --out /proc/x.json`` scored the whole split
first (its permission check said yes: as root ``os.access`` allows ``/proc``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.outputs import check_writable

CLI = [sys.executable, "-m", "guardrail_dro"]
NOWHERE = Path("/proc/guardrail-dro-nowhere")  # no file can be made under /proc

needs_proc = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")


def test_a_writable_place_passes_and_keeps_nothing(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "deeper" / "out.json", "--json")
    check_writable(tmp_path, "--out")
    (tmp_path / "old.json").write_text("kept")
    check_writable(tmp_path / "old.json", "--json")
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]
    assert (tmp_path / "old.json").read_text() == "kept"  # not truncated


def test_a_parent_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"--heatmap .*afile is a file, not a folder"):
        check_writable(tmp_path / "afile" / "x.png", "--heatmap")


@needs_proc
def test_a_folder_no_file_can_be_made_in_is_named() -> None:
    with pytest.raises(ConfigError, match=r"--out .*cannot write a file in /proc"):
        check_writable(NOWHERE / "model", "--out")


@needs_proc
@pytest.mark.parametrize(
    "args",
    [
        ["train", "--train", "toxic-questions:train", "--valid", "toxic-questions:valid"],
        ["bench", "--train", "toxic-questions:train", "--valid", "toxic-questions:valid",
         "--test", "toxic-questions:test", "--methods", "mv"],
        ["export", "--model", "{tmp}"],
        ["escalation", "--guard", "{tmp}", "--valid", "toxic-questions:valid", "--judge",
         "label_5"],
    ],
    ids=["train", "bench", "export", "escalation"],
)  # fmt: skip
def test_commands_refuse_an_unwritable_out_before_any_work(args: list[str], tmp_path: Path) -> None:
    out = NOWHERE / ("band.json" if args[0] == "escalation" else "out")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"--out {out}" in proc.stderr and "cannot write a file in /proc" in proc.stderr
    assert time.perf_counter() - t0 < 60  # refused, not trained, exported or scored
