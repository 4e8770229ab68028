"""``guardrail-dro annotate`` as users run it: the console script in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from annotators import OpenAIAnnotator
from annotators.runner import key_for
from annotators.testing import FakeLLMServer, keyword_handler
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY

BIN = Path(sys.executable).parent
CLI = str(BIN / "guardrail-dro")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL",
                        "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN")}
    env.update(extra)
    return env


def _csv(path: Path, texts: list[str]) -> Path:
    path.write_text("question\n" + "".join(f'"{t}"\n' for t in texts), encoding="utf-8")
    return path


def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "annotate", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_help_teaches() -> None:
    out = subprocess.run([CLI, "annotate", "--help"], env=_env(COLUMNS="120"),
                         capture_output=True, text=True, check=True).stdout
    for needle in ("--annotator", "openai:gpt-4o-mini", "OPENAI_API_KEY", "--dry-run",
                   "--batch", "--text-col", "--schema", "--base-url", "resumes", "Examples",
                   "estimated cost", "batch prices"):
        assert needle in " ".join(out.split()).replace("│ ", ""), needle


def test_missing_key_is_one_clear_error(tmp_path: Path) -> None:
    data = _csv(tmp_path / "in.csv", ["hello", "you idiot"])
    r = _run(["--data", str(data), "--out", str(tmp_path / "o.jsonl"), "--labels", "safe,toxic",
              "--annotator", "anthropic:claude-haiku-4-5"], _env())
    assert r.returncode == 2
    assert "ANTHROPIC_API_KEY is not set" in r.stderr and "Traceback" not in r.stderr
    r = _run(["--data", str(data), "--out", str(tmp_path / "o.jsonl"), "--labels", "safe,toxic",
              "--annotator", "mistral:large"], _env())
    assert r.returncode == 2 and "PROVIDER:MODEL" in r.stderr


def test_a_base_url_that_is_no_url_is_named(tmp_path: Path) -> None:
    """`--base-url $URL --dry-run` with URL unset made "--dry-run" the URL: no dry run,
    and a real run against a server named "--dry-run" (each call failing after its
    retries) instead of one clear error."""
    data = _csv(tmp_path / "in.csv", ["hello"])
    r = _run(["--data", str(data), "--out", str(tmp_path / "o.jsonl"), "--labels",
              "safe,toxic", "--annotator", "openai:gpt-4o-mini", "--base-url", "--dry-run"],
             _env(OPENAI_API_KEY=KEY))
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "--base-url '--dry-run' is not a URL" in said, r.stderr
    assert not (tmp_path / "o.jsonl").exists()


def _cost(stderr: str) -> float:
    return float(stderr.split("estimated cost")[1].split("$")[1].split()[0])


def test_dry_run_needs_no_key_makes_no_call_and_writes_nothing(tmp_path: Path) -> None:
    data = _csv(tmp_path / "in.csv", ["hello", "you idiot"])
    prices = tmp_path / "prices.json"  # a dollar a token: the printed cost is precise
    prices.write_text('{"gpt-4o-mini": [1000000, 1000000]}')
    args = ["--data", str(data), "--out", str(tmp_path / "o.jsonl"), "--labels",
            "safe,toxic", "--annotator", "openai:gpt-4o-mini", "--dry-run",
            "--prices", str(prices)]
    with FakeLLMServer(keyword_handler) as srv:
        r = _run([*args, "--base-url", srv.openai_base_url], _env())
        batch = _run([*args, "--base-url", srv.openai_base_url, "--batch"], _env())
        assert len(srv.received) == 0
    assert r.returncode == 0, r.stderr
    assert "2 request(s) to make" in r.stderr and "estimated cost $" in r.stderr
    # no output, and no cache file either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "prices.json"]
    assert batch.returncode == 0, batch.stderr
    assert "at batch prices" in batch.stderr
    assert _cost(batch.stderr) == pytest.approx(_cost(r.stderr) / 2, rel=0.01)


def test_two_providers_end_to_end_with_failures_listed(tmp_path: Path) -> None:
    texts = ["have a nice day", "you idiot", "how do I build a bomb"]
    data = _csv(tmp_path / "in.csv", texts)
    out = tmp_path / "out.jsonl"
    with FakeLLMServer(keyword_handler) as srv:
        r = _run(["--data", str(data), "--text-col", "question", "--out", str(out),
                  "--labels", "safe,toxic", "--safe", "safe",
                  "--annotator", "openai:gpt-4o-mini", "--annotator", "anthropic:claude-x",
                  "--base-url", srv.openai_base_url, "--anthropic-base-url",
                  srv.anthropic_base_url, "--no-progress"],
                 _env(OPENAI_API_KEY=KEY, ANTHROPIC_API_KEY=KEY))
    assert r.returncode == 0, r.stderr
    assert KEY not in r.stderr + r.stdout
    rows = _lines(out)
    assert [len(row.get("annotations", [])) for row in rows] == [2, 2, 0]
    ann = rows[1]["annotations"][0]
    assert ann["annotator"] == "openai:gpt-4o-mini" and ann["kind"] == "llm"
    assert ann["label"] == "toxic" and ann["rationale"] and ann["model"] == "gpt-4o-mini"
    assert "1 refused" in r.stderr
    fails = _lines(tmp_path / "out.jsonl.failures.jsonl")
    assert {(f["item_id"], f["annotator"], f["outcome"]) for f in fails} == {
        ("3", "openai:gpt-4o-mini", "refused"), ("3", "anthropic:claude-x", "refused")}
    assert json.loads((tmp_path / "out.schema.json").read_text())["safe"] == ["safe"]


def _as_in_a_terminal() -> None:
    """SIGINT's default disposition in the child, as a terminal gives it: a test run in
    the background (CI, nohup) hands its children SIGINT ignored, and Python then keeps
    it ignored, so Ctrl-C (and this test's SIGINT) would never reach the CLI."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _in_the_background() -> None:
    """SIGINT ignored in the child, as ``nohup``, ``cmd &`` in a script and some job
    schedulers start it (Python then keeps SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _halfway(srv: FakeLLMServer, args: list[str], paid: int, sig: int,
             preexec: Callable[[], None] = _as_in_a_terminal) -> str:
    """Start ``annotate`` against ``srv``, send ``sig`` once ``paid`` calls are billed,
    and return its stderr once it has exited."""
    proc = subprocess.Popen([CLI, "annotate", *args, "--base-url", srv.openai_base_url],
                            env=_env(OPENAI_API_KEY=KEY), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
    deadline = time.monotonic() + 30
    while srv.paid.total() < paid and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=20)
    want = {signal.SIGKILL: -sig, signal.SIGTERM: 143}.get(sig, 130)
    assert proc.returncode == want, stderr
    return stderr


def _cached_texts(cache: Path, texts: list[str], srv: FakeLLMServer) -> set[str]:
    """The texts whose answer is in ``cache``, keyed as the CLI's defaults key them."""
    with sqlite3.connect(cache) as db:
        cached_keys = {row[0] for row in db.execute("SELECT key FROM results")}
    probe = OpenAIAnnotator("gpt-fake", api_key="x", base_url=srv.openai_base_url)
    schema = LabelSchema(classes=("safe", "toxic"))
    return {t for t in texts if key_for(probe, t, schema) in cached_keys}


def _forty(tmp_path: Path, concurrency: int) -> tuple[list[str], Path, Path, list[str]]:
    """Forty texts (every third toxic) and the annotate arguments for them: (texts, out,
    cache, args)."""
    texts = [f"item number {i} is {'stupid' if i % 3 == 0 else 'fine'}" for i in range(40)]
    out, cache = tmp_path / "out.jsonl", tmp_path / "cache.sqlite"
    args = ["--data", str(_csv(tmp_path / "in.csv", texts)), "--out", str(out), "--labels",
            "safe,toxic", "--annotator", "openai:gpt-fake", "--cache", str(cache),
            "--concurrency", str(concurrency), "--no-progress"]  # fmt: skip
    return texts, out, cache, args


def test_kill_minus_9_halfway_then_resume_pays_once(tmp_path: Path) -> None:
    texts, out, cache, args = _forty(tmp_path, 2)
    with FakeLLMServer(keyword_handler, latency=0.05) as srv:
        _halfway(srv, args, 15, signal.SIGKILL)
        assert not out.exists()

        finished = _cached_texts(cache, texts, srv)
        assert 10 <= len(finished) < len(texts), "the kill did not land halfway"

        r = _run([*args, "--base-url", srv.openai_base_url], _env(OPENAI_API_KEY=KEY))
        assert r.returncode == 0, r.stderr

    rows = _lines(out)
    assert [row["text"] for row in rows] == texts
    for row in rows:
        (ann,) = row["annotations"]  # exactly once per item
        assert ann["annotator"] == "openai:gpt-fake"
        assert ann["label"] == ("toxic" if "stupid" in row["text"] else "safe")
    for t in finished:
        assert srv.paid[t] == 1, f"paid twice for {t!r}, finished before the kill"
    # an item in flight at the kill may have been paid without being cached: at most twice
    assert max(srv.paid[t] for t in texts) <= 2
    assert f"{len(finished)} answer(s) from the cache" in r.stderr


@pytest.mark.parametrize(("sig", "name"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stop_waits_for_the_calls_in_flight_so_none_is_paid_twice(
    tmp_path: Path, sig: int, name: str
) -> None:
    """Ctrl-C, and SIGTERM (a container or scheduler stopping the job, which killed the
    run before: the calls in flight were paid and lost, then asked and paid again on
    the resume, after a traceback), drain the calls in flight into the cache."""
    texts, out, cache, args = _forty(tmp_path, 4)
    with FakeLLMServer(keyword_handler, latency=0.3) as srv:
        stderr = _halfway(srv, args, 8, sig)  # four in flight then: paid
        assert not out.exists() and "Traceback" not in stderr
        assert "Interrupted: asking no new item" in stderr
        assert f"stopped ({name}): every answer received is in {cache}" in stderr
        time.sleep(0.5)  # a call cut off would still be paid by now (latency 0.3 s)
        paid = {t for t in texts if srv.paid[t]}
        assert 8 <= len(paid) < len(texts), "the signal did not land halfway"
        assert _cached_texts(cache, texts, srv) == paid

        r = _run([*args, "--base-url", srv.openai_base_url], _env(OPENAI_API_KEY=KEY))
        assert r.returncode == 0, r.stderr
    assert all(srv.paid[t] == 1 for t in texts), "a call was paid twice"
    assert len(_lines(out)) == len(texts)


def test_sigterm_drains_a_run_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A run started in the background (``nohup``, ``cmd &`` in a script) has SIGINT
    ignored. Its SIGTERM killed it at once, silently (exit 143, no message): the rule
    for SIGINT's handler switched the SIGTERM drain off too, and the calls in flight
    were paid, lost, and paid again on the resume."""
    texts, _out, cache, args = _forty(tmp_path, 4)
    with FakeLLMServer(keyword_handler, latency=0.3) as srv:
        stderr = _halfway(srv, args, 8, signal.SIGTERM, preexec=_in_the_background)
        assert "Interrupted: asking no new item" in stderr
        assert f"stopped (SIGTERM): every answer received is in {cache}" in stderr
        time.sleep(0.5)  # a call cut off would still be paid by now (latency 0.3 s)
        paid = {t for t in texts if srv.paid[t]}
        assert 8 <= len(paid) < len(texts), "the signal did not land halfway"
        assert _cached_texts(cache, texts, srv) == paid


def test_ctrl_c_sends_nothing_more_from_workers_waiting_for_their_rate_limit_turn(
    tmp_path: Path,
) -> None:
    texts = [f"item {i}" for i in range(10)]
    cache = tmp_path / "cache.sqlite"
    args = ["--data", str(_csv(tmp_path / "in.csv", texts)), "--out", str(tmp_path / "o.jsonl"),
            "--labels", "safe,toxic", "--annotator", "openai:gpt-fake", "--cache", str(cache),
            "--concurrency", "4", "--rpm", "3", "--no-progress"]  # fmt: skip
    with FakeLLMServer(keyword_handler, latency=0.3) as srv:
        # three requests go at once (a minute's burst); the fourth waits ~20 s for its turn
        _halfway(srv, args, 3, signal.SIGINT)
        time.sleep(0.5)
        assert srv.paid.total() == 3 and len(_cached_texts(cache, texts, srv)) == 3


def test_a_second_ctrl_c_stops_without_waiting(tmp_path: Path) -> None:
    data = _csv(tmp_path / "in.csv", [f"item {i}" for i in range(8)])
    args = ["--data", str(data), "--out", str(tmp_path / "out.jsonl"), "--labels",
            "safe,toxic", "--annotator", "openai:gpt-fake", "--concurrency", "2",
            "--no-progress"]
    with FakeLLMServer(keyword_handler, latency=30) as srv:  # the calls never finish here
        args += ["--base-url", srv.openai_base_url]
        proc = subprocess.Popen([CLI, "annotate", *args], env=_env(OPENAI_API_KEY=KEY),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_as_in_a_terminal)  # fmt: skip
        deadline = time.monotonic() + 30
        while srv.calls.total() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None, "the first Ctrl-C should wait for the calls in flight"
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr


def test_import_loads_no_sdk() -> None:
    code = ("import sys, annotators, guardrail_dro.cli.annotate, annotators.testing; "
            "bad = [m for m in ('openai', 'anthropic', 'tenacity') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.asyncio
async def test_fake_server_runs_as_a_module() -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "annotators.testing", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "fake LLM server on" in proc.stdout.readline()
        from annotators import label_text

        schema = LabelSchema(classes=("safe", "toxic"))
        ann = OpenAIAnnotator("m", api_key="k", base_url=f"http://127.0.0.1:{port}/v1")
        res = await label_text(ann, "you idiot", schema)
        await ann.aclose()
        assert (res.outcome, res.label) == ("labelled", "toxic")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats") as resp:
            stats = json.load(resp)
        assert stats["calls"] == {"you idiot": 1}
        assert stats["endpoints"] == {"chat.completions": 1}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_batch_flag_stops_waiting_then_resumes_the_same_job(tmp_path: Path) -> None:
    """--max-wait passing with jobs still running exits 5, not 2: 2 is what --help gives
    to bad input and to errors that repeat, so a script that submits and comes back
    later could not tell "come back later" from "fix the command"."""
    texts = ["have a nice day", "you idiot"]
    data = _csv(tmp_path / "in.csv", texts)
    out = tmp_path / "out.jsonl"
    with FakeLLMServer(keyword_handler) as srv:
        args = ["--data", str(data), "--out", str(out), "--labels", "safe,toxic",
                "--annotator", "anthropic:claude-x", "--anthropic-base-url",
                srv.anthropic_base_url, "--batch", "--poll-interval", "0.01"]
        env = _env(ANTHROPIC_API_KEY=KEY)
        srv.hold_batches = True
        r = _run([*args, "--max-wait", "0.2"], env)
        assert r.returncode == 5 and "still running" in r.stderr, r.stderr
        assert "error:" not in r.stderr
        assert not out.exists()
        srv.hold_batches = False
        r = _run(args, env)
        assert r.returncode == 0, r.stderr
        assert srv.endpoints["message_batches.create"] == 1
    assert [row["annotations"][0]["label"] for row in _lines(out)] == ["safe", "toxic"]


@pytest.mark.parametrize("provider", ["openai"])  # anthropic: in-process, test_ann_batch
def test_kill_minus_9_right_after_batch_create_then_rerun_creates_one_job(
        provider: str, tmp_path: Path) -> None:
    from annotators.testing import Fault

    texts = ["have a nice day", "you idiot", "the weather is fine"]
    data = _csv(tmp_path / "in.csv", texts)
    out = tmp_path / "out.jsonl"
    create = {"openai": "batches.create", "anthropic": "message_batches.create"}[provider]
    with FakeLLMServer(keyword_handler) as srv:
        # The job is created, then the reply is held: the process dies before it records
        # the job id.
        srv.add_fault(Fault("batch_create_timeout", delay=5.0))
        url = srv.openai_base_url if provider == "openai" else srv.anthropic_base_url
        flag = "--base-url" if provider == "openai" else "--anthropic-base-url"
        args = ["--data", str(data), "--out", str(out), "--labels", "safe,toxic",
                "--annotator", f"{provider}:model-x", flag, url, "--batch",
                "--poll-interval", "0.01", "--no-progress"]
        env = _env(OPENAI_API_KEY=KEY, ANTHROPIC_API_KEY=KEY)
        proc = subprocess.Popen([CLI, "annotate", *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while srv.endpoints[create] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert srv.endpoints[create] == 1

        r = _run(args, env)
        assert r.returncode == 0, r.stderr
        assert srv.endpoints[create] == 1  # adopted, not created again
        assert all(srv.batch_paid[t] == 1 for t in texts)
    assert [row["annotations"][0]["label"] for row in _lines(out)] == ["safe", "toxic", "safe"]
