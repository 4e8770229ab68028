"""The warning for a model whose decision is close to constant (``train/collapse.py``).

An audit benched a 97 %-safe dataset: every method's toxic recall was near 0 while its
accuracy and worst-group accuracy read 0.97, and nothing said so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.collapse import collapse_warning, informedness
from guardrail_dro.train.metrics import score_split
from guardrail_dro.train.trainer import TrainConfig

BUNDLED = Path(__file__).parents[2] / "benchmarks" / "results" / "toxic-questions"


def _skewed(ds: AnnotatedDataset, safe: int, toxic: int) -> AnnotatedDataset:
    """The first ``safe`` safe-gold items of ``ds`` and its first ``toxic`` toxic ones."""
    s = [i for i, it in enumerate(ds) if it.gold == "safe"][:safe]
    t = [i for i, it in enumerate(ds) if it.gold != "safe"][:toxic]
    return ds.subset(s + t)


def _scored(data: AnnotatedDataset, pred: np.ndarray) -> str | None:
    return collapse_warning("m", "test", data, score_split(data, pred).headline(), pred)


def test_a_guard_that_says_safe_to_everything_is_named_with_the_baseline(synthetic) -> None:
    test = _skewed(synthetic["test"], 97, 3)
    all_safe = np.full(len(test), test.schema.index("safe"))
    line = _scored(test, all_safe)
    assert line is not None and line.startswith("m: misses most toxic items on test:"), line
    assert "toxic recall 0.000, FPR 0.000" in line and "3.0% of the items are toxic" in line
    assert "it calls 0.0% toxic" in line
    assert "most common class, 'safe', scores accuracy 0.970" in line and "m scores 0.970" in line
    # Its gold predictions, and any decent guard, draw no warning.
    assert _scored(test, test.gold_array()) is None
    # A guard that blocks everything is flagged too (recall 1, FPR 1: recall - FPR 0).
    block = _scored(test, np.full(len(test), test.schema.index("hate")))
    assert block is not None and "close to constant" in block and "calls 100.0% toxic" in block


def test_no_toxic_item_no_warning_and_valid_shown_beside(synthetic) -> None:
    safe_only = _skewed(synthetic["test"], 50, 0)
    assert _scored(safe_only, np.full(50, safe_only.schema.index("safe"))) is None
    test = _skewed(synthetic["test"], 40, 10)
    m = score_split(test, np.full(50, test.schema.index("safe"))).headline()
    line = collapse_warning("mv", "test", test, m, valid={"toxic_recall": 0.1, "toxic_fpr": 0.0})
    assert line is not None and "on valid: toxic recall 0.100, FPR 0.000" in line


def test_a_schema_without_safe_classes_uses_balanced_accuracy() -> None:
    """No safe class, no toxic recall: the share of predictions in one class decides."""
    from guardrail_dro.data.items import Item

    schema = LabelSchema(classes=("a", "b", "c"))
    items = [Item(item_id=str(i), text=f"t{i}", gold="abc"[i % 3]) for i in range(30)]
    data = AnnotatedDataset(items, schema, name="test")
    assert _scored(data, np.zeros(30, dtype=int)) is not None
    assert "100.0% of its predictions are 'a'" in (_scored(data, np.zeros(30, dtype=int)) or "")
    assert _scored(data, data.gold_array()) is None
    assert informedness(np.array([0, 1, 1]), np.array([0, 1, 1]), 2) == 1.0
    assert informedness(np.array([1, 1]), np.array([0, 1]), 2) is None  # one gold class


def test_the_bundled_toxic_questions_bench_warns_only_about_the_guard_that_blocks_all() -> None:
    """No false alarm on toxic-questions: of the bundled bench's 14 methods only
    single:label_3 is flagged, whose guard calls every test item toxic (recall and FPR
    1.000: the vendor annotator labelled every item toxic)."""
    from guardrail_dro.data.readers import read_dataset
    from guardrail_dro.train.bench import load_report
    from guardrail_dro.train.collapse import bench_warnings

    report = load_report(BUNDLED / "results.json")
    test = read_dataset("toxic-questions:test")
    lines = bench_warnings(test, report.results, {})
    assert [line.split(":", 2)[1] for line in lines] == ["label_3"], lines
    assert "toxic recall 1.000, FPR 1.000" in lines[0]


def test_the_bench_report_carries_the_warning(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """A crowd that flags nothing, a 97 %-safe test split: mv answers "safe" throughout;
    results.json, results.md and the console name it, its recall and the baseline."""
    from guardrail_dro.train.bench import load_report, run_bench

    train = synthetic["train"].subset(range(80))
    safe = {"label": "safe"}
    never = [
        it.model_copy(
            update={"annotations": tuple(a.model_copy(update=safe) for a in it.annotations)}
        )
        for it in train.items
    ]
    report = run_bench(
        AnnotatedDataset(never, train.schema, name="train"),
        synthetic["valid"].subset(range(60)),
        _skewed(synthetic["test"], 97, 3),
        methods=["mv"],
        seeds=1,
        config=TrainConfig(
            backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1, progress=False
        ),
        out_dir=tmp_path / "out",
        score_annotators=False,
    )
    assert report.results["mv"].mean["accuracy"] == pytest.approx(0.97)
    (line,) = report.warnings
    assert line.startswith("mv: misses most toxic items on test: toxic recall 0.000"), line
    assert "'safe', scores accuracy 0.970" in line and "it calls 0.0% toxic" in line
    assert json.loads((tmp_path / "out" / "results.json").read_text())["warnings"] == [line]
    assert load_report(tmp_path / "out" / "results.json").warnings == [line]
    md = (tmp_path / "out" / "results.md").read_text()
    assert f"**Warnings:**\n\n- {line}" in md
    assert md.index("**Warnings:**") > md.index("| `mv` |")  # right below the table
