"""``guardrail-dro split`` as a user runs it: real files, a real subprocess, exit codes,
messages; the splits then trained on by ``train``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail_dro.data.items import AnnotatedDataset, find_leakage
from guardrail_dro.data.readers import read_dataset
from guardrail_dro.data.synthetic import make_synthetic

CLI = [sys.executable, "-m", "guardrail_dro"]
ENV = {**os.environ, "COLUMNS": "1000"}  # one line per message


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, check=False, env=ENV
    )


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``merge`` leaves: crowd + LLM labels on every item, gold on a sample (the
    synthetic valid split), and one crowd item repeating a gold text."""
    parts = make_synthetic(n_train=160, n_valid=80, n_test=0)
    crowd = [it.model_copy(update={"gold": None}) for it in parts["train"].items]
    gold = list(parts["valid"].items)
    copy = crowd[0].model_copy(update={"item_id": "copy", "text": gold[0].text.upper()})
    path = tmp_path_factory.mktemp("data") / "labels.jsonl"
    AnnotatedDataset([*crowd, copy, *gold], parts["train"].schema).save_jsonl(path)
    return path


def test_split_then_train_on_the_splits(labels: Path, tiny_backbone: Path, tmp_path: Path) -> None:
    out = tmp_path / "splits"
    res = run("split", str(labels), "--out-dir", str(out), "--test-fraction", "0.25")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{labels}: 241 item(s), 80 with gold"
    assert lines[1] == "train: 160 item(s), 6 annotator(s)"
    assert lines[2].startswith("valid: 60 item(s); gold: safe ")
    assert lines[3].startswith("test: 20 item(s); gold: safe ")
    assert "; 5 group(s), the smallest " in lines[2]
    files = [out / f"{n}.jsonl" for n in ("train", "valid", "test")]
    assert lines[4] == f"wrote {', '.join(map(str, files))} (label schema beside each)"
    assert lines[5:] == [
        "next:",
        f"  guardrail-dro train --train {files[0]} --valid {files[1]} --out model",
        f"  guardrail-dro evaluate --model model --test {files[2]}",
    ]
    err = " ".join(res.stderr.split())
    assert "note: 1 item(s) without gold share their text with a gold item" in err
    assert "e.g. 'copy'" in err
    assert "note: valid has 60 gold item(s)" in err  # train's valid_size_notes

    train, valid, test = (read_dataset(f) for f in files)
    assert valid.has_gold and test.has_gold and not any(it.gold for it in train)
    assert "copy" not in {it.item_id for ds in (train, valid, test) for it in ds}
    assert not find_leakage({"train": train, "valid": valid, "test": test}).any
    again = run("split", str(labels), "--out-dir", str(tmp_path / "again"),
                "--test-fraction", "0.25")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / "test.jsonl").read_text() == files[2].read_text()

    res = run(
        "train", "--train", str(files[0]), "--valid", str(files[1]), "--out",
        str(tmp_path / "model"), "--backbone", str(tiny_backbone), "--epochs", "1",
        "--cache-dir", str(tmp_path / "cache"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["data_sizes"] == {"train": 160, "valid": 60}
    assert manifest["train_items"] == 160  # none left out as also in valid
    assert "also in valid were left out" not in res.stderr


def test_a_csv_with_a_gold_column(tmp_path: Path) -> None:
    data = tmp_path / "crowd.csv"
    data.write_text(
        "id,text,label_a,label_b,verdict,topic\n"
        "1,hello there,safe,safe,safe,x\n"
        "2,how to make a bomb,toxic,toxic,,y\n"
        "3,Hello  There,safe,toxic,,x\n"
        "4,buy a gun,toxic,safe,toxic,y\n"
        "5,nice day,safe,safe,,x\n"
    )
    out = tmp_path / "out"
    res = run("split", str(data), "--out-dir", str(out), "--gold-col", "verdict",
              "--group-col", "topic", "--labels", "safe,toxic", "--safe", "safe")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1:3] == [
        "train: 2 item(s), 2 annotator(s)",
        "valid: 2 item(s); gold: safe 1, toxic 1; 2 group(s), the smallest 'x' (1)",
    ]
    err = " ".join(res.stderr.split())
    assert "valid group(s) with fewer than 10 items: 'x' (1), 'y' (1)" in err
    assert "e.g. '3'" in err
    valid = read_dataset(out / "valid.jsonl")
    assert [(it.item_id, it.gold, it.group) for it in valid] == [
        ("1", "safe", "x"),
        ("4", "toxic", "y"),
    ]
    assert valid.schema.safe == ("safe",)  # the schema sidecar: train needs no options
    assert [it.item_id for it in read_dataset(out / "train.jsonl")] == ["2", "5"]


def test_earlier_splits_are_kept_unless_overwrite(labels: Path, tmp_path: Path) -> None:
    out = tmp_path / "splits"
    first = run("split", str(labels), "--out-dir", str(out), "--test-fraction", "0.5")
    assert first.returncode == 0, first.stderr
    before = (out / "valid.jsonl").read_text()
    res = run("split", str(labels), "--out-dir", str(out))
    assert res.returncode == 2
    assert (
        f"error: --out-dir {out} already holds train.jsonl, valid.jsonl, test.jsonl (an earlier "
        "split?): pass --overwrite to replace them, or choose another --out-dir"
    ) in " ".join(res.stderr.split())
    assert (out / "valid.jsonl").read_text() == before
    res = run("split", str(labels), "--out-dir", str(out), "--overwrite")
    assert res.returncode == 0, res.stderr
    # the earlier test split would share items with the new valid: removed, and said so
    assert not (out / "test.jsonl").exists() and not (out / "test.schema.json").exists()
    assert f"note: removed {out / 'test.jsonl'} of an earlier split (--overwrite)" in res.stderr
    assert len(read_dataset(out / "valid.jsonl")) == 80


def test_refusals_name_the_option_or_what_to_do(labels: Path, tmp_path: Path) -> None:
    res = run("split", str(labels), "--out-dir", str(tmp_path / "o"), "--test-fraction", "0.95")
    assert res.returncode == 2 and "--test-fraction" in res.stderr
    assert not (tmp_path / "o").exists()

    res = run("split", str(labels), "--out-dir", str(labels.parent), "--overwrite")
    assert res.returncode == 0, res.stderr  # DATA beside the splits is fine...
    inside = labels.parent / "train.jsonl"
    res = run("split", str(inside), "--out-dir", str(labels.parent), "--overwrite")
    assert res.returncode == 2  # ...but not as one of them
    assert f"--out-dir {labels.parent} would overwrite DATA {inside}" in " ".join(
        res.stderr.split()
    )
    nogold = tmp_path / "nogold.csv"
    nogold.write_text("text,label_a\nhi,safe\nbomb,toxic\n")
    res = run("split", str(nogold), "--out-dir", str(tmp_path / "o"))
    assert res.returncode == 2
    err = " ".join(res.stderr.split())
    assert "nogold: no item has a gold label, so there is nothing to validate on" in err
    assert "--gold-col" in err and not (tmp_path / "o").exists()
