"""What the bench reports and stores, from an audit: the unseen-test column without
unseen items, plots left from an earlier bench in a reused --out, names the plot fonts
lack, and names rich took for markup."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from guardrail_dro.train.bench import BenchReport, load_report, run_bench, write_report
from guardrail_dro.train.trainer import TrainConfig

BUNDLED = Path(__file__).parents[2] / "benchmarks" / "results" / "toxic-questions"


def _renamed(report: BenchReport, names: dict[str, str]) -> BenchReport:
    """``report`` with methods, rivals and judges renamed by ``names``."""
    return report.model_copy(
        update={
            "results": {
                names.get(k, k): r.model_copy(update={"method": names.get(k, k)})
                for k, r in report.results.items()
            },
            "paired": {
                names.get(k, k): c.model_copy(update={"rival": names.get(k, k)})
                for k, c in report.paired.items()
            },
            "judges": {
                names.get(k, k): j.model_copy(update={"annotator": names.get(k, k)})
                for k, j in report.judges.items()
            },
        }
    )


def test_a_test_split_with_no_unseen_item_shows_no_unseen_score(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """With valid = test every test item is seen: the unseen column read "0.000 / n/a",
    an accuracy of 0 over 0 items (and results.json kept 0.0)."""
    small = {k: v.subset(range(60)) for k, v in synthetic.items()}
    cfg = TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1, progress=False
    )
    report = run_bench(
        small["train"], small["test"], small["test"], methods=["mv"], seeds=1, config=cfg,
        out_dir=tmp_path / "out", score_annotators=False,
    )  # fmt: skip
    assert report.unseen_test_items == 0
    assert report.results["mv"].unseen_mean == {}
    row = report.table().splitlines()[2].split(" | ")
    assert row[-2] == "n/a", row
    assert load_report(tmp_path / "out" / "results.json").results["mv"].unseen_mean == {}


def test_a_reused_out_keeps_no_plot_of_an_earlier_bench(tmp_path: Path) -> None:
    """A bench of ours and mv, then one of mv alone in the same --out: the paired and
    annotator-weight plots of the first stayed beside the second's results.md."""
    first = load_report(BUNDLED / "results.json")
    write_report(first, tmp_path)
    plots = ("group_accuracy.png", "annotator_weights.png", "paired_differences.png")
    assert all((tmp_path / p).exists() for p in plots)
    second = first.model_copy(update={"results": {"mv": first.results["mv"]}, "paired": {}})
    write_report(second, tmp_path)
    assert (tmp_path / "group_accuracy.png").exists()
    assert not (tmp_path / "annotator_weights.png").exists()
    assert not (tmp_path / "paired_differences.png").exists()


def test_names_the_plot_fonts_lack_stay_apart_and_warn_nothing(tmp_path: Path) -> None:
    """Two annotators named in CJK were two rows of identical boxes, with a "Glyph ...
    missing from font" warning per character."""
    import matplotlib

    from guardrail_dro.train.bench_plots import _label, plot_group_accuracy, plot_paired

    names = {"single:label_1": "single:标注员_张三", "single:label_2": "single:标注员_李四"}
    report = _renamed(load_report(BUNDLED / "results.json"), names)
    family = list(matplotlib.rcParams["font.family"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plot_group_accuracy(report, tmp_path / "g.png") is not None
        assert plot_paired(report, tmp_path / "p.png") is not None
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert _label(names["single:label_1"]) != _label(names["single:label_2"])
    assert _label("single:label_1") == "single:label_1"
    assert matplotlib.rcParams["font.family"] == family  # the caller's settings stay


def test_bench_prints_names_with_brackets_as_they_are(
    synthetic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench printed its tables through rich markup: a method or annotator named
    ``label[gpt]`` showed as ``label``, and ``[/x]`` in a name raised a MarkupError
    after every run had trained."""
    from typer.testing import CliRunner

    from guardrail_dro.cli.app import app

    report = _renamed(
        load_report(BUNDLED / "results.json"),
        {"single:label_4": "single:label[gpt]", "label_6": "claude[/x]"},
    )
    monkeypatch.setattr("guardrail_dro.train.bench.run_bench", lambda *a, **k: report)
    for split in ("train", "valid", "test"):
        synthetic[split].subset(range(30)).save_jsonl(tmp_path / f"{split}.jsonl")
    args = ["bench", "--methods", "mv", "--out", str(tmp_path / "out[v2]")]
    for split in ("train", "valid", "test"):
        args += [f"--{split}", str(tmp_path / f"{split}.jsonl")]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert r.exit_code == 0, (r.output, r.exception)
    assert "`single:label[gpt]`" in r.output and "`claude[/x]`" in r.output
    assert "out[v2]" in r.output  # the closing line's path too


def test_a_long_name_takes_room_of_its_own_in_the_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 80-character method name squeezed the group heatmap's 15 columns to about a tenth of
    an inch (numbers drawn over each other) and ran the forest plot's titles together:
    the figures had a fixed room for labels."""
    from guardrail_dro.train import bench_plots

    long = "single:" + "annotator-with-a-long-model-id/meta-llama-3.1-405b-instruct-turbo-2024"
    report = _renamed(load_report(BUNDLED / "results.json"), {"single:label_1": long})
    drawn = []
    save = bench_plots._save

    def keep(fig, path):
        drawn.append(fig)
        return save(fig, path)

    monkeypatch.setattr(bench_plots, "_save", keep)
    bench_plots.plot_group_accuracy(report, tmp_path / "g.png")
    bench_plots.plot_paired(report, tmp_path / "p.png")
    heat, forest = drawn

    def inches(ax) -> float:
        return ax.get_position().width * ax.figure.get_figwidth()

    groups = len(report.results["ours"].group_accuracy)
    assert inches(heat.axes[0]) >= 0.4 * groups
    assert all(inches(ax) >= 3.0 for ax in forest.axes)
