"""What a killed export leaves beside its --out: named by owner, removed by the next
export when that owner is dead, named when it cannot be told from a running export's.
Real ``guardrail-dro export`` processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardrail_dro.leftovers import owner_tag

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CLI = [sys.executable, "-m", "guardrail_dro"]
HOST = owner_tag().rsplit("-", 1)[0]


def test_the_next_export_removes_a_sigkilled_exports_folder_and_names_the_rest(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "g"
    export = [*CLI, "export", "--model", str(tiny_model_dir), "--out", str(out), "--no-int8"]
    killed = subprocess.Popen(export, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".g.tmp-*")) and time.monotonic() < deadline:
        assert killed.poll() is None, killed.stderr.read() if killed.stderr else ""
        time.sleep(0.02)
    killed.kill()  # SIGKILL: no cleanup runs
    killed.communicate(timeout=60)
    [left] = tmp_path.glob(".g.tmp-*")
    assert left.name.startswith(f".g.tmp-{HOST}-{killed.pid}-") and not out.exists()

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        running = tmp_path / f".g.tmp-{HOST}-{sleeper.pid}-0123abcd"
        elsewhere = tmp_path / f".g.tmp-build-node-2-{killed.pid}-4567cdef"
        others = [tmp_path / f".other.tmp-{HOST}-{killed.pid}-0123abcd", tmp_path / "mine"]
        for path in (running, elsewhere, *others):
            path.mkdir()
        r = subprocess.run(export, capture_output=True, text=True, timeout=300)
    finally:
        sleeper.kill()
        sleeper.wait()

    assert r.returncode == 0, r.stderr
    assert not left.exists() and (out / "guard.json").is_file()
    assert all(p.is_dir() for p in (running, elsewhere, *others))
    lines = r.stderr.splitlines()
    assert any(line.startswith(f"removed {left} (") for line in lines), r.stderr
    for kept in (running, elsewhere):
        assert any(line.startswith(f"left alone: {kept} (") for line in lines), r.stderr
    assert not any(str(p) in r.stderr for p in others)


def test_sigterm_as_the_build_folder_is_made_leaves_no_folder(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The SIGTERM test's 1-in-11 leftover: a signal that arrives during the ``mkdir``
    is raised (SystemExit, by the CLI's handler) as the call returns, before the export
    holds the folder to remove it. Here the signal is sent from inside that call."""
    out = tmp_path / "g"
    script = (
        "import os, signal\n"
        "from guardrail_dro.cli.app import _exit_on_sigterm\n"
        "from export.onnx import export_onnx\n"
        "signal.signal(signal.SIGTERM, _exit_on_sigterm)\n"
        "real_mkdir = os.mkdir\n"
        "def mkdir(path, mode=0o777, **kwargs):\n"
        "    real_mkdir(path, mode, **kwargs)\n"
        "    if os.path.basename(path).startswith('.g.tmp-'):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "os.mkdir = mkdir\n"
        f"export_onnx({str(tiny_model_dir)!r}, {str(out)!r}, int8=False, optimize=False)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert os.listdir(tmp_path) == []
