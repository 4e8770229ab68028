"""A first Ctrl-C while a batch answer's live repair call sleeps in a retry backoff.

The batch path judged each collected answer without the run's stop, so the repair call
of an invalid answer, answered 429 ``Retry-After: 60``, held the first Ctrl-C for that
minute and then sent its retry. Now it does what the live path does: no new request,
the invalid answer (paid for) is cached as invalid, unrepaired, never an error and
never lost; ``--reask invalid`` asks again. The real OpenAI SDK talks to the fake server
over HTTP; the signal is real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from annotators import OpenAIAnnotator
from annotators.base import AnnotationResult
from annotators.cache import AnnotationCache, key_for
from annotators.testing import FakeLLMServer, Fault, keyword_handler
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY
from tests.annotators.test_ann_cli import CLI, _as_in_a_terminal, _csv, _env, _run

BACKOFF = 60.0  # the server's Retry-After, under the default cap (120 s): obeyed in full
IDIOT = "you idiot"


def _cached(cache: Path, srv: FakeLLMServer, text: str) -> AnnotationResult | None:
    probe = OpenAIAnnotator("gpt-fake", api_key="x", base_url=srv.openai_base_url)
    db = AnnotationCache(cache)
    try:
        return db.get(key_for(probe, text, LabelSchema(classes=("safe", "toxic"))))
    finally:
        db.close()


def test_a_stop_during_a_repair_calls_backoff_keeps_the_answer_invalid(tmp_path: Path) -> None:
    texts = ["have a nice day", IDIOT]
    cache = tmp_path / "c.sqlite"
    with FakeLLMServer(keyword_handler) as srv:
        args = ["--data", str(_csv(tmp_path / "in.csv", texts)), "--out", str(tmp_path / "o.jsonl"),
                "--labels", "safe,toxic", "--annotator", "openai:gpt-fake", "--batch",
                "--base-url", srv.openai_base_url, "--poll-interval", "0.05", "--cache", str(cache),
                "--no-agreement"]  # fmt: skip
        srv.add_fault(Fault("malformed", match=IDIOT, times=1))  # the batch answer: invalid
        srv.add_fault(Fault("rate_limit", match=IDIOT, times=1, retry_after=BACKOFF))  # repair
        proc = subprocess.Popen([CLI, "annotate", *args], env=_env(OPENAI_API_KEY=KEY),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_as_in_a_terminal)  # fmt: skip
        deadline = time.monotonic() + 30
        while srv.calls[IDIOT] < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.3)  # the 429 is back: the repair call sleeps in its backoff
        assert srv.calls[IDIOT] == 1 and srv.batch_paid[IDIOT] == 1, "not in backoff yet"
        os.kill(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=BACKOFF * 2)
        took = time.monotonic() - t0
        assert proc.returncode == 130 and "Traceback" not in stderr, stderr
        assert took < BACKOFF / 4, f"the first Ctrl-C waited {took:.1f} s of a {BACKOFF} s backoff"
        assert srv.calls[IDIOT] == 1, "the repair call was retried after the Ctrl-C"
        got = _cached(cache, srv, IDIOT)
        assert got is not None and got.outcome == "invalid", got  # paid for: kept
        assert got.error is not None and "not repaired (the run was stopped)" in got.error

        r = _run(args, _env(OPENAI_API_KEY=KEY))  # resumed: the invalid answer stands
        assert r.returncode == 0, r.stderr
        assert srv.calls[IDIOT] == 1 and srv.endpoints["batches.create"] == 1
        r = _run([*args, "--reask", "invalid"], _env(OPENAI_API_KEY=KEY))
        assert r.returncode == 0, r.stderr
        assert srv.batch_paid[IDIOT] == 2  # asked again, in a batch
        got = _cached(cache, srv, IDIOT)
        assert got is not None and got.outcome == "labelled" and got.label == "toxic"
    assert srv.batch_paid["have a nice day"] == 1
