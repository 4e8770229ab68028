"""The benchmark report: every number computed, files written, plots drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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
    # Each stored run keeps its test predictions, and they are what the table scored.
    from guardrail_dro.train.bench_runs import FinishedRun
    from guardrail_dro.train.metrics import score_split

    run = FinishedRun.model_validate_json((tmp_path / "out" / "runs" / "mv.seed1.json").read_text())
    assert run.test_pred is not None
    scored = report.results["mv"].per_seed[1]
    assert score_split(small["test"], np.asarray(run.test_pred)) == scored.model_copy(
        update={"toxic_roc_auc": None}  # which predictions alone cannot give
    )
    # ... and the guard's toxic ROC AUC, a column of the table
    assert all(0 < m.toxic_roc_auc <= 1 for r in report.results.values() for m in r.per_seed)
    assert "toxic ROC AUC" in report.table() and ours.mean["toxic_roc_auc"] is not None
    # Paired intervals: ours against mv and against each annotator covering every item.
    labels = small["test"].label_matrix()
    full = {
        f"judge:{a}" for j, a in enumerate(small["test"].annotators) if (labels[:, j] >= 0).all()
    }
    assert full and set(report.paired) == {"mv", *full}
    pm = report.paired["mv"].worst_group_accuracy
    assert pm.diff == pytest.approx(
        ours.mean["worst_group_accuracy"] - report.results["mv"].mean["worst_group_accuracy"]
    )
    assert pm.low <= pm.high and 0.0 <= pm.ahead <= 1.0
    assert back.paired == report.paired
    assert "Paired test differences" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "paired_differences.png").stat().st_size > 0


def test_judge_rows_are_extra_and_leave_the_methods_untouched(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    from guardrail_dro.train.judges import JudgeInfo

    small = {k: v.subset(range(120)) for k, v in synthetic.items()}
    reports = []
    for judges, cache in ((False, "c0"), (True, "c1")):
        cfg = TrainConfig(
            backbone=str(tiny_backbone), cache_dir=tmp_path / cache, epochs=2, progress=False
        )
        reports.append(
            run_bench(
                small["train"],
                small["valid"],
                small["test"],
                methods=["mv", "ours"],
                seeds=1,
                config=cfg,
                out_dir=tmp_path / cache,
                score_annotators=judges,
                annotator_info={"llm_a": JudgeInfo(who="LLM A", usd_per_1k=0.25)},
            )
        )
    without, with_judges = reports
    assert without.judges == {}
    for name, r in without.results.items():
        other = with_judges.results[name].model_dump(exclude={"seconds"})
        assert r.model_dump(exclude={"seconds"}) == other, name
    # The method table: same rows, same numbers (all but the s/run timing column).
    strip = [line.rsplit("|", 2)[0] for line in without.table().splitlines()]
    assert strip == [line.rsplit("|", 2)[0] for line in with_judges.table().splitlines()]
    judges = with_judges.judges
    assert set(judges) == set(small["test"].annotators)
    assert judges["llm_a"].who == "LLM A" and judges["llm_a"].usd_per_1k == 0.25
    assert all(j.items <= 120 and j.binary_accuracy is not None for j in judges.values())
    md = (tmp_path / "c1" / "results.md").read_text()
    assert "Annotators as judges" in md and "| `llm_a` (LLM A) |" in md
    assert "Annotators as judges" not in (tmp_path / "c0" / "results.md").read_text()
    assert load_report(tmp_path / "c1" / "results.json").judges == judges


def test_bench_resumes_from_the_runs_a_crash_left(synthetic, tiny_backbone: Path, tmp_path):
    """Each finished (method, seed) run is on disk as it ends; a restarted bench reuses
    those with its config and data, retrains a half-written one and the missing ones,
    and retrains everything when the settings differ."""
    from guardrail_dro.train.bench_runs import FinishedRun

    small = {k: v.subset(range(80)) for k, v in synthetic.items()}
    cfg = TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=2, progress=False
    )
    out = tmp_path / "out"

    def bench(config: TrainConfig, resume: bool = True):
        trained: list[tuple[str, int]] = []
        report = run_bench(
            small["train"],
            small["valid"],
            small["test"],
            methods=["mv", "soft"],
            seeds=2,
            config=config,
            out_dir=out,
            score_annotators=False,
            resume=resume,
            on_run=lambda m, s, _: trained.append((m, s)),
        )
        return report, trained

    first, trained = bench(cfg)
    assert len(trained) == 4
    runs = out / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [
        "mv.seed0.json",
        "mv.seed1.json",
        "soft.seed0.json",
        "soft.seed1.json",
    ]
    # The crash: mv seed 0 finished (marked, to see it reused), mv seed 1 was being
    # written, soft never ran.
    mv0 = FinishedRun.model_validate_json((runs / "mv.seed0.json").read_text())
    marked = mv0.test.model_copy(update={"accuracy": 0.123})
    (runs / "mv.seed0.json").write_text(mv0.model_copy(update={"test": marked}).model_dump_json())
    (runs / "mv.seed1.json").write_text((runs / "mv.seed1.json").read_text()[:100])
    for p in runs.glob("soft.*"):
        p.unlink()
    again, trained = bench(cfg)
    assert trained == [("mv", 1), ("soft", 0), ("soft", 1)]
    assert again.results["mv"].per_seed[0].accuracy == 0.123
    assert again.results["mv"].per_seed[1] == first.results["mv"].per_seed[1]  # same seed
    assert again.results["soft"].mean == first.results["soft"].mean
    _, trained = bench(cfg)
    assert trained == []  # everything on disk now
    _, trained = bench(cfg, resume=False)
    assert len(trained) == 4
    _, trained = bench(cfg.model_copy(update={"epochs": 1}))  # other settings: a new key
    assert len(trained) == 4
    # A method whose targets changed since its runs were stored (TargetSource.version) is
    # trained again; the other methods' runs stay.
    for p in runs.glob("mv.*"):
        stale = FinishedRun.model_validate_json(p.read_text())
        p.write_text(stale.model_copy(update={"key": stale.key.split(":")[0]}).model_dump_json())
    _, trained = bench(cfg.model_copy(update={"epochs": 1}))
    assert trained == [("mv", 0), ("mv", 1)]


def test_the_table_reports_held_out_background_and_harmful_block_rates(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """Trained with background and harmful text, each run's held-out block rates reach
    the report (mean over seeds) and the table's last columns."""
    small = {k: v.subset(range(120)) for k, v in synthetic.items()}
    rest = synthetic["test"].subset(range(120, len(synthetic["test"])))  # not in test
    safe = [it.text for it in rest if it.gold == "safe"][:20]
    bad = [it.text for it in rest if it.gold != "safe"][:20]
    (tmp_path / "safe.txt").write_text("\n".join(safe) + "\n")
    (tmp_path / "bad.txt").write_text("\n".join(bad) + "\n")
    cfg = TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1, progress=False,
        background_safe=[str(tmp_path / "safe.txt")], background_weight=1.0,
        background_fraction=1.0, background_harmful=[str(tmp_path / "bad.txt")],
    )  # fmt: skip
    report = run_bench(
        small["train"], small["valid"], small["test"], methods=["mv"], seeds=2, config=cfg,
        out_dir=tmp_path / "out", score_annotators=False,
    )  # fmt: skip
    mv = report.results["mv"]
    assert mv.harmful_block_rate is not None and 0.0 <= mv.harmful_block_rate <= 1.0
    assert mv.background_block_rate is not None
    head, _, row = report.table().splitlines()[:3]
    assert head.split(" | ")[-2:] == ["held-out harmful blocked (0.5)", "s/run |"]
    assert row.split(" | ")[-2] == f"{mv.harmful_block_rate:.3f}"


def test_best_single_is_derived_from_the_single_runs_of_the_same_bench(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """best-single is the single:<a> run best on valid: the bench fetches its candidates
    like any run, so a single:<a> the bench also asks for trains once, and the choice,
    numbers and note are those of the trainer's own best-single fit."""
    from guardrail_dro.train.trainer import BiLevelTrainer

    small = {k: v.subset(range(100)) for k, v in synthetic.items()}
    cfg = TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=2, progress=False
    )
    names = small["train"].annotators
    trained: list[str] = []
    report = run_bench(
        small["train"],
        small["valid"],
        small["test"],
        methods=[f"single:{names[0]}", "best-single"],
        seeds=1,
        config=cfg,
        out_dir=tmp_path / "out",
        score_annotators=False,
        on_run=lambda m, s, _: trained.append(m),
    )
    assert sorted(trained) == sorted(f"single:{a}" for a in names)  # each once, no rerun
    assert (tmp_path / "out" / "runs" / "best-single.seed0.json").exists()
    best = report.results["best-single"]
    singles = [report.results[f"single:{names[0]}"]]
    assert best.seconds >= singles[0].seconds  # the candidates' sum
    # The trainer's own best-single fit on the same data makes the same choice.
    train, _ = small["train"].without_overlap(small["test"])
    direct = BiLevelTrainer(cfg.model_copy(update={"method": "best-single"})).fit(
        train, small["valid"]
    )
    chose = [n for n in direct.notes if "chose" in n]
    assert chose and chose[0] in best.notes, (chose, best.notes)
    assert best.per_seed[0] == direct.evaluate(small["test"])


def test_a_field_added_later_keys_runs_only_away_from_its_default(synthetic) -> None:
    """ft_estimator was added after runs were stored: at its default it enters no run
    key (a stored run of a method it does not touch stays valid; ours raised its target
    version instead), set away from it the key changes like any other setting."""
    import hashlib
    import json

    from guardrail_dro.train.bench_runs import ADDED_FIELDS, RUNS_VERSION, run_key

    data = (synthetic["train"], synthetic["valid"], synthetic["test"])
    cfg = TrainConfig(progress=False)
    shared = cfg.model_dump(mode="json", exclude={"method", "seed", "progress", "cache_dir"})
    for name in ADDED_FIELDS:
        del shared[name]
    before = json.dumps(
        {"config": shared, "data": [d.content_hash() for d in data], "runs": RUNS_VERSION},
        sort_keys=True,
    )
    assert run_key(cfg, *data) == hashlib.sha256(before.encode()).hexdigest()
    full = cfg.model_copy(update={"mode": "full"})
    learn = full.model_copy(update={"ft_estimator": "learn"})
    assert run_key(learn, *data) != run_key(full, *data)


def test_settings_a_run_never_reads_do_not_retrain_it(synthetic) -> None:
    """A frozen bench re-run with --encoder-lr or --ft-estimator learn (full mode's), or
    --harmful-weight without harmful text, trained every run again for nothing; in full
    mode they still count."""
    from guardrail_dro.train.bench_runs import FULL_MODE_ONLY, run_key

    data = (synthetic["train"], synthetic["valid"], synthetic["test"])
    frozen, full = TrainConfig(progress=False), TrainConfig(progress=False, mode="full")
    changed = {
        "encoder_lr": 1e-4,
        "warmup": 0.3,
        "probe_epochs": 0,
        "max_grad_norm": 5.0,
        "ft_estimator": "learn",
    }
    assert set(changed) == set(FULL_MODE_ONLY)
    for name, value in changed.items():
        assert run_key(frozen.model_copy(update={name: value}), *data) == run_key(frozen, *data)
        assert run_key(full.model_copy(update={name: value}), *data) != run_key(full, *data)
    heavier = frozen.model_copy(update={"harmful_weight": 3.0})
    assert run_key(heavier, *data) == run_key(frozen, *data)
    with_harm = frozen.model_copy(update={"background_harmful": ["harmful"]})
    heavier_harm = with_harm.model_copy(update={"harmful_weight": 3.0})
    assert run_key(heavier_harm, *data) != run_key(with_harm, *data)


def test_new_weights_in_the_same_backbone_folder_are_a_new_key(
    synthetic, tiny_backbone: Path, tmp_path: Path, monkeypatch
) -> None:
    """The key held the --backbone path only: new weights saved there (or the same folder
    named by another relative path) reused the old weights' runs."""
    import shutil

    from guardrail_dro.train.bench_runs import run_key

    data = (synthetic["train"], synthetic["valid"], synthetic["test"])
    folder = tmp_path / "bb"
    shutil.copytree(tiny_backbone, folder)
    key = run_key(TrainConfig(progress=False, backbone=str(folder)), *data)
    monkeypatch.chdir(tmp_path)
    assert run_key(TrainConfig(progress=False, backbone="bb"), *data) == key
    weights = next(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    assert run_key(TrainConfig(progress=False, backbone=str(folder)), *data) != key


def test_runs_with_train_layers_stored_before_the_frozen_layer_cache_are_not_reused(
    synthetic,
) -> None:
    """Since the frozen layers below --train-layers run once without dropout, a full-mode
    run stored before (its frozen layers in train mode) must train again; runs without
    train_layers keep their keys."""
    import hashlib
    import json

    from guardrail_dro.train.bench_runs import ADDED_FIELDS, RUNS_VERSION, run_key

    data = (synthetic["train"], synthetic["valid"], synthetic["test"])

    def old_key(cfg: TrainConfig) -> str:
        shared = cfg.model_dump(mode="json", exclude={"method", "seed", "progress", "cache_dir"})
        for name in ADDED_FIELDS:
            del shared[name]
        blob = {"config": shared, "data": [d.content_hash() for d in data], "runs": RUNS_VERSION}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    full = TrainConfig(mode="full", progress=False, lp_select="compete")  # as stored then
    assert run_key(full, *data) == old_key(full)
    top = full.model_copy(update={"train_layers": 2})
    assert run_key(top, *data) != old_key(top)


def test_full_mode_runs_stored_under_lp_select_compete_train_again_and_frozen_ones_do_not(
    synthetic,
) -> None:
    """Full-mode runs stored before ``lp_select`` kept the LP stage by competing: under the
    new default (``tuned``) they may keep another checkpoint, so they train again;
    frozen-mode runs have no LP stage and keep their keys whatever the field says."""
    from guardrail_dro.train.bench_runs import run_key

    data = (synthetic["train"], synthetic["valid"], synthetic["test"])
    full = TrainConfig(mode="full", progress=False)
    assert full.lp_select == "tuned"
    assert run_key(full, *data) != run_key(full.model_copy(update={"lp_select": "compete"}), *data)
    frozen = TrainConfig(progress=False)
    assert run_key(frozen, *data) == run_key(
        frozen.model_copy(update={"lp_select": "compete"}), *data
    )


def test_dro_mv_without_valid_groups_is_left_out_or_refused_before_training(
    synthetic, tiny_backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GroupDRO on majority vote needs valid's groups: among the default methods it is
    left out with a note; named, it is refused before any run trains (it used to fail
    after the methods before it, and the bench wrote no report)."""
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.errors import ConfigError
    from guardrail_dro.train.bench import bench_methods, default_methods

    small = {k: v.subset(range(60)) for k, v in synthetic.items()}
    valid = small["valid"]
    ungrouped = AnnotatedDataset(
        [it.model_copy(update={"group": None}) for it in valid.items], valid.schema, name="valid"
    )
    train = small["train"]
    methods, notes = bench_methods(None, train, ungrouped)
    assert "dro-mv" not in methods and methods == [
        m for m in default_methods(train) if m != "dro-mv"
    ]
    assert notes == ["dro-mv left out: the validation split has no groups"]
    assert bench_methods(None, train, valid) == (default_methods(train), [])
    cfg = TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1, progress=False
    )
    with pytest.raises(ConfigError, match="dro-mv needs groups"):
        run_bench(
            train, ungrouped, small["test"], methods=["mv", "dro-mv"], seeds=1, config=cfg,
            out_dir=tmp_path / "out",
        )  # fmt: skip
    assert not (tmp_path / "out" / "runs").exists()  # refused before mv trained
    # Among the defaults (here two of them, to stay fast): the bench runs without it and
    # its report, JSON and markdown say why.
    two = ["mv", "dro-mv"]
    monkeypatch.setattr("guardrail_dro.train.bench_plan.default_methods", lambda _t: two)
    report = run_bench(
        train, ungrouped, small["test"], seeds=1, config=cfg, out_dir=tmp_path / "out2",
        score_annotators=False,
    )  # fmt: skip
    assert list(report.results) == ["mv"]
    assert report.note_lines()[0] == "bench: dro-mv left out: the validation split has no groups"
    assert load_report(tmp_path / "out2" / "results.json").notes == report.notes
    assert "dro-mv left out" in (tmp_path / "out2" / "results.md").read_text()


def test_methods_whose_names_differ_only_in_non_ascii_keep_their_own_runs(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """The run file's slug maps every non-ASCII character to ``_``: two annotators named
    ``label_张三`` and ``label_李四`` once shared one file, and the second was reported
    with the first one's numbers. Each now has its own file, and a stored run of another
    method is never taken for this one's."""
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.train.bench_runs import FinishedRun, legacy_run_file, run_file

    small = {k: v.subset(range(60)) for k, v in synthetic.items()}
    first, second = small["train"].annotators[:2]
    names = {first: "label_张三", second: "label_李四"}
    train = small["train"]
    renamed = AnnotatedDataset(
        [
            it.model_copy(
                update={
                    "annotations": tuple(
                        a.model_copy(update={"annotator": names.get(a.annotator, a.annotator)})
                        for a in it.annotations
                    )
                }
            )
            for it in train.items
        ],
        train.schema,
        name="train",
    )
    methods = ["single:label_张三", "single:label_李四"]
    assert run_file(methods[0], 0) != run_file(methods[1], 0)
    assert run_file("mv", 0) == "mv.seed0.json"  # a safe name keeps its file
    cfg = TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1, progress=False
    )
    out = tmp_path / "out"

    def bench(methods: list[str]) -> list[str]:
        trained: list[str] = []
        run_bench(
            renamed, small["valid"], small["test"], methods=methods, seeds=1, config=cfg,
            out_dir=out, score_annotators=False, resume=True,
            on_run=lambda m, s, _: trained.append(m),
        )  # fmt: skip
        return trained

    assert bench(methods) == methods
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 2
    assert {FinishedRun.model_validate_json(p.read_text()).method for p in runs} == set(methods)
    assert bench(methods) == []  # each resumes from its own file
    # A run stored under the old name (slug only) is still reused, but only by its method.
    ascii_name = f"single:{small['train'].annotators[2]}"
    theirs = out / "runs" / run_file(methods[0], 0)
    legacy = out / "runs" / legacy_run_file(ascii_name, 0)
    stored = FinishedRun.model_validate_json(theirs.read_text())
    legacy.write_text(stored.model_copy(update={"method": ascii_name}).model_dump_json())
    (out / "runs" / legacy_run_file(methods[1], 0)).write_text(theirs.read_text())
    (out / "runs" / run_file(methods[1], 0)).unlink()
    assert bench([ascii_name, methods[1]]) == [methods[1]]


@pytest.mark.parametrize(
    ("methods", "match"),
    [
        (["mv", "ourz"], "unknown method 'ourz': choose one of ours,"),
        (["mv", "single:nobody"], r"single:nobody: no annotator 'nobody' in train; annotators"),
        (["mv", "teacher:nowhere"], r"teacher:nowhere: no trained model there"),
    ],
    ids=["unknown", "unknown-annotator", "missing-teacher"],
)
def test_every_method_is_checked_before_the_first_trains(
    synthetic, tmp_path: Path, methods: list[str], match: str
) -> None:
    """An unknown method or a single:<a> naming no annotator of train failed only when
    its turn came, after the methods before it had trained (minutes each in full mode)."""
    from guardrail_dro.errors import ConfigError

    small = {k: v.subset(range(40)) for k, v in synthetic.items()}
    with pytest.raises(ConfigError, match=match):
        run_bench(
            small["train"], small["valid"], small["test"], methods=methods, seeds=1,
            config=TrainConfig(progress=False, cache_dir=tmp_path / "c"),
            out_dir=tmp_path / "out",
        )  # fmt: skip
    assert not (tmp_path / "out").exists() and not (tmp_path / "c").exists()


def test_a_test_split_that_repeats_train_says_the_overlap_left_nothing(
    synthetic, tmp_path: Path
) -> None:
    """The bench drops train items also in test; with test = train that left none, and
    the trainer said train had no annotator labels. It names the overlap and the option
    that keeps them, before any run."""
    from guardrail_dro.errors import DataError

    small = {k: v.subset(range(40)) for k, v in synthetic.items()}
    with pytest.raises(
        DataError, match=r"dropping the 40 train item\(s\) that are also in test.*--keep-overlap"
    ):
        run_bench(
            small["train"], small["valid"], small["train"], methods=["mv"], seeds=1,
            config=TrainConfig(progress=False, cache_dir=tmp_path / "c"), out_dir=tmp_path / "o",
        )  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_a_metric_undefined_on_some_seeds_is_counted_not_hidden(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """A metric a seed cannot define (recall without toxic gold, precision of a seed that
    predicted nothing toxic) is left out of the mean: results.json counts those seeds,
    and the table says when a mean covers fewer seeds than the run has."""
    from guardrail_dro.train.bench import BenchReport, MethodResult
    from guardrail_dro.train.metrics import Metrics

    small = {k: v.subset(range(120)) for k, v in synthetic.items()}
    safe_only = [i for i, it in enumerate(small["test"]) if it.gold == "safe"]
    report = run_bench(
        small["train"], small["valid"], small["test"].subset(safe_only), methods=["mv"],
        seeds=2, score_annotators=False, out_dir=tmp_path / "out",
        config=TrainConfig(backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1,
                           progress=False),
    )  # fmt: skip
    mv = report.results["mv"]
    assert mv.mean["toxic_recall"] is None and mv.undefined_seeds["toxic_recall"] == 2
    assert "accuracy" not in mv.undefined_seeds

    seed = {"n": 10, "accuracy": 0.5, "macro_f1": 0.5, "worst_group_accuracy": 0.4}
    part = MethodResult(
        method="x", mean={"worst_group_accuracy": 0.4}, std={"worst_group_accuracy": 0.0},
        seconds=1.0, group_accuracy={}, undefined_seeds={"worst_group_accuracy": 1},
        per_seed=[Metrics(**seed), Metrics(**{**seed, "worst_group_accuracy": None})],
    )  # fmt: skip
    table = BenchReport.model_validate(
        {**report.model_dump(), "results": {"x": part.model_dump()}}
    ).table()
    assert "0.400 ± 0.000 (1 of 2 seeds)" in table


def test_the_embedding_bars_name_the_splits(
    synthetic, tiny_backbone: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The bench embeds every split before it trains; its bars read "embed split0" ..
    "split4", which told a user nothing about which texts took the time."""
    small = {k: v.subset(range(60)) for k, v in synthetic.items()}
    run_bench(
        small["train"], small["valid"], small["test"], methods=["mv"], seeds=1,
        score_annotators=False, out_dir=tmp_path / "out",
        config=TrainConfig(backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1),
    )  # fmt: skip
    err = capfd.readouterr().err
    assert all(f"embed {name}" in err for name in ("train", "valid", "test"))
    assert "split0" not in err
