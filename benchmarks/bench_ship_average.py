"""Which model should the quickstart ship: the seed valid ranks first, or the seeds' average?

The quickstart's bench trains k seeds of ``ours`` (3) and ships one model. This bench
trains ``--seeds`` seeds of ``ours`` with the quickstart's recipe (fitted and selected on
all of valid, as the quickstart does), cuts them into consecutive groups of k, and for
each group scores on test: the seeds' mean, the seed with the best valid worst-group
accuracy (lowest seed on a tie; what the quickstart shipped before 2026-12-06) and the
average of the group (``train/seed_average.py``; what it ships now). Read-outs are those
of the guard: worst-group accuracy, accuracy, ROC AUC of the toxic score (with the
model's own toxic-score choice), the test FPR and recall at the threshold where valid's
recall is 0.90, and the held-out background-safe text blocked at 0.5::

    python benchmarks/bench_ship_average.py --seeds 12 --group 3 \\
        --json benchmarks/results/ship_average.json

About 25 s per seed here (2 cores); bundled toxic-questions only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from guardrail_dro.cli.quick_recipe import real_data_config
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.readers import read_splits
from guardrail_dro.train.metrics import score_split, toxic_auc
from guardrail_dro.train.result import TrainResult

KEYS = ("worst_group", "accuracy", "toxic_auc", "fpr_at_valid_recall_90", "background_blocked")
RECALL = 0.90


def guard_scores(result: TrainResult, ds: AnnotatedDataset) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, toxic score) of ``result`` as the exported guard computes
    them: the class head, mixed with the binary head where the model chose one."""
    p = result.predict_proba(ds.texts, guard=True)
    safe = np.asarray(ds.schema.safe_mask(), dtype=bool)
    return p, 1.0 - p[:, safe].sum(1)


def read_outs(result: TrainResult, valid: AnnotatedDataset, test: AnnotatedDataset) -> dict:
    """Test read-outs; the recall-0.90 threshold is the guard's own ``target_recall``
    operating point on valid (``serve/calibration.py``)."""
    from guardrail_dro.serve.calibration import binary_metrics, operating_curve

    safe = np.asarray(test.schema.safe_mask(), dtype=bool)
    _, tv = guard_scores(result, valid)
    thr = operating_curve(tv, ~safe[valid.gold_array()]).choose("target_recall", RECALL).threshold
    p, tt = guard_scores(result, test)
    at_thr = binary_metrics(tt >= thr, ~safe[test.gold_array()], threshold=thr)
    m = score_split(test, p.argmax(1))
    bg = result.background
    return {
        "worst_group": m.worst_group_accuracy,
        "accuracy": m.accuracy,
        "toxic_auc": toxic_auc(test, p),
        "fpr_at_valid_recall_90": at_thr.fpr,
        "recall_at_valid_recall_90": at_thr.recall,
        "background_blocked": bg.heldout_block_rate if bg is not None else None,
        "valid_worst_group": result.valid_metrics.worst_group_accuracy,
    }


def run(splits: dict[str, AnnotatedDataset], seeds: int, group: int, cache: Path | None) -> dict:
    from guardrail_dro.train.seed_average import average_results
    from guardrail_dro.train.trainer import BiLevelTrainer

    base = real_data_config(cache).model_copy(update={"method": "ours", "progress": False})
    valid, test = splits["valid"], splits["test"]
    fits, per_seed = {}, {}
    for s in range(seeds):
        fits[s] = BiLevelTrainer(base.model_copy(update={"seed": s})).fit(splits["train"], valid)
        per_seed[s] = read_outs(fits[s], valid, test)
        Console().print(f"seed {s}: {fits[s].seconds:.0f} s", highlight=False)
    groups = []
    for start in range(0, seeds - group + 1, group):
        members = list(range(start, start + group))
        best = max(members, key=lambda s: (per_seed[s]["valid_worst_group"] or 0.0, -s))
        avg = read_outs(average_results([fits[s] for s in members], valid), valid, test)
        mean = {k: float(np.mean([per_seed[s][k] or 0.0 for s in members])) for k in KEYS}
        groups.append(
            {"seeds": members, "mean": mean, "valid_best": {"seed": best, **per_seed[best]},
             "average": avg}
        )  # fmt: skip
    return {"per_seed": per_seed, "groups": groups}


def table(result: dict) -> Table:
    t = Table("seeds", "model", *KEYS, title="ours, quick recipe, test")
    rows: dict[str, list[dict]] = {"mean": [], "valid_best": [], "average": []}
    for g in result["groups"]:
        for name in rows:
            rows[name].append(g[name])
            t.add_row(str(g["seeds"]), name, *(f"{g[name][k] or 0.0:.3f}" for k in KEYS))
    for name, rs in rows.items():
        t.add_row("all", name, *(f"{np.mean([r[k] or 0.0 for r in rs]):.3f}" for k in KEYS))
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=12, help="seeds trained (0..n-1)")
    ap.add_argument("--group", type=int, default=3, help="seeds per shipped model")
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.group < 2 or args.seeds < args.group:
        ap.error("--group: at least 2, and --seeds at least --group")
    splits, _ = read_splits({s: f"toxic-questions:{s}" for s in ("train", "valid", "test")})
    result = run(splits, args.seeds, args.group, args.cache_dir)
    Console(width=200).print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"options": {k: str(v) for k, v in vars(args).items()}, **result}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
