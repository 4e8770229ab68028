"""The benchmark report: every number computed, files written, plots drawn."""

from __future__ import annotations

import json
from pathlib import Path

from guardrail_dro.train.bench import load_report, run_bench
from guardrail_dro.train.trainer import TrainConfig


def test_bench_writes_json_table_and_plots(synthetic, tiny_backbone: Path, tmp_path: Path) -> None:
    small = {k: v.subset(range(120)) for k, v in synthetic.items()}
    cfg = TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=2, progress=False
    )
    report = run_bench(
        small["train"],
        small["valid"],
        small["test"],
        methods=["ours", "mv"],
        seeds=2,
        config=cfg,
        out_dir=tmp_path / "out",
    )
    for name in ("results.json", "results.md", "group_accuracy.png", "annotator_weights.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    ours = report.results["ours"]
    assert len(ours.per_seed) == 2
    assert ours.valid_mean["worst_group_accuracy"] is not None
    assert ours.unseen_mean["accuracy"] is not None and report.unseen_test_items == 120
    assert ours.annotator_weight_by_group and ours.group_weights
    assert report.results["mv"].annotator_weight_by_group is None
    assert report.total_seconds >= report.embed_seconds > 0
    back = load_report(tmp_path / "out" / "results.json")
    assert back.results["ours"].mean == ours.mean
    assert "| `ours` |" in (tmp_path / "out" / "results.md").read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["seeds"] == [0, 1]
