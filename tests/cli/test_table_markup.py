"""Names from the data print as text in the CLI's tables and lines, not as rich markup or
emoji codes: an annotator ``[team-a]`` printed as an empty cell in ``agreement``, a label
``[spam]`` vanished from the chat-turns table, a group ``[people]`` from ``evaluate
--guard``'s worst-group cell, and ``:smile:`` in a path or a name turned into an emoji
(the consoles of ``export``, ``evaluate`` and ``escalation`` read emoji codes).

Same approach as ``test_note_markup.py``: a tiny dataset, the real commands in a
subprocess, one line per message (``COLUMNS``)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema

CLI = [sys.executable, "-m", "guardrail_dro"]
ENV = {**os.environ, "COLUMNS": "1000"}  # tables and lines never wrap a name

OK, SPAM = "[ok]", "[spam]:smile:"
A, B = "[team-a]", "rater:smile:"
GROUP = "[people]:smile:"
JUDGE = "[judge]:smile:"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, check=False, env=ENV
    )
    assert res.returncode == 0, res.stderr
    return res


def _cells(output: str) -> list[list[str]]:
    """The rows of the tables in ``output`` (headers too), each a list of its cells."""
    return [[c.strip() for c in re.split("[│┃]", ln)[1:-1]] for ln in output.splitlines()]


def test_agreement_prints_annotator_and_label_names_literally(tmp_path: Path) -> None:
    schema = LabelSchema(classes=(OK, SPAM), safe=(OK,))
    items = [
        Item(
            item_id=str(i),
            text=f"text {i}",
            gold=OK if i % 2 else SPAM,
            group=GROUP,
            annotations=(
                Annotation(annotator=A, label=OK if i % 2 else SPAM),
                Annotation(annotator=B, label=OK if i % 3 else SPAM),
            ),
        )
        for i in range(8)
    ]
    data = tmp_path / "labelled.jsonl"
    AnnotatedDataset(items, schema, name="tiny").save_jsonl(data)
    res = _run("agreement", "--data", str(data))
    rows = _cells(res.stderr)
    firsts = {r[0] for r in rows if r}
    assert {A, B} <= firsts, res.stderr  # quality and kappa tables, one row each
    assert {OK, SPAM} <= firsts, res.stderr  # per-class recall rows
    headers = [r for r in rows if r and r[0] == "class"]  # recall: a column per annotator
    assert headers and headers[0][1:] == [A, B], res.stderr


def test_chat_turns_print_label_names_literally() -> None:
    from rich.console import Console

    from guardrail_dro.cli.chat_turns import CHAT_TURNS, check_turns
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.scorer import FakeScorer

    guard = Guard.from_scorer(FakeScorer.from_keywords({"": SPAM}, labels=(OK, SPAM)))
    out = io.StringIO()
    check_turns(guard, Console(file=out, width=200))  # a console as the quickstart's
    labels = [r[4] for r in _cells(out.getvalue()) if len(r) == 7 and r[0] != "role"]
    assert labels == [SPAM] * len(CHAT_TURNS), out.getvalue()


@pytest.fixture(scope="module")
def bracketed_test(synthetic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic test split, each group named ``[group]:smile:``, its annotator
    ``llm_a`` renamed ``JUDGE``."""
    test = synthetic["test"]
    items = [
        it.model_copy(
            update={
                "group": f"[{it.group}]:smile:",
                "annotations": tuple(
                    a.model_copy(update={"annotator": JUDGE}) if a.annotator == "llm_a" else a
                    for a in it.annotations
                ),
            }
        )
        for it in test.items
    ]
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    type(test)(items, test.schema, name="test").save_jsonl(path)
    return path


@pytest.fixture(scope="module")
def exported(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny model exported (fp32) to a folder ``[v2]:smile:/guard``; its stderr."""
    pytest.importorskip("onnxruntime")
    guard = tmp_path_factory.mktemp("export") / "[v2]:smile:" / "guard"
    res = _run("export", "--model", str(tiny_model_dir), "--out", str(guard), "--no-int8")
    return guard, res.stderr


def test_export_prints_its_paths_literally(exported: tuple[Path, str]) -> None:
    guard, stderr = exported
    assert f"wrote {guard}" in stderr, stderr  # the progress line, no emoji in the path


def test_evaluate_guard_prints_the_worst_group_literally(
    exported: tuple[Path, str], bracketed_test: Path
) -> None:
    guard, _ = exported
    res = _run("evaluate", "--guard", str(guard), "--test", str(bracketed_test))
    assert res.stdout.startswith(str(guard)), res.stdout  # the title, no emoji in the path
    worst = [r[6] for r in _cells(res.stdout) if len(r) == 8 and r[0] == "test"]
    assert len(worst) == 1 and worst[0].endswith("]:smile:)"), res.stdout
    assert worst[0].split(" (", 1)[1].startswith("["), res.stdout


def test_evaluate_model_prints_the_worst_group_without_emoji(
    tiny_model_dir: Path, bracketed_test: Path
) -> None:
    res = _run("evaluate", "--model", str(tiny_model_dir), "--test", str(bracketed_test))
    worst = next(ln for ln in res.stdout.splitlines() if ln.startswith("worst group:"))
    assert worst.startswith("worst group: '[") and worst.endswith("]:smile:'"), res.stdout


def test_escalation_prints_its_paths_and_judge_literally(
    exported: tuple[Path, str], bracketed_test: Path
) -> None:
    guard, _ = exported
    band = guard.parent / "band:smile:.json"
    res = _run(
        "escalation", "--guard", str(guard), "--valid", str(bracketed_test), "--judge", JUDGE,
        "--out", str(band),
    )  # fmt: skip
    title = "".join(res.stdout.split())  # the title wraps to the table's width
    assert f"{bracketed_test}:judge{JUDGE}," in title, res.stdout
    assert f"band written to {band}" in res.stderr, res.stderr


def test_distill_prints_its_paths_literally(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    data = tmp_path / "[v2]:smile:"
    for split in ("train", "valid"):
        synthetic[split].save_jsonl(data / f"{split}.jsonl")
    out = data / "student"
    res = _run(
        "distill", "--model", str(tiny_model_dir), "--out", str(out), "--layers", "1",
        "--epochs", "1", "--train", str(data / "train.jsonl"),
        "--valid", str(data / "valid.jsonl"), "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert f"into 1 layer(s) on {data / 'train.jsonl'} (" in res.stderr, res.stderr
    assert f"student -> {out}:" in res.stderr, res.stderr
