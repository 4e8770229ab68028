"""Temporary build folders name their owner; a writer clears a dead owner's and names the
rest (``guardrail_dro/leftovers.py``). Real processes give the pids: a finished child
for a dead owner, a sleeping child for a live one."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail_dro.checksums import new_folder
from guardrail_dro.leftovers import owner_tag, sweep_leftovers
from guardrail_dro.train.modeldir import TrainedModel, check_save_target

HOST = owner_tag().rsplit("-", 1)[0]


def dead_pid() -> int:
    """The pid of a process that ran on this host and has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def folder(path: Path, size: int = 0) -> Path:
    path.mkdir()
    if size:
        (path / "model.onnx").write_bytes(b"x" * size)
    return path


def test_new_folder_names_its_host_and_pid(tmp_path: Path) -> None:
    made = new_folder(tmp_path, ".guard.tmp-")
    m = re.fullmatch(r"\.guard\.tmp-([A-Za-z0-9_-]{1,24})-(\d+)-[0-9a-f]{8}", made.name)
    assert m and made.is_dir(), made.name
    assert (m[1], int(m[2])) == (HOST, os.getpid())


@pytest.mark.parametrize(
    "hostname",
    ["box", "node-7.cluster.example.org", "a" * 70, "wéird name/with:odd*chars"],
    ids=["short", "dotted", "long", "odd"],
)
def test_any_host_name_gives_a_valid_parseable_folder_name(
    hostname: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    made = new_folder(tmp_path, ".g.tmp-")
    host = made.name.removeprefix(".g.tmp-").rsplit("-", 2)[0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,24}", host), made.name
    assert made.name.endswith(f"-{os.getpid()}-{made.name[-8:]}")
    # the same host is recognised as this one: a dead owner's folder is removed
    gone = folder(tmp_path / f".g.tmp-{host}-{dead_pid()}-0123abcd")
    # in name order, which puts pid 12607 before pid 7789: the actions, not their order
    assert sorted(x.action for x in sweep_leftovers(tmp_path / "g", ("tmp",))) == [
        "left alone",
        "removed",
    ]
    assert not gone.exists() and made.exists()  # made: this process, alive


def test_a_dead_owner_here_is_removed_the_rest_named(
    tmp_path: Path, live_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    dead = folder(tmp_path / f".guard.tmp-{HOST}-{dead_pid()}-0123abcd", size=2_500_000)
    live = folder(tmp_path / f".guard.tmp-{HOST}-{live_pid}-4567cdef")
    other_host = folder(tmp_path / f".guard.tmp-{HOST}x-{dead_pid()}-89abcdef")
    old_style = folder(tmp_path / ".guard.tmp-0badc0de")
    untouched = [
        folder(tmp_path / f".other.tmp-{HOST}-{dead_pid()}-0123abcd"),  # another output
        folder(tmp_path / f".guard.tmp-x.tmp-{HOST}-{dead_pid()}-0123abcd"),  # "guard.tmp-x"'s
        folder(tmp_path / f".guard.new-{HOST}-{dead_pid()}-0123abcd"),  # a kind not asked for
        folder(tmp_path / ".guard.tmp-mine"),  # a user's folder
        folder(tmp_path / "guard"),
    ]
    a_file = tmp_path / f".guard.tmp-{HOST}-{dead_pid()}-fedcba98"
    a_file.write_text("a file: we make folders only")
    untouched.append(a_file)

    with caplog.at_level(logging.WARNING, logger="guardrail_dro.leftovers"):
        found = sweep_leftovers(tmp_path / "guard", ("tmp",))

    assert {x.path: x.action for x in found} == {
        dead: "removed",
        live: "left alone",
        other_host: "left alone",
        old_style: "left alone",
    }
    assert not dead.exists()
    assert all(p.exists() for p in (live, other_host, old_style, *untouched))
    lines = caplog.messages
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    removed = next(line for line in lines if line.startswith("removed"))
    assert str(dead) in removed and "2.5 MB" in removed and "no longer running" in removed
    kept = {
        p: next(line for line in lines if str(p) in line) for p in (live, other_host, old_style)
    }
    assert all(line.startswith("left alone: ") and "remove it if" in line for line in kept.values())
    assert "reused" in kept[live] and f"process {live_pid}" in kept[live]
    assert f"host {HOST}x" in kept[other_host]
    assert "does not say which process" in kept[old_style]


def test_a_killed_but_unreaped_owner_counts_as_dead(tmp_path: Path) -> None:
    """A zombie still answers ``kill(pid, 0)``, but it writes nothing any more."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        child.kill()
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":
            os.sched_yield()
        left = folder(tmp_path / f".g.tmp-{HOST}-{child.pid}-0123abcd")
        assert [x.action for x in sweep_leftovers(tmp_path / "g", ("tmp",))] == ["removed"]
        assert not left.exists()
    finally:
        child.wait()


def test_a_model_save_clears_its_new_and_old_folders(tmp_path: Path, live_pid: int) -> None:
    out = folder(tmp_path / "model")
    (out / "manifest.json").write_text("{}")
    new = folder(tmp_path / f".model.new-{HOST}-{dead_pid()}-0123abcd", size=10)
    old = folder(tmp_path / f".model.old-{HOST}-{dead_pid()}-4567cdef")
    (old / "model").mkdir()  # the swap finished, the old copy's removal did not
    running = folder(tmp_path / f".model.new-{HOST}-{live_pid}-89abcdef")
    export_tmp = folder(tmp_path / f".model.tmp-{HOST}-{dead_pid()}-0123abcd")

    check_save_target(out)  # what train and distill call before training

    assert not new.exists() and not old.exists()
    assert running.exists() and export_tmp.exists() and (out / "manifest.json").exists()


def test_a_save_killed_between_its_renames_gets_the_earlier_model_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``out`` renamed into the old folder, the new build not yet renamed to ``out``:
    the earlier model exists only in the old folder, and goes back, not away."""
    old = folder(tmp_path / f".model.old-{HOST}-{dead_pid()}-4567cdef")
    (old / "model").mkdir()
    (old / "model" / "manifest.json").write_text('{"earlier": true}')
    new = folder(tmp_path / f".model.new-{HOST}-{dead_pid()}-0123abcd")

    with caplog.at_level(logging.WARNING, logger="guardrail_dro.leftovers"):
        check_save_target(tmp_path / "model")

    assert (tmp_path / "model" / "manifest.json").read_text() == '{"earlier": true}'
    assert not old.exists() and not new.exists()
    assert any(line.startswith(f"restored {tmp_path / 'model'}") for line in caplog.messages)


def test_a_signal_as_the_folder_is_made_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM (SystemExit through the CLI's handler) or Ctrl-C that arrives during the
    ``mkdir`` is raised as the call returns: the folder exists, its caller never got it
    to clean up. One export SIGTERM in 11 left its folder so."""
    real_mkdir = os.mkdir

    def interrupted_mkdir(path, mode=0o777, **kwargs):
        real_mkdir(path, mode, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "mkdir", interrupted_mkdir)
    with pytest.raises(KeyboardInterrupt):
        new_folder(tmp_path, ".g.tmp-")
    assert list(tmp_path.iterdir()) == []


def test_a_save_sigkilled_mid_swap_is_rolled_back_by_the_next_writer(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A real save, killed right after it moved the earlier model into its old folder:
    that folder names the dead saver, and the next writer puts the earlier model back."""
    import shutil

    out = Path(shutil.copytree(tiny_model_dir, tmp_path / "m"))
    earlier = out.stat().st_ino
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from guardrail_dro.train.modeldir import TrainedModel\n"
        "model = TrainedModel.load(sys.argv[1])\n"
        "rename = Path.rename\n"
        "def rename_then_die(self, target):\n"
        "    rename(self, target)\n"
        "    if Path(target).name == 'model':  # --out moved aside, the new one not in yet\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "Path.rename = rename_then_die\n"
        "model.save(sys.argv[2])\n"
    )
    saver = subprocess.Popen([sys.executable, "-c", script, str(out), str(out)])
    assert saver.wait(timeout=300) == -signal.SIGKILL and not out.exists()
    left = sorted(p.name for p in tmp_path.iterdir())
    owner = f"{HOST}-{saver.pid}"
    assert [re.sub(r"-[0-9a-f]{8}$", "", n) for n in left] == [f".m.new-{owner}", f".m.old-{owner}"]

    check_save_target(out)  # what the next train or distill to --out calls first

    assert out.stat().st_ino == earlier and sorted(os.listdir(tmp_path)) == ["m"]
    TrainedModel.load(out)  # whole, every checksum verified


def test_a_folder_left_alone_is_named_once_per_process(
    tmp_path: Path, live_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    """``train`` sweeps its output when it starts and again when it saves: the folder it
    leaves alone was named twice."""
    live = folder(tmp_path / f".model.new-{HOST}-{live_pid}-4567cdef")
    with caplog.at_level(logging.WARNING, logger="guardrail_dro.leftovers"):
        first = sweep_leftovers(tmp_path / "model", ("new", "old"))
        second = sweep_leftovers(tmp_path / "model", ("new", "old"))
    assert [x.action for x in first + second] == ["left alone", "left alone"]
    assert live.exists() and len(caplog.messages) == 1
