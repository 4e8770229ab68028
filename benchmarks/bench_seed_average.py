"""Averaging seeds: is k seeds' mean better than one seed, on items nothing was chosen on?

The frozen-mode classifiers of different seeds differ; for ``ours`` each seed also
learns its own soft labels, from an estimator fitted on valid. Averaging the seeds'
log-probabilities (the normalised geometric mean of their probabilities) is, for linear
heads on one frozen encoder, one linear head with the averaged weights (log-softmax
differs from the logits by a constant per text): free at inference. Whether it helps
cannot be read on valid, where each seed's estimator and epoch were chosen (in-sample),
so this bench splits valid in two halves: every seed is fitted and selected on one half
and scored on the other half (held out) and on test, and then the roles swap.

For each method it prints and writes, per half: the seeds' mean and the normalised
geometric mean of the k seeds' probabilities, as worst-group accuracy, accuracy and
toxic-vs-safe ROC AUC (1 - P(safe)), on the held-out half and on test::

    python benchmarks/bench_seed_average.py --methods ours,mv --seeds 4 \\
        --json benchmarks/results/seed_average.json

Needs the bundled toxic-questions only (``--data`` names other splits the way ``train``
reads them: ``--data train=PATH --data valid=PATH --data test=PATH``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from guardrail_dro.cli.quick_recipe import real_data_config
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.readers import read_splits
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.metrics import score_split, toxic_auc


def geometric_mean(probas: list[np.ndarray]) -> np.ndarray:
    """The normalised geometric mean of class probabilities (= averaged logits)."""
    logp = np.mean([np.log(np.clip(np.asarray(p, np.float64), 1e-300, None)) for p in probas], 0)
    p = np.exp(logp - logp.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def scores(ds: AnnotatedDataset, proba: np.ndarray) -> dict[str, float | None]:
    m = score_split(ds, proba.argmax(1))
    return {
        "worst_group_accuracy": m.worst_group_accuracy,
        "accuracy": m.accuracy,
        "toxic_auc": toxic_auc(ds, proba),
    }


def halves(n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[: n // 2].tolist()), sorted(order[n // 2 :].tolist())


def run(
    splits: dict[str, AnnotatedDataset],
    methods: list[str],
    seeds: int,
    cache: Path | None,
    base: TrainConfig | None = None,
) -> list[dict]:
    """``base``: the shared config (default: the trainer's; ``real_data_config`` for the
    quickstart's recipe)."""
    from guardrail_dro.train.trainer import BiLevelTrainer

    valid, test = splits["valid"], splits["test"]
    a, b = halves(len(valid))
    rows = []
    for method in methods:
        for name, (fit_on, held_on) in {"A": (a, b), "B": (b, a)}.items():
            sel, held = valid.subset(fit_on), valid.subset(held_on)
            probas: dict[str, list[np.ndarray]] = {"held": [], "test": []}
            for seed in range(seeds):
                cfg = (base or TrainConfig()).model_copy(
                    update={"method": method, "seed": seed, "cache_dir": cache, "progress": False}
                )
                t0 = time.perf_counter()
                res = BiLevelTrainer(cfg).fit(splits["train"], sel)
                probas["held"].append(res.predict_proba(held.texts))
                probas["test"].append(res.predict_proba(test.texts))
                Console().print(
                    f"{method} half {name} seed {seed}: {time.perf_counter() - t0:.0f} s",
                    highlight=False,
                )
            for split, ds in (("held", held), ("test", test)):
                singles = [scores(ds, p) for p in probas[split]]
                rows.append({
                    "method": method,
                    "fitted_on": name,
                    "scored_on": split,
                    "seeds": singles,
                    "average": scores(ds, geometric_mean(probas[split])),
                })  # fmt: skip
    return rows


def _mean(values: list[float | None]) -> float:
    return float(np.mean([v for v in values if v is not None]))


def table(rows: list[dict]) -> Table:
    t = Table(
        "method",
        "fitted on",
        "scored on",
        "worst group: seeds' mean (min, max) -> average",
        "accuracy",
        "toxic ROC AUC",
        title="one seed against the average of the seeds (held = the valid half not fitted on)",
    )
    for r in rows:
        cells = []
        for key in ("worst_group_accuracy", "accuracy", "toxic_auc"):
            vals = [s[key] for s in r["seeds"]]
            avg = r["average"][key]
            known = [v for v in vals if v is not None]
            cells.append(
                f"{_mean(vals):.3f} ({min(known):.3f}, {max(known):.3f}) -> {avg:.3f}"
                if known and avg is not None
                else "-"
            )
        t.add_row(r["method"], r["fitted_on"], r["scored_on"], *cells)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="ours,mv", help="comma-separated")
    ap.add_argument("--seeds", type=int, default=4, help="seeds averaged (2 or more)")
    ap.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="SPLIT=PATH",
        help="train / valid / test as `train` reads them (default: bundled toxic-questions)",
    )
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument(
        "--recipe",
        choices=["default", "quick"],
        default="default",
        help="default: the trainer's defaults (linear head); quick: the quickstart's recipe",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.seeds < 2:
        ap.error("--seeds: at least 2 to average")
    paths: dict[str, str | Path | None] = {
        s: f"toxic-questions:{s}" for s in ("train", "valid", "test")
    }
    for spec in args.data:
        split, eq, path = spec.partition("=")
        if not eq or split not in paths:
            ap.error(f"--data {spec!r}: write train=PATH, valid=PATH or test=PATH")
        paths[split] = path
    splits, _ = read_splits(paths)
    methods = [m for m in args.methods.split(",") if m]
    base = real_data_config() if args.recipe == "quick" else None
    rows = run(splits, methods, args.seeds, args.cache_dir, base)
    Console(width=200).print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"options": {k: str(v) for k, v in vars(args).items()}, "runs": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
