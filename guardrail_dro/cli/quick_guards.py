"""The quickstart's export stage: the input guard, and the output rail's own guard.

Its own module so that ``cli/quickstart.py`` stays the orchestrator. The output rail
checks assistant replies, which the input guard's training text never contains: a
second guard trained with ordinary and harmful replies on top of the same recipe
(``quick_recipe.OUTPUT_BACKGROUND``, measured there) serves that rail, through the
rails' per-rail guard (``guard.protect(output=Guard.load(...))``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from guardrail_dro.cli.quick_recipe import BACKGROUND_SETTING, output_sources
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ExportParityError

if TYPE_CHECKING:
    from guardrail_dro.train.config import TrainConfig
    from guardrail_dro.train.result import TrainResult

__all__ = ["export_guard", "ship_average", "train_output_guard"]


def ship_average(
    results: dict[int, TrainResult],
    seeds: int,
    cfg: TrainConfig,
    splits: dict[str, AnnotatedDataset],
    metric: str,
    console: Console,
) -> TrainResult:
    """The model the quickstart ships: the average of seeds 0 .. ``seeds`` - 1 of
    ``ours``, one head (``train/seed_average.py``; one seed as it is).

    ``results`` holds the fits the bench just made: every seed, since the quickstart's
    bench trains every run (no ``resume``). A seed missing there (a bench resumed from
    its run store, which keeps scores, not models) is trained here as the bench trains
    it (its config with that seed, on train without the items also in test), so the
    guard is never an average of fewer seeds than the verdict's.

    Why the average and not the seed valid ranks first (as before 2026-12-06): over four
    triplets of seeds the latter's test worst group was no better than the seeds' mean,
    and the average's guard ranked and blocked better every time (README, Averaging
    seeds)."""
    from guardrail_dro.train.seed_average import average_results
    from guardrail_dro.train.trainer import BiLevelTrainer

    missing = [s for s in range(seeds) if s not in results]
    if missing:
        console.print(
            f"  training ours again for seed(s) {', '.join(map(str, missing))}: the bench "
            "kept no model of them, and the guard ships every seed's average",
            highlight=False,
        )
    train = splits["train"]
    if cfg.drop_overlap:
        train, _ = train.without_overlap(splits["test"])  # as the bench trains
    for seed in missing:
        update = {"method": "ours", "seed": seed, "progress": False, "average_seeds": 1}
        results[seed] = BiLevelTrainer(cfg.model_copy(update=update)).fit(train, splits["valid"])
    runs = [results[s] for s in range(seeds)]
    result = average_results(runs, splits["valid"])
    if len(runs) > 1:
        per = ", ".join(
            f"seed {s} {getattr(r.valid_metrics, metric) or 0.0:.3f}" for s, r in enumerate(runs)
        )
        console.print(
            f"  shipping ours: the average of its {len(runs)} seeds' heads (valid "
            f"{metric.replace('_', ' ')} {per}; averaged "
            f"{getattr(result.valid_metrics, metric) or 0.0:.3f})",
            highlight=False,
        )
    return result


def export_guard(
    model_dir: Path, guard_dir: Path, valid: AnnotatedDataset, console: Console
) -> Path:
    """Export int8 (fp32 when no int8 recipe passes the gate, said plainly) at the
    balanced point: a chat guard sees mostly safe traffic, so the point is chosen by
    balanced accuracy, not by accuracy on a mostly-toxic red-team split (README,
    "Operating points")."""
    from export.onnx import export_onnx

    objective = "worst_group_balanced_accuracy"
    try:
        return export_onnx(
            model_dir, guard_dir, int8=True, valid=valid, overwrite=True, objective=objective
        )
    except ExportParityError as exc:
        # No int8 recipe passed the gate on this model's validation split: ship the fp32
        # guard rather than no guard, and say so.
        console.print(f"  [yellow]int8 not shipped:[/] {escape(str(exc))}", highlight=False)
        return export_onnx(
            model_dir, guard_dir, int8=False, valid=valid, overwrite=True, objective=objective
        )


def train_output_guard(
    cfg: TrainConfig,
    splits: dict[str, AnnotatedDataset],
    out: Path,
    console: Console,
    *,
    seeds: int = 1,
) -> Path:
    """Train (``ours``) and export the output rail's guard: the quickstart's recipe plus
    ordinary and harmful assistant replies (``output_sources``), the background at
    ``BACKGROUND_SETTING`` (the measured recipe: one training, never the six of
    ``--choose-background``'s grid). Not distilled by ``--student``.

    Like the input guard it ships one head, the average of ``seeds`` seeds (0 ..
    ``seeds`` - 1; ``train --average-seeds``). Measured on this recipe (variant o3 of
    ``bench_chat_variants.py``, 2026-12-06): the average of seeds 0-2 blocked 63 of 70
    held-out harmful replies and 113 of 126 harmful requests against 57-62 and 99-108 for
    the seeds alone, 0 of 71 ordinary replies as each seed, for about a minute more of
    training (README, "Harmful text")."""
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import BiLevelTrainer

    bg, bad = output_sources(cfg.background_safe, cfg.background_harmful)
    console.print(
        f"  output rail: training a second guard on the replies too ({', '.join(bg + bad)}"
        + (f"; the average of {seeds} seeds)" if seeds > 1 else ")"),
        highlight=False,
        markup=False,  # the sources are file names: "[v2]" is text
    )
    train, _ = splits["train"].without_overlap(splits["test"])  # as the bench trains
    ocfg = cfg.model_copy(
        update={
            "method": "ours",
            "progress": False,
            "background_safe": bg,
            "background_harmful": bad,
            "background_weight": BACKGROUND_SETTING[0],
            "background_fraction": BACKGROUND_SETTING[1],
            "average_seeds": seeds,
        }
    )
    result = BiLevelTrainer(ocfg).fit(train, splits["valid"])
    fit = {k: v for k, v in splits.items() if k != "test"}  # recorded as the input model's
    TrainedModel.from_result(
        result,
        {k: v.content_hash() for k, v in fit.items()},
        data_names={k: v.name for k, v in fit.items() if v.name},
        data_sizes={k: len(v) for k, v in fit.items()},
    ).save(out / "output-model")
    guard_dir = export_guard(out / "output-model", out / "guard-output", splits["valid"], console)
    console.print(f"  output rail guard -> {guard_dir}", markup=False)
    return guard_dir
