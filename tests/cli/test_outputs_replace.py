"""Final outputs are written whole or not at all (``outputs.replace_file``).

Five writers had their own temporary-file-and-rename; three used a fixed temporary name
that a failed write left behind, and two saves into one folder at once shared it; one
JSONL was written in place. A full disk here is real (``RLIMIT_FSIZE`` in a child
process: the write fails with EFBIG partway), and so are the processes whose pids name
the temporary files' owners.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.leftovers import owner_tag, sweep_leftovers, sweep_temp_files
from guardrail_dro.outputs import replace_file, replace_text
from tests.test_leftovers import dead_pid

HOST = owner_tag().rsplit("-", 1)[0]
SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX modes and rlimits")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def umask() -> Iterator[int]:
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def dataset(prefix: str, n: int, first: type[Item] = Item) -> AnnotatedDataset:
    items = [
        (first if i == 0 else Item)(
            item_id=f"{prefix}{i}",
            text=f"{prefix} text number {i}",
            annotations=(Annotation(annotator="a", label="toxic" if i % 2 else "safe"),),
        )
        for i in range(n)
    ]
    return AnnotatedDataset(items, SCHEMA)


# ---- the helper ------------------------------------------------------------------------


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=repr)
def test_a_write_that_fails_midway_keeps_the_old_file_and_no_temp(
    error: BaseException, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    out.write_text("old, whole")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text('{"half": ')
        raise error

    with pytest.raises(type(error)):
        replace_file(out, half_then_fail)
    assert snapshot(tmp_path) == {"report.json": hashlib.sha256(b"old, whole").hexdigest()}


def test_a_write_makes_missing_folders_and_replaces_the_file(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "labels.txt"
    replace_text(out, "safe\ntoxic\n")
    replace_text(out, "safe\n")
    assert out.read_text(encoding="utf-8") == "safe\n"
    assert [p.name for p in out.parent.iterdir()] == ["labels.txt"]


def test_two_writes_of_one_file_at_once_do_not_collide(tmp_path: Path) -> None:
    """Both are mid-write at the same moment (a barrier inside ``write``); each has its own
    temporary file, so the result is one of the two, whole, and nothing is left over."""
    out = tmp_path / "run.json"
    both_open = threading.Barrier(2, timeout=60)  # a deadlock guard, not a timing check
    texts = {"a": "a" * 50_000, "b": "b" * 70_000}
    errors: list[BaseException] = []

    def save(text: str) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8") as f:
                f.write(text[:1000])
                f.flush()
                both_open.wait()
                f.write(text[1000:])

        try:
            replace_file(out, write)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(t,)) for t in texts.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert out.read_text(encoding="utf-8") in texts.values()
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


@posix_only
def test_a_new_file_gets_the_mode_a_plain_write_gives(tmp_path: Path, umask: int) -> None:
    plain, replaced = tmp_path / "plain.json", tmp_path / "replaced.json"
    plain.write_text("{}")
    replace_text(replaced, "{}")
    assert stat.S_IMODE(replaced.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(replaced.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o444], ids=oct)
def test_an_existing_file_keeps_its_mode(mode: int, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "band.json"
    out.write_text("old")
    out.chmod(mode)
    replace_text(out, "new")
    assert out.read_text() == "new"
    assert stat.S_IMODE(out.stat().st_mode) == mode


# ---- the temporary files a killed writer left ------------------------------------------


def test_a_killed_writers_temp_is_removed_by_the_next_write(
    tmp_path: Path, live_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "model.onnx"
    script = (
        "import os, signal, sys\n"
        "from guardrail_dro.outputs import replace_file\n"
        "def write(tmp):\n"
        "    tmp.write_bytes(b'x' * 50_000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "replace_file(sys.argv[1], write)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(out)], check=False, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    [left] = tmp_path.iterdir()
    assert re.fullmatch(rf"\.model\.onnx\.tmp-{re.escape(HOST)}-\d+-[0-9a-f]{{8}}", left.name)

    running = tmp_path / f".model.onnx.tmp-{HOST}-{live_pid}-0123abcd"
    elsewhere = tmp_path / f".model.onnx.tmp-{HOST}x-{dead_pid()}-4567cdef"
    untouched = [
        tmp_path / f".other.onnx.tmp-{HOST}-{dead_pid()}-0123abcd",  # another output's
        tmp_path / ".model.onnx.tmp-mine",  # a user's
    ]
    for p in (running, elsewhere, *untouched):
        p.write_text("x")
    a_folder = tmp_path / f".model.onnx.tmp-{HOST}-{dead_pid()}-89abcdef"
    a_folder.mkdir()  # a build folder: sweep_leftovers', not this sweep's

    with caplog.at_level(logging.WARNING, logger="guardrail_dro.leftovers"):
        replace_file(out, lambda tmp: tmp.write_bytes(b"whole"))

    assert out.read_bytes() == b"whole" and not left.exists()
    assert all(p.exists() for p in (running, elsewhere, a_folder, *untouched))
    removed, named = caplog.messages  # the running writer's: not a word
    assert removed.startswith(f"removed {left} (50,000 bytes)") and "no longer running" in removed
    assert named.startswith(f"left alone: {elsewhere}") and f"host {HOST}x" in named
    # each sweep leaves the other's kind alone
    assert [x.path for x in sweep_temp_files(out)] == [elsewhere]
    assert [x.path for x in sweep_leftovers(out, ("tmp",))] == [a_folder]
    assert all(p.exists() for p in (running, elsewhere, *untouched))


# ---- the writers that use it -------------------------------------------------------------

_FULL_DISK = """
import errno, resource, signal, sys
from pathlib import Path
d = Path(sys.argv[1])
{setup}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, EFBIG
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, hard))
try:
    call()
except OSError as exc:
    sys.exit(0 if exc.errno == errno.EFBIG else f"not the full disk: {{exc!r}}")
sys.exit("the write did not reach the limit")
"""

SITES: dict[str, tuple[dict[str, str], str]] = {
    "bench_runs.save_run": (
        {"runs/m.seed0.json": "an earlier run\n"},
        "from guardrail_dro.train.bench_runs import FinishedRun, save_run\n"
        "from guardrail_dro.train.metrics import Metrics\n"
        "m = Metrics(n=1, accuracy=1.0, macro_f1=1.0)\n"
        "run = FinishedRun(key='k', method='m', seed=0, seconds=1.0, test=m, valid=m,\n"
        "                  unseen=m, notes=['a note'] * 500)\n"
        "call = lambda: save_run(d / 'runs' / 'm.seed0.json', run)\n",
    ),
    "merge._carry_failures": (
        {
            "a.jsonl.failures.jsonl": '{"item_id": "q", "outcome": "refused"}\n' * 200,
            "out.jsonl.failures.jsonl": "an earlier merge's\n",
        },
        "from guardrail_dro.cli.merge import _carry_failures\n"
        "call = lambda: _carry_failures([d / 'a.jsonl'], d / 'out.jsonl')\n",
    ),
    "items.save_jsonl": (
        {"data.jsonl": "an earlier dataset\n", "data.schema.json": "its schema\n"},
        "from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item\n"
        "from guardrail_dro.data.schema import LabelSchema\n"
        "votes = (Annotation(annotator='a', label='safe'),)\n"
        "items = [Item(item_id=f'q{i}', text='a text', annotations=votes) for i in range(200)]\n"
        "ds = AnnotatedDataset(items, LabelSchema(classes=('safe', 'toxic'), safe=('safe',)))\n"
        "call = lambda: ds.save_jsonl(d / 'data.jsonl')\n",
    ),
    "report.write_failures": (
        {"f.jsonl": "an earlier run's failures\n"},
        "from annotators.report import Failure, RunReport\n"
        "fails = [Failure(f'q{i}', 'a', 'refused', None, 'no') for i in range(200)]\n"
        "report = RunReport(annotators=['a'], items=200, failures=fails)\n"
        "call = lambda: report.write_failures(d / 'f.jsonl')\n",
    ),
    "modeldir.record_test_metrics": (
        {},
        "from guardrail_dro.train.modeldir import TrainedModel\n"
        "met = TrainedModel.load(d / 'model').manifest.valid_metrics\n"
        "call = lambda: TrainedModel.record_test_metrics(d / 'model', met)\n",
    ),
}


@posix_only
@pytest.mark.parametrize("site", list(SITES))
def test_a_full_disk_mid_write_leaves_every_file_as_it_was(
    site: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    files, setup = SITES[site]
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    if site.startswith("modeldir"):
        shutil.copytree(request.getfixturevalue("tiny_model_dir"), tmp_path / "model")
    before = snapshot(tmp_path)
    script = _FULL_DISK.format(setup=setup)
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert snapshot(tmp_path) == before  # the old files whole, no temporary file left


class _Paused(Item):
    """An item whose serialisation waits for the other save: both are then mid-write."""

    both_open: ClassVar[threading.Barrier | None] = None

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        if _Paused.both_open is not None:
            _Paused.both_open.wait()
        return super().model_dump(**kwargs)


def test_two_saves_of_one_dataset_file_at_once_do_not_collide(tmp_path: Path) -> None:
    """The fixed ``data.jsonl.tmp`` was shared: the second save's rename found it gone."""
    out = tmp_path / "data.jsonl"
    sets = [dataset("a", 30, _Paused), dataset("b", 50, _Paused)]
    errors: list[BaseException] = []

    def save(ds: AnnotatedDataset) -> None:
        try:
            ds.save_jsonl(out)
        except BaseException as exc:
            errors.append(exc)

    _Paused.both_open = threading.Barrier(2, timeout=60)  # a deadlock guard
    try:
        threads = [threading.Thread(target=save, args=(ds,)) for ds in sets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        _Paused.both_open = None
    assert errors == []
    ids = [line.split('"')[3] for line in out.read_text(encoding="utf-8").splitlines()]
    assert ids in ([f"a{i}" for i in range(30)], [f"b{i}" for i in range(50)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl", "data.schema.json"]


@posix_only
def test_a_stored_run_keeps_its_files_mode(tmp_path: Path, umask: int) -> None:
    """A runs folder made private (0600) stayed so only until the next save."""
    from guardrail_dro.train.bench_runs import FinishedRun, load_run, save_run
    from guardrail_dro.train.metrics import Metrics

    m = Metrics(n=1, accuracy=1.0, macro_f1=1.0)
    run = FinishedRun(key="k", method="m", seed=0, seconds=1.0, test=m, valid=m, unseen=m)
    path = tmp_path / "runs" / "m.seed0.json"
    save_run(path, run)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o600)
    save_run(path, run.model_copy(update={"seconds": 2.0}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_run(path, "k", "m") == run.model_copy(update={"seconds": 2.0})
    assert [p.name for p in path.parent.iterdir()] == ["m.seed0.json"]
