"""Does the estimator gain from what the LLM annotators say about their labels?

Issue 11 item 3: annotations may carry a confidence and a rationale; the soft-label
estimator can read both (``use_confidence``, ``use_rationale``: off, on, or auto = as the
2-fold CV inside valid prefers). This trains ``ours`` on the synthetic data with each
setting of one signal (the other off) and the baselines beside it, frozen
all-MiniLM-L6-v2, and scores test worst-group accuracy, mean over data seeds:

- ``default``: the synthetic LLMs fail on the jailbreak phrase, which shows in the text
  (and in their rationale: "it opens with a reminder of the rules");
- ``random``: LLM accuracy 0.7, errors at random: nothing in the text tells a wrong LLM
  label from a right one, only the signal can.

    python benchmarks/bench_annotation_signals.py --signal rationale --seeds 6 \\
        --json benchmarks/results/annotation_signals_rationale.json

Prints a table; the JSON keeps every run (seed, setting, arm, test worst-group and
accuracy, what auto chose, seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

SETTINGS = {
    "default": {},
    "random": {"llm_accuracy": 0.7},
}
ARMS = ("off", "on", "auto")
BASELINES = ("mv", "soft", "ds")


def run(signal: str, seeds: int, epochs: int, cache: Path | None) -> list[dict]:
    from guardrail_dro.data.synthetic import make_synthetic
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    other = "confidence" if signal == "rationale" else "rationale"
    rows = []
    for setting, kw in SETTINGS.items():
        for seed in range(seeds):
            data = make_synthetic(seed=seed, **kw, **{f"llm_{signal}": "informative"})
            jobs = [("ours", arm) for arm in ARMS] + [(m, "-") for m in BASELINES]
            for method, arm in jobs:
                cfg = TrainConfig(
                    method=method,
                    epochs=epochs,
                    seed=seed,
                    cache_dir=cache,
                    progress=False,
                    **{f"use_{other}": "off"},
                    **({f"use_{signal}": arm} if arm != "-" else {}),
                )
                t0 = time.perf_counter()
                res = BiLevelTrainer(cfg).fit(data["train"], data["valid"])
                m = res.evaluate(data["test"])
                chose = getattr(res.estimator, f"has_{signal}", None)
                rows.append({
                    "setting": setting,
                    "seed": seed,
                    "method": method,
                    "arm": arm,
                    "test_worst_group_accuracy": m.worst_group_accuracy,
                    "test_accuracy": m.accuracy,
                    "reads_signal": chose,
                    "seconds": round(time.perf_counter() - t0, 1),
                })  # fmt: skip
                Console().print(
                    f"{setting} seed {seed} {method} {arm}: worst {m.worst_group_accuracy:.3f}"
                    f" (reads {signal}: {chose})",
                    highlight=False,
                )
    return rows


def table(rows: list[dict], signal: str) -> Table:
    cols = [f"ours {a}" for a in ARMS] + list(BASELINES)
    t = Table("setting", *cols, f"auto read the {signal}", title="test worst-group accuracy")
    for setting in SETTINGS:
        mine = [r for r in rows if r["setting"] == setting]
        cells = []
        for col in cols:
            method, _, arm = col.partition(" ")
            vals = [
                r["test_worst_group_accuracy"]
                for r in mine
                if r["method"] == method and (r["arm"] == arm or not arm)
            ]
            cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "")
        auto = [r["reads_signal"] for r in mine if r["arm"] == "auto"]
        t.add_row(setting, *cells, f"{sum(bool(a) for a in auto)}/{len(auto)}")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--signal", choices=("rationale", "confidence"), default="rationale")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = run(args.signal, args.seeds, args.epochs, args.cache_dir)
    Console().print(table(rows, args.signal))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"signal": args.signal, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
