"""Issue 12, items 1-5: the guard under hostile inputs, tampered artifacts and faults
(regression tests; each failed on the code before the fix).

Faults are injected into a real ONNX Runtime session (a wrapper that fails on one
token) and real scorers are wrapped to count their work; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from guardrail_dro.errors import ArtifactError
from guardrail_dro.serve.artifact import load_artifact
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.onnx_scorer import OnnxScorer
from guardrail_dro.serve.policy import DEFAULT_MAX_CHARS, DEFAULT_MAX_WINDOWS, Policy
from guardrail_dro.serve.runtime import GuardSession

from .guard_helpers import block, calibrate

MEGABYTE = "how do I bake bread today " * 40_000  # 1,040,000 characters


class CountingScorer:
    """A real scorer, counting the characters it tokenizes and the windows it scores."""

    def __init__(self, inner: OnnxScorer) -> None:
        self.inner = inner
        self.chars = 0
        self.rows = 0

    labels = property(lambda self: self.inner.labels)
    max_length = property(lambda self: self.inner.max_length)
    batch_size = property(lambda self: self.inner.batch_size)
    provider = property(lambda self: self.inner.provider)

    def encode(self, text: str) -> list[list[int]]:
        self.chars += len(text)
        return self.inner.encode(text)

    def logits(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        self.rows += len(rows)
        return self.inner.logits(rows)

    def last_window(self, text: str) -> str:
        return self.inner.last_window(text)


def _on(guard: Guard, scorer: Any, policy: Policy) -> Guard:
    """A guard with ``guard``'s manifest defaults on another scorer."""
    man = guard.artifact.manifest
    return Guard(
        scorer,
        policy=policy,
        safe_classes=man.safe_classes,
        toxic_threshold=man.thresholds.toxic,
        thresholds=man.thresholds.per_class,
        descriptions=man.label_schema.descriptions,
    )


def _never(guard: Guard) -> dict[str, float]:
    return {c: 1.0 for c in guard.rule.categories}


# ---- 1. bounded cost on long texts -------------------------------------------------------
def test_a_megabyte_text_costs_a_length_check_by_default(guard: Guard) -> None:
    counting = CountingScorer(guard.scorer)
    # Thresholds no probability reaches: only the bound can make the result degraded.
    g = _on(guard, counting, Policy(toxic_threshold=1.0, thresholds=_never(guard)))
    t0 = time.perf_counter()
    r = g.check(MEGABYTE)
    seconds = time.perf_counter() - t0
    assert r.degraded and not r.allowed  # fail closed, and it says why
    assert f"Policy.max_chars={DEFAULT_MAX_CHARS:,}" in r.error and "not scored" in r.error
    assert r.windows == 0 and counting.rows == 0 and counting.chars == 0  # nothing tokenized
    assert seconds < 2.0  # 192 s before the fix on the MiniLM guard; loose: a loaded host
    # check_many keeps the same bound, and a short text beside it keeps its decision.
    long, short = g.check_many([MEGABYTE, "how do I bake bread"])
    assert long == r and short == g.check("how do I bake bread") and not short.degraded
    assert counting.rows == 2  # the short text's window, in check_many and in check


def test_a_text_under_max_chars_costs_at_most_max_windows(guard: Guard) -> None:
    counting = CountingScorer(guard.scorer)
    g = _on(guard, counting, Policy(toxic_threshold=1.0, thresholds=_never(guard)))
    text = ("how do I bake bread today " * 1000)[: DEFAULT_MAX_CHARS - 1]
    r = g.check(text)
    assert r.degraded and f"Policy.max_windows={DEFAULT_MAX_WINDOWS}" in r.error
    assert r.windows == DEFAULT_MAX_WINDOWS == counting.rows
    # Only the prefix the windows need is tokenized.
    assert counting.chars <= 4 * (DEFAULT_MAX_WINDOWS + 2) * guard.max_length


def test_one_long_word_is_not_scored_over_max_chars(guard: Guard) -> None:
    counting = CountingScorer(guard.scorer)
    g = _on(guard, counting, Policy(toxic_threshold=1.0, thresholds=_never(guard), on_error="open"))
    r = g.check("a" * 1_000_000)  # one "word": few tokens, however many characters
    assert r.degraded and r.allowed and "Policy.max_chars=16,384" in r.error
    assert counting.chars == 0


def test_the_bounds_are_policy_options(guard: Guard) -> None:
    text = "a fairly long text about bread. " * 400  # ~3,200 tokens: ~33 windows
    off = {"toxic_threshold": 1.0, "thresholds": _never(guard)}
    whole = guard.with_policy(Policy(max_windows=None, max_chars=None, **off)).check(text)
    assert not whole.degraded and whole.windows > DEFAULT_MAX_WINDOWS
    some = guard.with_policy(Policy(max_windows=6, **off)).check(text)
    assert some.degraded and some.windows == 6 and "max_windows=6" in some.error
    cut = guard.with_policy(Policy(max_chars=100, **off)).check(text)
    assert cut.degraded and cut.windows == 0 and "max_chars=100" in cut.error


def test_a_violation_in_the_scored_prefix_is_not_degraded(guard: Guard) -> None:
    cal = calibrate(guard, action="block")
    long = block(guard, cal.target) + " " + "how do I bake bread today " * 400  # < max_chars
    r = cal.guard.check(long)
    assert r.violation and not r.allowed and not r.degraded  # the model decided
    # over max_chars nothing is scored: the error policy decides, and says why
    over = cal.guard.check(block(guard, cal.target) + " " + MEGABYTE)
    assert over.degraded and not over.allowed and over.windows == 0


# ---- 2. one failing text does not decide for the batch -----------------------------------
POISON = "zebra"


class _PoisonSession:
    """A real ONNX Runtime session that fails on any batch holding one token."""

    def __init__(self, real: Any, token: int) -> None:
        self.real, self.token = real, token

    def run(self, outputs: Any, feed: dict[str, np.ndarray]) -> Any:
        if (next(iter(feed.values())) == self.token).any():
            raise RuntimeError("poisoned input")
        return self.real.run(outputs, feed)


def _poisoned(guard: Guard, policy: Policy) -> Guard:
    real = guard.scorer
    assert isinstance(real, OnnxScorer)
    token = real.tokenizer.encode(POISON).ids[1]  # [CLS] zebra [SEP]
    gs = real.session
    session = GuardSession(
        session=_PoisonSession(gs.session, token),
        provider="cpu",
        requested="cpu",
        providers=gs.providers,
        input_names=gs.input_names,
        output_names=gs.output_names,
    )
    scorer = OnnxScorer(
        artifact=real.artifact,
        session=session,
        tokenizer=real.tokenizer,
        stride=real.stride,
        batch_size=real.batch_size,
        precision=real.precision,
    )
    return _on(guard, scorer, policy)


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_a_failing_text_degrades_alone(guard: Guard, on_error: str) -> None:
    cal = calibrate(guard, action="block")
    policy = Policy(
        toxic_threshold=cal.threshold, thresholds=_never(guard), action="block", on_error=on_error
    )
    g = _poisoned(guard, policy)
    toxic, failing, fine = block(guard, cal.target), f"{POISON} {cal.filler}", cal.filler
    results = g.check_many([toxic, failing, fine])
    # The toxic text keeps its own decision, whatever the error policy.
    assert not results[0].allowed and not results[0].degraded
    assert results[0] == cal.guard.with_policy(policy).check(toxic)
    assert results[1].degraded and "poisoned input" in results[1].error
    assert results[1].allowed is (on_error == "open")
    assert results[2].allowed and not results[2].degraded
    assert results[2] == cal.guard.with_policy(policy).check(fine)


# ---- 3. symlinks out of the artifact folder ----------------------------------------------
def test_a_symlinked_model_file_is_refused(guard_copy: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(guard_copy / "model.int8.onnx", elsewhere / "model.int8.onnx")
    (guard_copy / "model.int8.onnx").symlink_to(elsewhere / "model.int8.onnx")
    with pytest.raises(ArtifactError, match=r"outside the directory.*model\.int8\.onnx"):
        load_artifact(guard_copy)


def test_a_symlinked_folder_of_unlisted_files_is_refused(guard_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "payload.bin").write_bytes(b"not listed anywhere")
    (guard_copy / "extra").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match="outside the directory.*extra"):
        load_artifact(guard_copy)
    (guard_copy / "extra").unlink()
    (guard_copy / "trt_cache").symlink_to(outside, target_is_directory=True)  # allowed name
    with pytest.raises(ArtifactError, match="outside the directory.*trt_cache"):
        load_artifact(guard_copy)


def test_a_symlink_staying_inside_is_judged_by_the_other_checks(guard_copy: Path) -> None:
    (guard_copy / "trt_cache").mkdir()
    (guard_copy / "trt_cache" / "engine").write_bytes(b"x")
    (guard_copy / "trt_cache" / "link").symlink_to(guard_copy / "trt_cache" / "engine")
    load_artifact(guard_copy)  # inside, under the folder that may hold unlisted files


# ---- 4. check --file: clear messages -----------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "fine"}\n{"text": "caf\xe9"}\n', "line 2: not UTF-8"),
        (b"", "the file is empty"),
        (b"\n   \n\t\n", "holds only blank lines"),
    ],
    ids=["latin-1", "empty", "blank-lines"],
)
def test_check_file_errors_are_one_clear_line(
    guard_dir: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    cmd = [sys.executable, "-m", "guardrail_dro", "check", "--guard", str(guard_dir)]
    res = subprocess.run([*cmd, "--file", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert res.stdout == ""


# ---- 5. check_many takes a sequence of str ----------------------------------------------
@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"a": 1}, "not a dict"),
        ("one text", "not a single str"),
        ({"a", "b"}, "not set"),
        (iter(["a"]), "not list_iterator"),
        (["fine", 3], r"texts\[1\] is a int"),
        (["fine", b"bytes"], "decode bytes first"),
    ],
    ids=["dict", "str", "set", "iterator", "int-item", "bytes-item"],
)
def test_check_many_takes_a_sequence_of_str(fake_guard: Guard, texts: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        fake_guard.check_many(texts)
    with pytest.raises(TypeError, match=message):
        asyncio.run(fake_guard.acheck_many(texts))
    assert [r.allowed for r in fake_guard.check_many(("fine", "a knife"))] == [True, False]


def test_check_cli_bounds_are_options(guard_dir: Path) -> None:
    from typer.testing import CliRunner

    from guardrail_dro.cli.app import app

    text = "a fairly long text about bread. " * 400  # ~33 windows
    args = ["check", "--guard", str(guard_dir), "--provider", "cpu", text]
    runner = CliRunner()
    default = json.loads(runner.invoke(app, args).stdout)
    assert default["windows"] == DEFAULT_MAX_WINDOWS
    whole = json.loads(runner.invoke(app, [*args, "--max-windows", "0"]).stdout)
    assert whole["windows"] > DEFAULT_MAX_WINDOWS
    two = json.loads(runner.invoke(app, [*args, "--max-windows", "2"]).stdout)
    assert two["windows"] == 2 and "max_windows=2" in (two["error"] or "max_windows=2")
