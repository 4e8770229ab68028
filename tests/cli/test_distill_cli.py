"""``guardrail-dro distill`` as a user runs it: a real subprocess, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "guardrail_dro"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def test_distill_help_teaches() -> None:
    r = run("distill", "--help")
    assert r.returncode == 0
    out = " ".join(r.stdout.split())
    for word in ("--layers", "--texts", "teacher", "export"):
        assert word in out, word


def test_distill_without_data_names_what_to_pass(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The fixture's manifest names no data files: the command must say which option.
    r = run("distill", "--model", str(tiny_model_dir), "--out", str(tmp_path / "s"))
    assert r.returncode == 2
    assert "--train" in r.stderr and "names no train data" in " ".join(r.stderr.split())
    assert not (tmp_path / "s").exists()


def test_refusals_come_before_any_distilling(tiny_model_dir: Path, tmp_path: Path) -> None:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "guard.json").write_text("{}")
    r = run("distill", "--model", str(guard), "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not a trained model directory" in r.stderr and "guard artifact" in r.stderr

    before = {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()}
    r = run("distill", "--model", str(tiny_model_dir), "--out", str(tiny_model_dir))
    assert r.returncode == 2 and "the teacher's own directory" in " ".join(r.stderr.split())
    assert {p.name: p.read_bytes() for p in tiny_model_dir.iterdir() if p.is_file()} == before

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    r = run("distill", "--model", str(tiny_model_dir), "--out", str(used))
    assert r.returncode == 2 and "not a model directory" in " ".join(r.stderr.split())

    for extra in (["--objective", "balancedd"], ["--triton", str(tmp_path / "repo"),
                                                "--triton-name", "../escape"]):
        out = tmp_path / "g"
        r = run("export", "--model", str(tiny_model_dir), "--out", str(out), "--distill", "1",
                *extra)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "distilling" not in r.stderr and not (tmp_path / "g-model").exists()
        assert not out.exists() and not (tmp_path / "escape").exists()


def test_sigterm_mid_export_leaves_no_temporary_folder(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import time

    out = tmp_path / "g"
    proc = subprocess.Popen([*CLI, "export", "--model", str(tiny_model_dir), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".g.tmp-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)  # the export has started writing
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert not list(tmp_path.glob(".g.tmp-*")) and not out.exists()


def test_distill_writes_a_student_model_dir(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    for split in ("train", "valid"):
        synthetic[split].save_jsonl(tmp_path / f"{split}.jsonl")
    out = tmp_path / "student"
    r = run(
        "distill", "--model", str(tiny_model_dir), "--out", str(out), "--layers", "1",
        "--epochs", "1", "--augment", "1", "--toxic-weight", "0.5",
        "--quant-aware-epochs", "1",
        "--train", str(tmp_path / "train.jsonl"),
        "--valid", str(tmp_path / "valid.jsonl"), "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["distilled_from"]["layers"] == [0]
    rec = man["distilled_from"]
    assert rec["config"]["augment"] == 1 and rec["config"]["toxic_weight"] == 0.5
    assert rec["config"]["quant_aware_epochs"] == 1 and rec["best_epoch"] == 1
    assert rec["texts"]["word-noise"] > 0
    assert json.loads((out / "config.json").read_text())["encoder"]["num_hidden_layers"] == 1
    assert "epoch 1" in r.stderr and "guardrail-dro export --model" in r.stdout


def test_sigterm_inside_an_import_waits_for_the_import(tmp_path: Path) -> None:
    """SIGTERM raised as SystemExit inside an import aborted the process when a C
    extension was initialising there (onnx's nanobind module: std::terminate, no cleanup
    ran). The handler now asks again once the import has returned: the module below,
    which signals itself mid-import, finishes importing before the exit."""
    (tmp_path / "slow_module.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.3)\n"
        "print('import done', flush=True)\n"
    )
    script = (
        "import signal, sys\n"
        "from guardrail_dro.cli.app import _exit_on_sigterm\n"
        "signal.signal(signal.SIGTERM, _exit_on_sigterm)\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "try:\n"
        "    import slow_module\n"
        "    import time; time.sleep(5)\n"
        "    print('never')\n"
        "finally:\n"
        "    print('cleanup', flush=True)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 143, r.stderr
    assert r.stdout.split() == ["import", "done", "cleanup"], r.stdout
