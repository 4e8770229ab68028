"""``Guard.check`` latency, throughput and accuracy: the teacher and its distilled students.

In one run, on the same texts, timings interleaved (each text goes through every
runtime in turn, so load drift on a shared machine hits all of them alike):

- runtimes: PyTorch eager (the teacher's ``GuardClassifier``, tokenizer included), ORT
  fp32 and ORT int8 of the teacher guard (MiniLM L6), and each student guard (its
  default CPU variant, and fp32 when that differs);
- latency p50 / p99 of ``Guard.check`` one text at a time, on a short text (~20 tokens)
  and on the real bundled toxic-questions test questions;
- batch throughput: ``check_many`` on batches of 32 real test questions (texts / s);
- accuracy at each guard's own operating point (its guard.json threshold, chosen on
  valid): worst-group binary accuracy and ROC AUC of the toxic score on test;
- where the time of a student check goes (tokenization, input building + session run,
  session run alone, decision and result) and ``Guard.check``'s overhead over a bare
  tokenize + ``InferenceSession.run`` on the guard's own session (paired: each check
  against the bare call made right after it; a second session's, for comparison);
- the recommended student's short-text p50 / p99 timed alone, as a deployment runs
  one guard (interleaved, each check starts with caches full of another model).

Usage::

    python benchmarks/bench_guard.py --teacher-model /work/models/tq-ours \\
        --teacher-guard GUARD_L6 --student L2=GUARD_L2 [--student L3=GUARD_L3]

A ``--student`` or ``--teacher-guard`` that is a trained model directory (no guard.json)
is exported first, calibrated on toxic-questions valid. Writes
``benchmarks/results/guard.json`` and prints a table.

Acceptance (issue 15): the recommended student's real-text p50 at least 2x faster than
the int8 L6 guard; its worst-group binary accuracy within 1.5 points of the teacher's
and ROC AUC within 0.01; overhead < 10%; short-text p50 <= 1.5 ms, p99 <= 4 ms (alone).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import SHORT, pct

TARGETS = {
    "speedup_vs_int8_l6": 2.0,
    "worst_group_drop_points": 1.5,
    "auc_drop": 0.01,
    "overhead_pct": 10.0,
    "short_p50_ms": 1.5,
    "short_p99_ms": 4.0,
}


def ensure_guard(path: Path, work: Path, name: str, valid) -> Path:
    """``path`` if it is a guard dir, else export the model dir there (calibrated)."""
    if (path / "guard.json").is_file():
        return path
    from export.onnx import export_onnx

    print(f"exporting {path} -> {work / name}", flush=True)
    return export_onnx(path, work / name, int8=True, valid=valid, overwrite=True)


def interleaved(fns: dict[str, Callable[[str], object]], texts: list[str]) -> dict[str, list]:
    """Each text through every function in turn; ms per call, per function."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.perf_counter
    for t in texts:
        for name, fn in fns.items():
            t0 = clock()
            fn(t)
            out[name].append((clock() - t0) * 1e3)
    return out


def torch_check(model_dir: Path, threads: int) -> Callable[[str], object]:
    """The teacher in PyTorch eager: HF tokenizer + forward + softmax, one text."""
    import torch

    from guardrail_dro.train.modeldir import TrainedModel

    torch.set_num_threads(threads)
    trained = TrainedModel.load(model_dir)
    model, tok, n = trained.model.eval(), trained.tokenizer, trained.manifest.max_length

    def check(text: str):
        enc = tok([text], truncation=True, max_length=n, return_tensors="pt")
        with torch.inference_mode():
            return torch.softmax(model(enc["input_ids"], enc["attention_mask"]), -1)

    return check


def accuracy(guard, test) -> dict:
    """Worst-group binary accuracy at the guard's operating point and ROC AUC, on test."""
    from sklearn.metrics import roc_auc_score

    from guardrail_dro.serve.calibration import binary_metrics

    results = guard.check_many(test.texts)
    safe = np.asarray(test.schema.safe_mask(), dtype=bool)
    gold = test.gold_array()
    positive = ~safe[gold]
    toxic = np.array([1.0 - sum(r.scores[c] for c in test.schema.safe) for r in results])
    blocked = np.array([not r.allowed for r in results])
    point = binary_metrics(blocked, positive, test.group_array(), test.groups)
    return {
        "threshold": guard.artifact.manifest.thresholds.toxic,
        "worst_group_binary_accuracy": point.worst_group_accuracy,
        "worst_group": point.worst_group,
        "binary_accuracy": point.accuracy,
        "recall": point.recall,
        "fpr": point.fpr,
        "roc_auc": float(roc_auc_score(positive, toxic)),
    }


def breakdown(guard, texts: list[str]) -> dict:
    """Median microseconds of each stage of a check, measured stage by stage."""
    sc = guard.scorer
    enc = [sc.encode(t) for t in texts]
    feeds = []
    for rows in enc:
        ids = np.array(rows[:1], dtype=np.int64)
        feeds.append({sc._in_ids: ids, sc._in_mask: np.ones_like(ids)})
    logits = [sc.logits(r[:1]) for r in enc]
    stages: dict[str, Callable[[int], object]] = {
        "tokenize": lambda i: sc.encode(texts[i]),
        "inputs_and_run": lambda i: sc.logits(enc[i][:1]),
        "session_run": lambda i: sc._run(sc._out, feeds[i]),
        "decide_and_result": lambda i: guard.rule.decide(logits[i]),
        "guard_check": lambda i: guard.check(texts[i]),
    }
    out: dict[str, list[float]] = {k: [] for k in stages}
    clock = time.perf_counter
    for i in range(len(texts)):
        for k, fn in stages.items():
            t0 = clock()
            fn(i)
            out[k].append((clock() - t0) * 1e6)
    med = {k: float(np.median(v)) for k, v in out.items()}
    med["input_building"] = med["inputs_and_run"] - med["session_run"]
    parts = med["tokenize"] + med["inputs_and_run"] + med["decide_and_result"]
    med["python_rest"] = med["guard_check"] - parts
    return {f"{k}_us": v for k, v in med.items()}


def overhead(guard, texts: list[str]) -> dict:
    """``Guard.check`` against a bare tokenize + ``run`` on the guard's own session,
    paired text by text; and, for comparison, against a bare call on a second session
    over the same file (the method before 2026-12-03: two copies of the weights take
    turns in the cache, and which one pays for it varies, so the ratio moved by several
    points between runs; the own-session pair measures only what the guard adds)."""
    from guardrail_dro.serve.runtime import create_session

    sc = guard.scorer
    second = create_session(guard.artifact.model_path(guard.precision), sc.session_config).session
    tok = guard.artifact.load_tokenizer(pad=False)
    names = sc._out
    i_ids, i_mask = sc._in_ids, sc._in_mask

    def bare_on(run):
        def call(text: str):
            ids = np.array([tok.encode(text).ids], dtype=np.int64)
            return run(names, {i_ids: ids, i_mask: np.ones_like(ids)})

        return call

    out: dict = {}
    for tag, run in (("", sc._run), ("second_session_", second.run)):
        lat = interleaved({"guard_check": guard.check, "bare": bare_on(run)}, texts)
        g, b = np.asarray(lat["guard_check"]), np.asarray(lat["bare"])
        out |= {
            f"{tag}paired_median_pct": float(100 * (np.median(g / b) - 1)),
            f"{tag}paired_median_us": float(1e3 * np.median(g - b)),
            f"{tag}p50_ratio_pct": float(100 * (np.median(g) / np.median(b) - 1)),
            f"{tag}guard_p50_ms": pct(list(g), 50),
            f"{tag}bare_p50_ms": pct(list(b), 50),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher-model", type=Path, required=True, help="trained model dir")
    ap.add_argument("--teacher-guard", type=Path, help="its guard dir (default: export it)")
    ap.add_argument(
        "--student", action="append", default=[], metavar="NAME=DIR",
        help="a student guard (or model) dir; repeatable; the first is the recommended one",
    )  # fmt: skip
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-guard"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/guard.json"))
    ap.add_argument("--short-iters", type=int, default=1000)
    ap.add_argument("--real", type=int, default=0, help="test questions to time (0: all)")
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads")
    ap.add_argument("--torch-threads", type=int, default=1)
    args = ap.parse_args(argv)

    from guardrail_dro.data.bundled import load_bundled
    from guardrail_dro.serve.guard import Guard

    load0 = os.getloadavg()[0]
    splits, _ = load_bundled("toxic-questions")
    test = splits["test"]
    args.work.mkdir(parents=True, exist_ok=True)
    teacher_guard = ensure_guard(
        args.teacher_guard or args.teacher_model, args.work, "teacher", splits["valid"]
    )
    students = {}
    for spec in args.student:
        name, _, d = spec.partition("=")
        students[name] = ensure_guard(Path(d), args.work, name, splits["valid"])
    load = dict(provider="cpu", intra_op_threads=args.threads)
    guards = {
        "ORT fp32 L6": Guard.load(teacher_guard, precision="fp32", **load),
        "ORT int8 L6": Guard.load(teacher_guard, precision="int8", **load),
    }
    for name, d in students.items():
        g = Guard.load(d, **load)
        guards[f"student {name} {g.precision}"] = g
        if g.precision != "fp32":
            guards[f"student {name} fp32"] = Guard.load(d, precision="fp32", **load)
    checks: dict[str, Callable[[str], object]] = {
        "PyTorch eager L6": torch_check(args.teacher_model, args.torch_threads),
        **{k: g.check for k, g in guards.items()},
    }
    real = test.texts if not args.real else test.texts[: args.real]
    for fn in checks.values():  # warm up
        for t in real[:20]:
            fn(t)
    print(f"timing {len(checks)} runtimes on {len(real)} test questions", flush=True)
    rows: dict[str, dict] = {k: {} for k in checks}
    lat = interleaved(checks, real)
    for k, v in lat.items():
        rows[k] |= {"real_p50_ms": pct(v, 50), "real_p99_ms": pct(v, 99)}
    print(f"timing {args.short_iters} short checks", flush=True)
    lat = interleaved(checks, [SHORT] * args.short_iters)
    for k, v in lat.items():
        rows[k] |= {"short_p50_ms": pct(v, 50), "short_p99_ms": pct(v, 99)}
    batches = [real[i : i + 32] for i in range(0, min(len(real), 640), 32)]
    for k, g in guards.items():
        t0 = time.perf_counter()
        n = sum(len(g.check_many(b)) for b in batches)
        rows[k]["batch32_texts_per_s"] = n / (time.perf_counter() - t0)
    print("scoring test accuracy", flush=True)
    acc = {k: accuracy(g, test) for k, g in guards.items()}
    for k in guards:
        rows[k] |= acc[k]
    rec = next((k for k in guards if k.startswith("student")), None)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m_start": load0,
        "ort_intra_op_threads": args.threads or "guard default",
        "teacher_model": str(args.teacher_model),
        "guards": {k: str(g) for k, g in guards.items()},
        "real_texts": len(real),
        "short_text_tokens": len(guards["ORT fp32 L6"].scorer.encode(SHORT)[0]),
        "rows": rows,
        "targets": TARGETS,
    }
    if rec is not None:
        g = guards[rec]
        print("breakdown and overhead of the recommended student", flush=True)
        result["breakdown"] = breakdown(g, real[:600])
        result["overhead"] = overhead(g, real[:600])
        # Interleaving runtimes text by text makes the ratios fair under load, but every
        # check then starts with caches full of another model. A deployment runs one
        # guard: its absolute latency is timed alone too, and the ms targets read that.
        alone = interleaved({rec: g.check}, [SHORT] * args.short_iters)[rec]
        result["short_alone"] = {"p50_ms": pct(alone, 50), "p99_ms": pct(alone, 99)}
        r, i8 = rows[rec], rows["ORT int8 L6"]
        measured = {
            "speedup_vs_int8_l6": i8["real_p50_ms"] / r["real_p50_ms"],
            "worst_group_drop_points": 100
            * (i8["worst_group_binary_accuracy"] - r["worst_group_binary_accuracy"]),
            "auc_drop": i8["roc_auc"] - r["roc_auc"],
            "overhead_pct": result["overhead"]["paired_median_pct"],
            "short_p50_ms": result["short_alone"]["p50_ms"],
            "short_p99_ms": result["short_alone"]["p99_ms"],
        }
        result["recommended"] = rec
        result["measured"] = measured
        result["targets_met"] = {
            k: (v >= TARGETS[k] if k == "speedup_vs_int8_l6" else v <= TARGETS[k])
            for k, v in measured.items()
        }
    result["load_average_1m_end"] = os.getloadavg()[0]
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def print_table(res: dict) -> None:
    print(
        f"\nGuard benchmark {res['date']}, {res['cpus']} CPUs, 1-min load at the end "
        f"{res['load_average_1m_end']:.2f}; {res['real_texts']} test questions, short text "
        f"{res['short_text_tokens']} tokens"
    )
    cols = ("real_p50_ms", "real_p99_ms", "short_p50_ms", "short_p99_ms",
            "batch32_texts_per_s", "worst_group_binary_accuracy", "roc_auc")  # fmt: skip
    print(f"{'runtime':26} " + " ".join(f"{c[:14]:>14}" for c in cols))
    for name, r in res["rows"].items():
        vals = " ".join(f"{r[c]:>14.4g}" if c in r else f"{'':>14}" for c in cols)
        print(f"{name:26} {vals}")
    if "breakdown" in res:
        print("check breakdown (us, median): " + ", ".join(
            f"{k.removesuffix('_us')} {v:.0f}" for k, v in res["breakdown"].items()))  # fmt: skip
        o, a = res["overhead"], res["short_alone"]
        print(f"{res['recommended']} alone, short text: p50 {a['p50_ms']:.3g} ms, "
              f"p99 {a['p99_ms']:.3g} ms")  # fmt: skip
        print(
            f"overhead over bare tokenize + run: paired {o['paired_median_pct']:+.1f}% "
            f"({o['paired_median_us']:+.0f} us), p50 ratio {o['p50_ratio_pct']:+.1f}%; "
            f"against a second session: {o['second_session_paired_median_pct']:+.1f}% "
            f"({o['second_session_paired_median_us']:+.0f} us)"
        )
        for k, ok in res["targets_met"].items():
            print(f"target {k} {res['targets'][k]}: {res['measured'][k]:.4g} "
                  f"{'met' if ok else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
