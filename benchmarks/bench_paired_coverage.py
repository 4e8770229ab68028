"""How far can the bench's paired intervals be trusted? A simulation with known truth.

The bench report (``train/paired.py``) puts a 95 % percentile interval, from 2,000
group-stratified resamples of the test items, on each difference ``ours`` minus a
rival. Accuracy is a mean and its interval behaves; worst-group accuracy is a minimum
over groups, and a minimum of noisy group estimates is biased low, the more so the more
groups sit near the bottom. This script measures both on test splits drawn from known
per-group accuracies, with toxic-questions' 15 test group sizes:

- stylised pairs: a flat profile (every group at 0.62) against one with a single weak
  group (0.60, the rest 0.75), and the reverse; two profiles of the same shape; two
  equal flat ones;
- ``bench``: the two methods' per-group test accuracies from a bench report (default:
  ``ours`` and ``single:label_5`` of ``results/toxic-questions-full-l2``) taken as the
  truth, so its rows say how that report's interval should be read.

For each pair it draws ``--reps`` test splits (item-level correctness, the two methods
sharing a latent item difficulty with weight ``--rho``, so their errors correlate as
real models' do), runs ``paired_bootstrap`` on each, and reports the true difference of
the minima, the mean observed difference (bias), and how often the interval covers the
truth (nominal 0.95), for worst-group accuracy and accuracy.

Usage::

    python benchmarks/bench_paired_coverage.py [--reps 300] [--report PATH]

Prints a markdown table; writes ``benchmarks/results/paired_coverage.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from guardrail_dro.train.paired import paired_bootstrap

HERE = Path(__file__).resolve().parent


def group_sizes() -> tuple[np.ndarray, list[str]]:
    """toxic-questions' test group sizes, in group order."""
    from guardrail_dro.data.bundled import load_bundled

    test = load_bundled("toxic-questions")[0]["test"]
    g = test.group_array()
    return np.bincount(g[g >= 0]), list(test.groups)


def simulate(
    pa: np.ndarray, pb: np.ndarray, sizes: np.ndarray, *, reps: int, rho: float, draws: int
) -> dict:
    """Coverage and bias of the paired intervals for true group accuracies pa, pb."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    n = len(groups)
    truth = {
        "worst_group_accuracy": float(pa.min() - pb.min()),
        "accuracy": float(((pa - pb) * sizes).sum() / n),
    }
    seen: dict[str, list[float]] = {k: [] for k in truth}
    covered = dict.fromkeys(truth, 0)
    for r in range(reps):
        shared = rng.random(n)
        a, b = (np.where(rng.random(n) < rho, shared, rng.random(n)) < p[groups] for p in (pa, pb))
        gold = np.zeros(n, dtype=int)
        c = paired_bootstrap(
            gold, groups, {"a": (~a).astype(int), "b": (~b).astype(int)}, "a", draws=draws, seed=r
        )["b"]
        for k in truth:
            iv = getattr(c, k)
            seen[k].append(iv.diff)
            covered[k] += iv.low <= truth[k] <= iv.high
    return {
        k: {
            "truth": truth[k],
            "mean_observed": float(np.mean(seen[k])),
            "bias": float(np.mean(seen[k]) - truth[k]),
            "coverage": covered[k] / reps,
        }
        for k in truth
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=300, help="simulated test splits per pair")
    ap.add_argument("--draws", type=int, default=1000, help="bootstrap draws per split")
    ap.add_argument("--rho", type=float, default=0.6, help="weight of the shared difficulty")
    ap.add_argument(
        "--report",
        type=Path,
        default=HERE / "results" / "toxic-questions-full-l2" / "results.json",
        help="a bench results.json whose two methods' group accuracies are the truth",
    )
    ap.add_argument("--methods", default="ours,single:label_5", help="the two of --report")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "paired_coverage.json")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    sizes, names = group_sizes()
    k = len(sizes)
    flat, one_low = np.full(k, 0.62), np.r_[0.60, np.full(k - 1, 0.75)]
    pairs = {
        "flat vs one weak group": (flat, one_low),
        "one weak group vs flat": (one_low, flat),
        "same shape, +0.02": (np.r_[0.60, np.full(k - 1, 0.72)], np.r_[0.58, np.full(k - 1, 0.72)]),
        "equal, flat": (np.full(k, 0.65), np.full(k, 0.65)),
    }
    if args.report.is_file():
        rep = json.loads(args.report.read_text())["results"]
        a, b = args.methods.split(",")
        pairs[f"bench truth: {a} vs {b}"] = tuple(
            np.array([rep[m]["group_accuracy"][g] for g in names]) for m in (a, b)
        )
    else:
        print(f"no bench report at {args.report}: its row is skipped")
    rows = {
        name: simulate(pa, pb, sizes, reps=args.reps, rho=args.rho, draws=args.draws)
        for name, (pa, pb) in pairs.items()
    }
    head = "| pair | metric | true diff | mean observed | bias | coverage (0.95 nominal) |"
    print(head + "\n|---|---|---|---|---|---|")
    for name, r in rows.items():
        for metric, v in r.items():
            print(
                f"| {name} | {metric} | {v['truth']:+.3f} | {v['mean_observed']:+.3f} | "
                f"{v['bias']:+.3f} | {v['coverage']:.2f} |"
            )
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "group_sizes": sizes.tolist(),
        "reps": args.reps,
        "draws": args.draws,
        "rho": args.rho,
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['seconds']:.0f} s; written {args.out}")
    return out


if __name__ == "__main__":
    main()
