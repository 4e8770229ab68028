"""``train`` and ``evaluate`` warn, as the bench does, about a model that answers "safe"
to everything on a 97 %-safe split (``train/collapse.py``): its accuracy reads 0.97."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.synthetic import make_synthetic


def _run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "guardrail_dro", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _skewed(ds: AnnotatedDataset, safe: int, toxic: int) -> AnnotatedDataset:
    s = [i for i, it in enumerate(ds) if it.gold == "safe"][:safe]
    t = [i for i, it in enumerate(ds) if it.gold != "safe"][:toxic]
    return ds.subset(s + t)


def test_train_and_evaluate_warn_about_a_guard_that_flags_nothing(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    data = make_synthetic(n_train=120, n_valid=300, n_test=300)
    train = data["train"]
    safe = {"label": "safe"}
    never = [  # a crowd that flags nothing
        it.model_copy(
            update={"annotations": tuple(a.model_copy(update=safe) for a in it.annotations)}
        )
        for it in train.items
    ]
    AnnotatedDataset(never, train.schema).save_jsonl(tmp_path / "train.jsonl")
    _skewed(data["valid"], 97, 3).save_jsonl(tmp_path / "valid.jsonl")
    _skewed(data["test"], 97, 3).save_jsonl(tmp_path / "test.jsonl")
    model = tmp_path / "model"
    r = _run(
        "train", "--train", str(tmp_path / "train.jsonl"), "--valid", str(tmp_path / "valid.jsonl"),
        "--out", str(model), "--method", "mv", "--backbone", str(tiny_backbone), "--epochs", "1",
        "--cache-dir", str(tmp_path / "c"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "warning: mv: misses most toxic items on valid: toxic recall 0.000" in err, err
    assert "most common class, 'safe', scores accuracy 0.970" in err
    r = _run("evaluate", "--model", str(model), "--test", str(tmp_path / "test.jsonl"))
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "misses most toxic items on test: toxic recall 0.000" in err, err
    assert "it calls 0.0% toxic" in err
