"""Compare our method with its baselines over seeds: JSON, a markdown table, PNG plots.

Every method trains with the same backbone, mode and budget (one ``TrainConfig`` with
only ``method`` and ``seed`` changed), selects on valid, and is scored once on test.
Beside the methods, each annotator's own test labels are scored as a judge (no
training; ``judges.py``): extra rows, computed after the methods and apart from them.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, computed_field

from guardrail_dro.data.items import AnnotatedDataset, find_leakage
from guardrail_dro.errors import ConfigError
from guardrail_dro.train.background_data import leaving_out, shared_with
from guardrail_dro.train.bench_markdown import results_markdown
from guardrail_dro.train.bench_plan import (
    bench_methods,
    check_arguments,
    check_out_dir,
    default_methods,
    method_note_lines,
)
from guardrail_dro.train.bench_runs import FinishedRun, RunStore, run_key
from guardrail_dro.train.collapse import bench_warnings
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.data_checks import check_train_left
from guardrail_dro.train.judges import JudgeInfo, JudgeResult, score_judges
from guardrail_dro.train.metrics import (
    ACCURACY,
    HEADLINE,
    HEADLINE_LABELS,
    WORST_GROUP_ACCURACY,
    Metrics,
)
from guardrail_dro.train.paired import PairedComparison, paired_bootstrap
from guardrail_dro.train.result import TrainResult

__all__ = [
    "BenchReport",
    "MethodResult",
    "bench_methods",
    "check_out_dir",
    "default_methods",
    "run_bench",
]

TABLE_COLUMNS = tuple(k for k in HEADLINE if k != "toxic_precision")
"""The markdown table's metric columns: the headline but precision, which results.json
keeps, so that the table stays narrow enough to read."""


class MethodResult(BaseModel):
    method: str
    mean: dict[str, float | None]
    std: dict[str, float | None]
    seconds: float
    per_seed: list[Metrics]
    valid_mean: dict[str, float | None] = {}
    unseen_mean: dict[str, float | None] = {}
    """Test items whose text is in neither train nor valid; empty when there are none."""
    group_accuracy: dict[str, float]
    group_weights: dict[str, float] | None = None
    annotator_weight_by_group: dict[str, dict[str, float]] | None = None
    notes: list[str] = []
    background_block_rate: float | None = None
    """Share of held-out background-safe text blocked at the guard's default threshold
    (mean over seeds); None when trained without background text."""
    background_block_rate_valid_threshold: float | None = None
    """The same at the threshold of best valid worst-group binary accuracy."""
    harmful_block_rate: float | None = None
    """Share of held-out harmful text blocked at the guard's default threshold (mean over
    seeds); None when trained without harmful text."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def undefined_seeds(self) -> dict[str, int]:
        """Metric -> seeds it was undefined on, left out of its mean (in results.json)."""
        runs = self.per_seed
        return {k: n for k in HEADLINE if (n := sum(getattr(r, k) is None for r in runs))}


class BenchReport(BaseModel):
    date: str
    machine: str
    seeds: list[int]
    config: dict
    data: dict[str, dict]
    leakage: list[str]
    unseen_test_items: int = 0
    embed_seconds: float = 0.0
    total_seconds: float = 0.0
    results: dict[str, MethodResult]
    judges: dict[str, JudgeResult] = {}
    """Each annotator's own test labels scored as a judge (no training), by annotator."""
    paired: dict[str, PairedComparison] = {}
    """The reference method (``ours``) against every other method, and against each
    annotator whose own labels cover every test item (``judge:<a>``): the paired,
    group-stratified bootstrap interval of the test difference (``train/paired.py``)."""
    notes: list[str] = []
    """What the bench itself decided or noticed (a default method left out, test without groups)."""
    warnings: list[str] = []
    """Methods whose test decision is close to constant or misses most toxic items, with
    what always predicting the most common class scores (``collapse.py``)."""

    def note_lines(self) -> list[str]:
        """The bench's own notes, then each method's notes on its runs (e.g. which
        annotators ``best-single`` skipped), one ``method: note`` line each."""
        own = [f"bench: {n}" for n in self.notes]
        return own + method_note_lines(self.results.values())

    def table(self) -> str:
        """A markdown table of mean ± std over seeds, best worst-group first."""
        cols = TABLE_COLUMNS
        bg = any(r.background_block_rate is not None for r in self.results.values())
        bad = any(r.harmful_block_rate is not None for r in self.results.values())
        head = (
            "method",
            *(HEADLINE_LABELS[c] for c in cols),
            "acc / worst, unseen test",
            *(("held-out background blocked (0.5 / valid thr.)",) if bg else ()),
            *(("held-out harmful blocked (0.5)",) if bad else ()),
            "s/run",
        )
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        order = sorted(
            self.results.values(), key=lambda r: -(r.mean.get(WORST_GROUP_ACCURACY) or 0.0)
        )
        for r in order:
            cells = [f"`{r.method}`"]
            for c in cols:
                m, s = r.mean.get(c), r.std.get(c)
                gone = r.undefined_seeds.get(c, 0)  # a mean over fewer seeds says so
                of = f" ({len(r.per_seed) - gone} of {len(r.per_seed)} seeds)" if gone else ""
                cells.append("n/a" if m is None else f"{m:.3f} ± {s:.3f}{of}")
            u = r.unseen_mean
            acc, worst = u.get(ACCURACY), u.get(WORST_GROUP_ACCURACY)
            cells.append(
                "n/a" if not u else f"{acc:.3f} / " + ("n/a" if worst is None else f"{worst:.3f}")
            )
            if bg:
                bl, cal = r.background_block_rate, r.background_block_rate_valid_threshold
                cells.append(
                    "n/a"
                    if bl is None
                    else f"{bl:.3f} / " + ("n/a" if cal is None else f"{cal:.3f}")
                )
            if bad:
                h = r.harmful_block_rate
                cells.append("n/a" if h is None else f"{h:.3f}")
            cells.append(f"{r.seconds:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _agg(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v))


def run_bench(
    train: AnnotatedDataset,
    valid: AnnotatedDataset,
    test: AnnotatedDataset,
    *,
    methods: Sequence[str] | None = None,
    seeds: int | Sequence[int] = 3,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    on_run: Callable[[str, int, Metrics], None] | None = None,
    on_fit: Callable[[str, int, TrainResult], None] | None = None,
    score_annotators: bool = True,
    annotator_info: Mapping[str, JudgeInfo] | None = None,
    resume: bool = False,
    reference: str | None = "ours",
) -> BenchReport:
    """Train every method for every seed, score on test, aggregate, write reports.

    Args:
        methods: default ``default_methods(train)``.
        seeds: a count (0..n-1) or explicit seeds.
        config: the shared training config; ``method`` and ``seed`` are overridden (a
            copy per run: a setting only some methods read is no error, ``for_run``).
            With ``drop_overlap``, no run trains on a train item or a background text
            that is also in test.
        out_dir: when given, writes results.json, results.md and the plots there.
        on_run: called after each (method, seed) trained with its test metrics (progress
            display); ``best-single``'s candidates are reported as ``single:<a>``
            (best-single itself is derived from them: ``bench_runs.RunStore``).
        on_fit: called after each (method, seed) trained with its trained model, for a
            caller that ships one of them (the quickstart) instead of training it again.
        score_annotators: also score each annotator's own test labels as a judge
            (``BenchReport.judges``); the methods' numbers do not depend on it.
        annotator_info: names, model ids and costs per 1,000 texts of the annotators
            (``JudgeInfo``), for the judge rows.
        resume: reuse the runs a previous bench with the same config and data left in
            ``out_dir/runs/`` (each run is written there as it finishes, resume or not);
            neither ``on_run`` nor ``on_fit`` is called for a reused run (no model).
        reference: the method the paired intervals compare every other with
            (``BenchReport.paired``); none when it is not among ``methods`` or the test
            split has no groups.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    check_arguments({"train": train, "valid": valid, "test": test}, config, methods, out_dir)
    base = config or TrainConfig()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("the benchmark needs at least one seed")
    test.gold_array()  # fail now, naming the split, not after the first method trained
    methods, bench_notes = bench_methods(methods, train, valid, test)
    if out_dir is not None:
        check_out_dir(out_dir)
    leak = find_leakage({"train": train, "valid": valid, "test": test}).lines()
    # Test items whose text is in neither train nor valid: the score no method could have
    # fit (toxic-questions repeats 158 test questions in valid, where `ours` fits).
    seen = test.overlaps(train, valid)
    unseen = test.subset(np.nonzero(~seen)[0])
    if base.drop_overlap:
        # The trainer drops train items seen in valid; the bench also keeps test unseen.
        train, dropped = train.without_overlap(test)
        check_train_left(train, dropped, "test")
    results: dict[str, MethodResult] = {}
    runs_dir = Path(out_dir) / "runs" if out_dir is not None else None
    key = run_key(base, train, valid, test)
    if base.drop_overlap and shared_with(base.background_safe, base.background_harmful, test.texts):
        key += ":background-without-test"  # runs stored before the test drop trained on it
    embed_seconds = _warm_cache(base, train, valid, test)
    bar = tqdm(
        total=len(methods) * len(seed_list), desc="bench", unit="run", disable=not base.progress
    )

    def fitted(method: str, seed: int, res: TrainResult, done: FinishedRun) -> None:
        if on_run:
            on_run(method, seed, done.test)
        if on_fit:
            on_fit(method, seed, res)

    store = RunStore(base, key, (train, valid, test), ~seen, runs_dir, resume=resume, on_fit=fitted)
    preds: dict[str, np.ndarray] = {}
    for method in methods:
        runs: list[Metrics] = []
        vals: list[Metrics] = []
        fresh: list[Metrics] = []
        secs: list[float] = []
        notes: list[str] = []
        gw: list[dict[str, float]] = []
        aw: list[dict[str, dict[str, float]]] = []
        block: list[float] = []
        block_cal: list[float | None] = []
        block_bad: list[float] = []
        kept: list[list[int] | None] = []
        for seed in seed_list:
            with leaving_out("test", test.texts):  # as train is, above
                done = store.get(method, seed)
            kept.append(done.test_pred)
            m = done.test
            secs.append(done.seconds)
            runs.append(m)
            vals.append(done.valid)
            fresh.append(done.unseen)
            notes.extend(n for n in done.notes if n not in notes)
            if done.group_weights:
                gw.append(done.group_weights)
            if done.annotator_weight_by_group:
                aw.append(done.annotator_weight_by_group)
            if done.background_block_rate is not None:
                block.append(done.background_block_rate)
                block_cal.append(done.background_block_rate_valid_threshold)
            if done.harmful_block_rate is not None:
                block_bad.append(done.harmful_block_rate)
            bar.set_postfix(method=method, **m.progress())
            bar.update(1)
        if all(p is not None for p in kept):
            preds[method] = np.asarray(kept)
        mean: dict[str, float | None] = {}
        std: dict[str, float | None] = {}
        for k in HEADLINE:
            mean[k], std[k] = _agg([getattr(r, k) for r in runs])
        groups = runs[0].group_accuracy.keys()
        results[method] = MethodResult(
            valid_mean={k: _agg([getattr(v, k) for v in vals])[0] for k in HEADLINE},
            # No unseen test item (test inside train or valid): no score, not 0 of 0.
            unseen_mean={k: _agg([getattr(v, k) for v in fresh])[0] for k in HEADLINE}
            if len(unseen)
            else {},
            method=method,
            mean=mean,
            std=std,
            seconds=float(np.mean(secs)),
            per_seed=runs,
            group_accuracy={g: float(np.mean([r.group_accuracy[g] for r in runs])) for g in groups},
            group_weights={g: float(np.mean([w[g] for w in gw])) for g in gw[0]} if gw else None,
            annotator_weight_by_group={
                g: {a: float(np.mean([w[g][a] for w in aw])) for a in aw[0][g]} for g in aw[0]
            }
            if aw
            else None,
            notes=notes,
            background_block_rate=_agg(block)[0],
            background_block_rate_valid_threshold=_agg(block_cal)[0],
            harmful_block_rate=_agg(block_bad)[0],
        )
    bar.close()
    judges = score_judges(test, annotator_info) if score_annotators else {}
    report = BenchReport(
        date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        machine=f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{_cpu_count()} cores",
        seeds=seed_list,
        config=base.model_dump(mode="json", exclude={"method", "seed", "progress"}),
        data={
            n: {
                "items": len(d),
                "annotators": len(d.annotators),
                "groups": len(d.groups),
                "sha256": d.content_hash(),
            }
            for n, d in (("train", train), ("valid", valid), ("test", test))
        },
        leakage=leak,
        unseen_test_items=len(unseen),
        embed_seconds=embed_seconds,
        total_seconds=time.perf_counter() - started,
        results=results,
        judges=judges,
        paired=_paired(test, preds, reference, judges=score_annotators),
        notes=bench_notes,
        warnings=bench_warnings(test, results, preds),
    )
    if out_dir is not None:
        write_report(report, Path(out_dir))
    return report


def _paired(
    test: AnnotatedDataset, preds: dict[str, np.ndarray], reference: str | None, *, judges: bool
) -> dict[str, PairedComparison]:
    """``reference`` against every other method, and, with ``judges``, against each
    annotator whose own labels cover every test item (``judge:<a>``, one "seed")."""
    groups = test.group_array()
    if reference not in preds or not np.any(groups >= 0):
        return {}
    rivals = dict(preds)
    if judges:
        labels = test.label_matrix()
        for j, a in enumerate(test.annotators):
            if np.all(labels[:, j] >= 0):
                rivals[f"judge:{a}"] = labels[:, j]
    if len(rivals) < 2:
        return {}
    return paired_bootstrap(test.gold_array(), groups, rivals, reference)


def _warm_cache(cfg: TrainConfig, *splits: AnnotatedDataset) -> float:
    """Embed every split once (frozen mode) so that s/run measures training alone; the
    seconds it took (about 0 when everything was cached already)."""
    if cfg.mode != "frozen":
        return 0.0
    from guardrail_dro.data.background import background_dataset, load_background
    from guardrail_dro.train.features import build_features

    t0 = time.perf_counter()
    named = dict(zip(("train", "valid", "test"), splits, strict=True))  # progress bars' names
    if cfg.background_safe and splits[0].schema.safe:
        for sources, kind in ((cfg.background_safe, "safe"), (cfg.background_harmful, "harmful")):
            if sources:
                bg = load_background(sources, harmful=kind == "harmful")
                texts = [*bg.train, *bg.heldout]
                named[f"background-{kind}"] = background_dataset(texts, splits[0].schema)
    build_features(cfg, named)
    return time.perf_counter() - t0


def _cpu_count() -> int:
    import os

    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def write_report(report: BenchReport, out: Path) -> None:
    """results.json, results.md (``bench_markdown``), group_accuracy.png,
    annotator_weights.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(report.model_dump_json(indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(report))
    from guardrail_dro.train.bench_plots import (
        plot_annotator_weights,
        plot_group_accuracy,
        plot_paired,
    )

    for plot, name in (
        (plot_group_accuracy, "group_accuracy.png"),
        (plot_annotator_weights, "annotator_weights.png"),
        (plot_paired, "paired_differences.png"),
    ):
        if plot(report, out / name) is None:
            # Nothing to draw for this report: a plot an earlier bench left in a reused
            # --out showed methods (or a comparison) that this report does not have.
            (out / name).unlink(missing_ok=True)


def load_report(path: str | Path) -> BenchReport:
    return BenchReport.model_validate(json.loads(Path(path).read_text()))
