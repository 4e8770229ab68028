"""Latency and throughput of ``Guard.check`` on the int8 MiniLM guard, and its overhead.

Measures, in one run on one machine (timings interleaved, so load drift hits both sides):

- ``Guard.check`` p50 / p99, tokenization included, on a short (~15 words) and a long
  (~200 words: several windows) text;
- the same call made bare: ``tokenizers`` encode + numpy + ``InferenceSession.run`` on
  a second session over the same file (the floor any serving code pays), and the
  session call alone on pre-tokenized ids; the overhead of ``Guard.check`` over the
  bare call, as the median of paired ratios (each guard call against the bare call
  timed right after it: robust to load changes on a shared machine) and as p50 ratios;
- ``check_many`` throughput at batch 32 (texts per second);
- throughput with 16 threads sharing the guard, against one thread.

Usage::

    python benchmarks/bench_guard.py                        # trains + exports MiniLM first
    python benchmarks/bench_guard.py --guard-dir guard --out benchmarks/results/guard.json

Targets (issue 5, 2-core CPU, int8 MiniLM): short p50 <= 3 ms, short p99 <= 8 ms,
overhead over the bare session <= 10%.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import SHORT, build_model_dir, long_text, pct

TARGETS = {"short_p50_ms": 3.0, "short_p99_ms": 8.0, "overhead_pct": 10.0}


def build_guard(work: Path, model_dir: Path | None) -> Path:
    """Train a MiniLM classifier (soft labels, frozen encoder) on the synthetic data and
    export it with int8 (the int8 gate on the built-in probe texts)."""
    from export.onnx import export_onnx

    return export_onnx(model_dir or build_model_dir(work), work / "guard", int8=True)


def interleaved(fns: dict[str, object], iters: int, warmup: int) -> dict[str, list[float]]:
    """Time each function ``iters`` times, round-robin (ms)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.perf_counter
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            out[name].append((clock() - t0) * 1e3)
    return out


def threaded_throughput(fn, n_threads: int, per_thread: int) -> float:
    """Calls per second with ``n_threads`` threads each calling ``fn`` ``per_thread`` times."""
    barrier = threading.Barrier(n_threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            fn()

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return n_threads * per_thread / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard-dir", type=Path, help="exported guard dir (default: build one)")
    ap.add_argument("--model-dir", type=Path, help="trained model dir to export")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/guard.json"))
    ap.add_argument("--iters", type=int, default=1000, help="short-text iterations")
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads")
    args = ap.parse_args(argv)

    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.runtime import create_session

    t0 = time.perf_counter()
    guard_dir = args.guard_dir or build_guard(
        Path(tempfile.mkdtemp(prefix="bench-guard-")), args.model_dir
    )
    build_s = time.perf_counter() - t0
    guard = Guard.load(guard_dir, provider="cpu", precision="int8", intra_op_threads=args.threads)
    # Latency as a service sees it: the guard's session alone in the process. Two
    # sessions called in turn fight over the cores (ORT's intra-op threads spin after
    # each run), which about doubles both sides: fine for the paired overhead ratio
    # below, wrong for absolute latency.
    alone: dict[str, dict[str, float]] = {}
    for kind, text, iters in (("short", SHORT, args.iters), ("long", long_text(), args.iters // 5)):
        for _ in range(30):
            guard.check(text)
        lat = []
        for _ in range(iters):
            t1 = time.perf_counter()
            guard.check(text)
            lat.append(1e3 * (time.perf_counter() - t1))
        alone[kind] = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    print("measured alone", flush=True)
    bare = create_session(
        guard.artifact.model_path("int8"), provider="cpu", intra_op_threads=args.threads
    )
    sess, out_names = bare.session, list(bare.output_names[:1])
    in_ids, in_mask = bare.input_names[:2]
    tok = guard.artifact.load_tokenizer(pad=False)  # truncating at max_length

    def bare_call(text: str):
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        return sess.run(out_names, {in_ids: ids, in_mask: np.ones_like(ids)})

    long = long_text()
    rows: dict[str, dict[str, float]] = {}
    for kind, text, iters in (("short", SHORT, args.iters), ("long", long, args.iters // 5)):
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        feed = {in_ids: ids, in_mask: np.ones_like(ids)}
        lat = interleaved(
            {
                "guard_check": lambda t=text: guard.check(t),
                "bare_tokenize_run": lambda t=text: bare_call(t),
                "bare_run_only": lambda f=feed: sess.run(out_names, f),
            },
            iters=iters,
            warmup=30,
        )
        g, b = np.asarray(lat["guard_check"]), np.asarray(lat["bare_tokenize_run"])
        rows[kind] = {
            "windows": guard.check(text).windows,
            "tokens": len(guard.scorer.tokenizer.encode(text).ids)
            + sum(len(o.ids) for o in guard.scorer.tokenizer.encode(text).overflowing),
            **{f"{k}_p50_ms": pct(v, 50) for k, v in lat.items()},
            **{f"{k}_p99_ms": pct(v, 99) for k, v in lat.items()},
            # Paired: each guard call against the bare call right after it, so load
            # changes on a shared machine hit both sides of each ratio alike.
            "paired_overhead_pct": float(100 * (np.median(g / b) - 1)),
            "paired_overhead_us": float(1e3 * np.median(g - b)),
        }
        print(f"measured {kind}", flush=True)
    s = rows["short"]
    overhead = {
        "paired_median_pct": s["paired_overhead_pct"],
        "paired_median_us": s["paired_overhead_us"],
        "p50_over_bare_tokenize_run_pct": 100
        * (s["guard_check_p50_ms"] / s["bare_tokenize_run_p50_ms"] - 1),
        "p50_over_bare_run_only_pct": 100
        * (s["guard_check_p50_ms"] / s["bare_run_only_p50_ms"] - 1),
    }

    batch = [SHORT] * 32
    guard.check_many(batch)
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        guard.check_many(batch)
    many_per_s = reps * 32 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(reps * 32):
        guard.check(SHORT)
    single_loop_per_s = reps * 32 / (time.perf_counter() - t0)
    one_thread = threaded_throughput(lambda: guard.check(SHORT), 1, 400)
    sixteen = threaded_throughput(lambda: guard.check(SHORT), 16, 100)
    throughput = {
        "check_many_b32_per_s": many_per_s,
        "check_loop_per_s": single_loop_per_s,
        "threads_1_per_s": one_thread,
        "threads_16_per_s": sixteen,
    }
    measured = {
        "short_p50_ms": alone["short"]["p50_ms"],
        "short_p99_ms": alone["short"]["p99_ms"],
        "overhead_pct": overhead["paired_median_pct"],
    }
    result = {
        "date": dt.date.today().isoformat(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "ort_intra_op_threads": args.threads or "default",
        "guard": str(guard),
        "max_length": guard.max_length,
        "build_s": round(build_s, 1),
        "latency_alone": alone,
        "latency": rows,
        "overhead": overhead,
        "throughput": throughput,
        "targets": TARGETS,
        "targets_met": {k: measured[k] <= v for k, v in TARGETS.items()},
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def print_table(res: dict) -> None:
    print(f"\nGuard benchmark {res['date']}, {res['cpus']} CPUs, load {res['load_average_1m']:.2f}")
    for kind, r in res["latency_alone"].items():
        print(f"Guard.check alone, {kind}: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms")
    print("paired with a bare session in the same process (for the overhead ratio):")
    print(f"{'text':6} {'tokens':>6} {'win':>3} | {'call':18} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, r in res["latency"].items():
        for call in ("guard_check", "bare_tokenize_run", "bare_run_only"):
            print(
                f"{kind:6} {r['tokens']:>6} {r['windows']:>3} | {call:18} "
                f"{r[f'{call}_p50_ms']:>8.3f} {r[f'{call}_p99_ms']:>8.3f}"
            )
    for k, v in res["overhead"].items():
        print(f"overhead {k}: {v:+.1f}{' us' if k.endswith('_us') else '%'}")
    for k, v in res["throughput"].items():
        print(f"throughput {k}: {v:,.0f} texts/s")
    for k, ok in res["targets_met"].items():
        print(f"target {k} <= {res['targets'][k]}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
