"""Stopping a ``--batch`` run, and what its resume reports.

SIGTERM killed a batch run silently (exit 143, no line); the stop note said "Ctrl-C
again" after a SIGTERM too (under ``nohup`` Ctrl-C is ignored); and a resume that
collected the jobs an earlier, killed run submitted reported them as calls it made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from annotators import BatchPendingError, OpenAIAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, keyword_handler
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY, TEXTS, make_dataset
from tests.annotators.test_ann_cli import (
    CLI,
    _as_in_a_terminal,
    _csv,
    _env,
    _forty,
    _halfway,
    _in_the_background,
    _run,
)


def _wait_for(check: Callable[[], bool], proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not check() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("sig", "name", "preexec"),
    [
        (signal.SIGTERM, "SIGTERM", _in_the_background),
        (signal.SIGINT, "Ctrl-C", _as_in_a_terminal),
    ],
    ids=["sigterm-nohup", "ctrl-c"],
)
def test_a_stopped_batch_run_says_its_jobs_keep_running_and_resumes_them(
    tmp_path: Path, sig: int, name: str, preexec: Callable[[], None]
) -> None:
    texts = ["have a nice day", "you idiot"]
    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(keyword_handler) as srv:
        args = [
            "--data",
            str(_csv(tmp_path / "in.csv", texts)),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--labels",
            "safe,toxic",
            "--annotator",
            "openai:gpt-fake",
            "--base-url",
            srv.openai_base_url,
            "--batch",
            "--poll-interval",
            "60",
            "--cache",
            str(cache),
            "--no-agreement",
        ]
        srv.hold_batches = True
        proc = subprocess.Popen(
            [CLI, "annotate", *args],
            env=_env(OPENAI_API_KEY=KEY),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
        )
        _wait_for(lambda: srv.endpoints["batches.retrieve"] >= 1, proc)
        os.kill(proc.pid, sig)  # while it sleeps out its 60 s poll interval
        _, stderr = proc.communicate(timeout=20)
        assert proc.returncode == (143 if sig == signal.SIGTERM else 130), stderr
        said = " ".join(stderr.split())
        assert "Interrupted: submitting no new batch job" in said, said
        assert f"{'SIGTERM' if name == 'SIGTERM' else 'Ctrl-C'} again to stop now" in said
        assert (
            f"stopped ({name}): the submitted batch job(s) keep running at the provider" in said
            and "the same command collects them" in said
        )
        assert "Traceback" not in stderr

        srv.hold_batches = False
        r = _run([*args, "--poll-interval", "0.01"], _env(OPENAI_API_KEY=KEY))
        assert r.returncode == 0, r.stderr
        assert srv.endpoints["batches.create"] == 1 and srv.batch_paid.total() == 2
    said = " ".join(r.stderr.split())
    assert "0 call(s) made, 0 answer(s) from the cache" in said, said
    assert (
        "batch: 0 request(s) submitted by this run, 2 result(s) collected (2 from "
        "job(s) an earlier run submitted), 0 live repair call(s)"
    ) in said


def test_the_live_stop_note_names_sigterm_after_a_sigterm(tmp_path: Path) -> None:
    """Under ``nohup`` Ctrl-C is ignored: the note told the user to press it again."""
    _texts, _out, _cache, args = _forty(tmp_path, 4)
    with FakeLLMServer(keyword_handler, latency=0.3) as srv:
        stderr = _halfway(srv, args, 8, signal.SIGTERM, preexec=_in_the_background)
    assert "SIGTERM again to stop now" in stderr and "Ctrl-C again" not in stderr


def test_a_batch_resume_tells_collected_from_submitted(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    ds, db = make_dataset(TEXTS, schema), tmp_path / "c.sqlite"
    ann = OpenAIAnnotator("gpt-fake", api_key=KEY, base_url=server.openai_base_url)
    kw = dict(cache=db, policy=fast, progress=False, poll_interval=0.01)
    server.hold_batches = True
    with pytest.raises(BatchPendingError):
        batch_annotate_with_report(ds, [ann], max_wait=0.05, **kw)
    server.hold_batches = False
    rep = batch_annotate_with_report(ds, [ann], **kw).report
    assert (rep.calls, rep.submitted) == (0, 0)
    assert rep.collected == rep.collected_earlier == len(TEXTS)

    fresh = batch_annotate_with_report(ds, [ann], **{**kw, "cache": tmp_path / "d.sqlite"})
    rep = fresh.report
    assert (rep.calls, rep.submitted, rep.collected) == (len(TEXTS),) * 3
    assert rep.collected_earlier == 0
    assert (
        f"batch: {len(TEXTS)} request(s) submitted by this run, {len(TEXTS)} result(s) "
        "collected, 0 live repair call(s)" in rep.summary_lines()
    )
