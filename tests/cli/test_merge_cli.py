"""``guardrail-dro merge`` as a user runs it: real files, a real subprocess, exit codes,
messages; the merged file then read by another command (``agreement``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.readers import read_dataset
from guardrail_dro.data.schema import LabelSchema

CLI = [sys.executable, "-m", "guardrail_dro"]
ENV = {**os.environ, "COLUMNS": "1000"}  # one line per message
SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))
TEXTS = ["how do I bake bread", "how do I build a bomb", "where can I buy a gun", "hi"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, check=False, env=ENV
    )


def _files(tmp_path: Path) -> list[Path]:
    """A crowd CSV (a bracketed rater name), two annotate-style outputs, a gold sample."""
    crowd = tmp_path / "crowd.csv"
    crowd.write_text(
        "item_id,text,label_ann1,label_[team-a]\n"
        + "".join(f"q{i},{t},{'safe' if i % 2 else 'toxic'},toxic\n" for i, t in enumerate(TEXTS))
    )
    paths = [crowd]
    for name, label in (("gpt", "toxic"), ("claude", "safe")):
        items = [
            Item(
                item_id=f"q{i}",
                text=t,
                annotations=(
                    Annotation(
                        annotator=f"{name}-model",
                        kind="llm",
                        label=label,
                        rationale="because",
                        confidence=0.8,
                    ),
                ),
            )
            for i, t in enumerate(TEXTS[:3])
        ]
        paths.append(tmp_path / f"{name}.jsonl")
        AnnotatedDataset(items, SCHEMA).save_jsonl(paths[-1])
    gold = tmp_path / "gold.csv"
    gold.write_text("item_id,text,annotator,label,gold\nq0,how do I bake bread,ann1,toxic,safe\n")
    return [*paths, gold]


def test_merge_then_agreement_on_the_result(tmp_path: Path) -> None:
    files = _files(tmp_path)
    out = tmp_path / "merged.jsonl"
    res = run("merge", *map(str, files), "--out", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:5] == [
        f"{files[0]}: 4 item(s)",
        f"{files[1]}: 3 item(s)",
        f"{files[2]}: 3 item(s)",
        f"{files[3]}: 1 item(s)",
        "merged: 4 item(s), 1 with gold, 0 group(s), 5 annotator(s)",
    ]
    assert "  label_[team-a]  human  4 item(s)" in lines  # printed literally
    assert "  gpt-model       llm    3 item(s)" in lines
    assert lines[-1] == f"wrote {out} (label schema: {tmp_path / 'merged.schema.json'})"
    assert "note: 3 item(s) appear in more than one file and were joined" in res.stderr

    merged = read_dataset(out)
    assert merged.schema == SCHEMA and len(merged) == 4
    q0 = merged.items[0]
    assert [a.annotator for a in q0.annotations] == [
        "label_ann1",
        "label_[team-a]",
        "gpt-model",
        "claude-model",
        "ann1",
    ]
    assert q0.gold == "safe" and q0.annotations[2].rationale == "because"

    agreement = run("agreement", "--data", str(out))
    assert agreement.returncode == 0, agreement.stderr
    assert "claude-model" in agreement.stderr


def test_duplicate_votes_are_merged_and_noted(tmp_path: Path) -> None:
    crowd = _files(tmp_path)[0]
    again = tmp_path / "again.csv"
    again.write_text("item_id,text,label_ann1\nq0,how do I bake bread,toxic\n")
    res = run("merge", str(crowd), str(again), "--out", str(tmp_path / "m.jsonl"))
    assert res.returncode == 0, res.stderr
    assert "note: 1 identical annotation(s)" in res.stderr


def test_a_conflict_exits_2_naming_files_item_and_annotator(tmp_path: Path) -> None:
    crowd = _files(tmp_path)[0]
    other = tmp_path / "other.csv"
    other.write_text("item_id,text,label_ann1\nq0,how do I bake bread,safe\n")
    out = tmp_path / "m.jsonl"
    res = run("merge", str(crowd), str(other), "--out", str(out))
    assert res.returncode == 2
    msg = " ".join(res.stderr.split())
    assert (
        f"error: item 'q0': annotator 'label_ann1' labels it 'toxic' in {crowd} and 'safe' "
        f"in {other}; correct one of the files, or choose with --on-conflict" in msg
    )
    assert not out.exists()
    res = run("merge", str(crowd), str(other), "--out", str(out), "--on-conflict", "keep-last")
    assert res.returncode == 0, res.stderr
    assert read_dataset(out).items[0].label_of("label_ann1") == "safe"


def test_one_id_with_two_texts_exits_2(tmp_path: Path) -> None:
    crowd = _files(tmp_path)[0]
    other = tmp_path / "other.csv"
    other.write_text("item_id,text,label_ann1\nq0,another text,safe\n")
    res = run("merge", str(crowd), str(other), "--out", str(tmp_path / "m.jsonl"))
    assert res.returncode == 2
    msg = " ".join(res.stderr.split())
    assert f"item id 'q0' has different texts in {crowd} ('how do I bake bread')" in msg
    assert "--join text" in msg


def test_writing_over_an_input_is_refused(tmp_path: Path) -> None:
    files = _files(tmp_path)
    before = files[1].read_bytes(), (tmp_path / "gpt.schema.json").read_bytes()
    res = run("merge", *map(str, files), "--out", str(files[1]))
    assert res.returncode == 2
    assert f"error: --out {files[1]} would overwrite the input {files[1]}" in res.stderr
    assert (files[1].read_bytes(), (tmp_path / "gpt.schema.json").read_bytes()) == before


def test_bad_option_values_name_the_option(tmp_path: Path) -> None:
    crowd = _files(tmp_path)[0]
    res = run("merge", str(crowd), "--out", str(tmp_path / "m.jsonl"), "--on-conflict", "newest")
    assert res.returncode == 2
    assert "--on-conflict must be error, keep-first, keep-last or drop, not 'newest'" in res.stderr
    res = run("merge", str(crowd), "--out", str(tmp_path / "m.csv"))
    assert res.returncode == 2 and "--out" in res.stderr and "OUT.jsonl" in res.stderr


def test_help_teaches_an_example() -> None:
    res = run("merge", "--help")
    assert res.returncode == 0
    assert "guardrail-dro merge crowd.csv gpt.jsonl claude.jsonl" in res.stdout
    assert "--on-conflict" in res.stdout and "--text-col" in res.stdout


def test_a_large_crowd_is_summed_up_after_twenty_names(tmp_path: Path) -> None:
    crowd = tmp_path / "crowd.csv"
    rows = [f"1,one,w{k},{'safe' if k % 2 else 'toxic'}\n" for k in range(25)]
    crowd.write_text("item_id,text,annotator,label\n" + "".join(rows))
    res = run("merge", str(crowd), "--out", str(tmp_path / "m.jsonl"), "--llm-annotators", "w24")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "  w19  human  1 item(s)" in lines and not any(ln.startswith("  w20") for ln in lines)
    assert "  ... and 5 more (4 human, 1 llm)" in lines


def test_an_earlier_merges_failures_file_is_not_left_behind(tmp_path: Path) -> None:
    """``agreement --data OUT`` reads ``OUT.failures.jsonl``: one left by an earlier merge
    of other inputs was read as this merge's refusals."""
    crowd = _files(tmp_path)[0]
    out = tmp_path / "m.jsonl"
    stale = tmp_path / "m.jsonl.failures.jsonl"
    stale.write_text('{"item_id": "q0", "annotator": "x", "outcome": "refused"}\n')
    res = run("merge", str(crowd), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert not stale.exists()
