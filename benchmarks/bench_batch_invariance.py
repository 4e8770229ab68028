"""Does a text's score depend on its batch? ``check`` against ``check_many`` (in order and
shuffled), fp32 and int8, with the int8 variant batched and one row at a time, and what
running int8 one row at a time costs in ``check_many`` throughput.

For each precision and mode: the median and max absolute difference of any class
probability between ``check(text)`` and the same text's result in ``check_many``, the
number of decisions (allowed) and labels that differ, and ``check_many`` texts/second.

Usage::

    python benchmarks/bench_batch_invariance.py --guard-dir GUARD \\
        [--texts ../shared/datasets/toxic-questions/test.csv] [--n 307] [--out FILE.json]

Without ``--texts`` the texts are the benchmark's own sentences, cut and recombined.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import numpy as np
from common import LONG_SENTENCES, SHORT, long_text


def read_texts(path: Path | None, n: int, seed: int = 0) -> list[str]:
    if path is None:
        words = " ".join(LONG_SENTENCES).split()
        rng = random.Random(seed)
        texts = [SHORT, long_text(200)]
        while len(texts) < n:
            k = rng.randint(1, 60)
            start = rng.randrange(len(words))
            texts.append(" ".join((words * 2)[start : start + k]))
        return texts
    with path.open(encoding="utf-8-sig", newline="") as f:
        texts = [row["question"] for row in csv.DictReader(f) if row["question"].strip()]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def compare(guard, texts: list[str], seed: int = 0) -> dict[str, float]:
    one = [guard.check(t) for t in texts]
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    shuffled = guard.check_many([texts[i] for i in order])
    many = {"in_order": guard.check_many(texts), "shuffled": [None] * len(texts)}
    for k, i in enumerate(order):
        many["shuffled"][i] = shuffled[k]
    out: dict[str, float] = {}
    for name, results in many.items():
        diffs = [
            abs(a.scores[c] - b.scores[c])
            for a, b in zip(one, results, strict=True)
            for c in a.scores
        ]
        out[f"{name}_median_abs_diff"] = float(np.median(diffs))
        out[f"{name}_max_abs_diff"] = float(np.max(diffs))
        out[f"{name}_decision_flips"] = sum(
            a.allowed != b.allowed for a, b in zip(one, results, strict=True)
        )
        out[f"{name}_label_changes"] = sum(
            a.label != b.label for a, b in zip(one, results, strict=True)
        )
    return out


def throughput(guard, texts: list[str], repeats: int) -> float:
    guard.check_many(texts[:32])  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        guard.check_many(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def main() -> None:
    from guardrail_dro.serve.guard import Guard

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guard-dir", type=Path, required=True)
    ap.add_argument("--texts", type=Path, default=None, help="a CSV with a 'question' column")
    ap.add_argument("--n", type=int, default=307)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    texts = read_texts(args.texts, args.n)
    report: dict[str, object] = {"texts": len(texts), "guard_dir": str(args.guard_dir)}
    from guardrail_dro.serve.artifact import load_artifact

    variants = load_artifact(args.guard_dir).variants
    for precision in (p for p in ("fp32", "int8") if p in variants):
        guard = Guard.load(
            args.guard_dir, provider="cpu", precision=precision, intra_op_threads=args.threads
        )
        for per_row in (False, True):
            guard.scorer.per_row = per_row  # type: ignore[attr-defined]
            key = f"{precision}_{'per_row' if per_row else 'batched'}"
            stats = compare(guard, texts)
            stats["check_many_texts_per_s"] = throughput(guard, texts, args.repeats)
            report[key] = stats
            print(key, json.dumps(stats))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
