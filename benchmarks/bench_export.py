"""Latency and throughput of the exported guard vs PyTorch eager, on the MiniLM classifier.

Measures, in one run on one machine:

- batch-1 latency p50 / p99 for a short (~15 words) and a long (~200 words) text,
  tokenization included (PyTorch: the transformers tokenizer; ONNX Runtime: the guard
  artifact's ``tokenizer.json`` through ``tokenizers``, the serving path);
- throughput at batch 32 (texts per second), short and long;
- for PyTorch eager, ONNX Runtime fp32 and int8, with ratios to PyTorch; file sizes.

Usage::

    python benchmarks/bench_export.py                      # trains a MiniLM model first
    python benchmarks/bench_export.py --model-dir runs/model --out results/export.json

Target (issue 4, 2-core CPU): int8 batch-1 short p50 <= 3 ms and >= 3x PyTorch eager.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import SHORT, build_model_dir, long_text, pct

TARGET_P50_MS = 3.0
TARGET_SPEEDUP = 3.0


def timeit(fn: Callable[[], object], *, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, help="trained model dir (default: train one)")
    ap.add_argument("--guard-dir", type=Path, help="exported guard dir (default: export one)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/export.json"))
    ap.add_argument("--iters", type=int, default=300, help="batch-1 short iterations")
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads")
    args = ap.parse_args(argv)

    import torch

    from export.onnx import export_onnx
    from guardrail_dro.data.synthetic import make_synthetic
    from guardrail_dro.serve.artifact import load_artifact
    from guardrail_dro.serve.runtime import create_session
    from guardrail_dro.train.modeldir import TrainedModel

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    t0 = time.perf_counter()
    model_dir = args.model_dir or build_model_dir(work)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    guard_dir = args.guard_dir or export_onnx(
        model_dir, work / "guard", int8=True, valid=make_synthetic(seed=0)["valid"]
    )
    export_s = time.perf_counter() - t0

    trained = TrainedModel.load(model_dir)
    art = load_artifact(guard_dir)
    max_len = art.manifest.max_length
    hf_tok, model = trained.tokenizer, trained.model.eval()
    tok = art.load_tokenizer()
    long = long_text()
    texts = {"short": SHORT, "long": long}
    n_tokens = {k: len(tok.encode(v).ids) for k, v in texts.items()}

    def torch_fn(batch: list[str]) -> Callable[[], object]:
        def run() -> object:
            enc = hf_tok(
                batch, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            )
            with torch.inference_mode():
                return model(enc["input_ids"], enc["attention_mask"])

        return run

    def ort_fn(sess, batch: list[str]) -> Callable[[], object]:
        def run() -> object:
            enc = tok.encode_batch(batch) if len(batch) > 1 else [tok.encode(batch[0])]
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            return sess.run(ids, mask)

        return run

    sessions = {
        v: create_session(art.model_path(v), provider="cpu", intra_op_threads=args.threads)
        for v in ("fp32", "int8")
    }
    # One intra-op thread: what a server running one guard call per core would use.
    sessions["int8_1t"] = create_session(art.model_path("int8"), provider="cpu", intra_op_threads=1)
    runners: dict[str, Callable[[list[str]], Callable[[], object]]] = {
        "pytorch": torch_fn,
        "ort_fp32": lambda b: ort_fn(sessions["fp32"], b),
        "ort_int8": lambda b: ort_fn(sessions["int8"], b),
        "ort_int8_1t": lambda b: ort_fn(sessions["int8_1t"], b),
    }
    rows: dict[str, dict[str, float]] = {}
    for name, make in runners.items():
        r: dict[str, float] = {}
        for kind, text in texts.items():
            iters = args.iters if kind == "short" else max(30, args.iters // 6)
            lat = timeit(make([text]), iters=iters, warmup=20)
            r[f"{kind}_p50_ms"], r[f"{kind}_p99_ms"] = pct(lat, 50), pct(lat, 99)
            n_batches = 30 if kind == "short" else 6
            lat32 = timeit(make([text] * 32), iters=n_batches, warmup=2)
            r[f"{kind}_b32_per_s"] = 32e3 / statistics.median(lat32)
        rows[name] = r
        print(f"measured {name}", flush=True)
    base = rows["pytorch"]
    for r in rows.values():
        r["short_p50_speedup"] = base["short_p50_ms"] / r["short_p50_ms"]
        r["long_p50_speedup"] = base["long_p50_ms"] / r["long_p50_ms"]
        r["short_b32_speedup"] = r["short_b32_per_s"] / base["short_b32_per_s"]
        r["long_b32_speedup"] = r["long_b32_per_s"] / base["long_b32_per_s"]

    sizes = {
        "pytorch_encoder_and_head": sum(
            p.stat().st_size for p in Path(model_dir).rglob("*.safetensors")
        ),
        **{f"onnx_{v}": art.model_path(v).stat().st_size for v in art.variants},
    }
    targets = {
        f"{name}_{what}": ok
        for name in ("ort_int8", "ort_int8_1t")
        for what, ok in (
            ("short_p50_ms<=3", rows[name]["short_p50_ms"] <= TARGET_P50_MS),
            ("short_speedup>=3", rows[name]["short_p50_speedup"] >= TARGET_SPEEDUP),
        )
    }
    result = {
        "date": dt.date.today().isoformat(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
        "ort_intra_op_threads": args.threads or "default",
        "tokens": n_tokens,
        "train_s": round(train_s, 1),
        "export_s": round(export_s, 1),
        "parity": {v: art.manifest.variants[v].parity for v in art.variants},
        "int8_recipe": art.manifest.train.get("int8_recipe"),
        "results": rows,
        "file_sizes_mb": {k: round(v / 1e6, 1) for k, v in sizes.items()},
        "targets_met": targets,
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def print_table(res: dict) -> None:
    cols = [
        "short_p50_ms",
        "short_p99_ms",
        "long_p50_ms",
        "long_p99_ms",
        "short_b32_per_s",
        "long_b32_per_s",
        "short_p50_speedup",
        "short_b32_speedup",
    ]
    head = [
        "runtime",
        "short p50",
        "short p99",
        "long p50",
        "long p99",
        "b32 short/s",
        "b32 long/s",
        "x p50 short",
        "x b32 short",
    ]
    print(
        f"\n{res['date']}  {res['machine']}  cpus={res['cpus']}  "
        f"load={res['load_average_1m']:.2f}  tokens={res['tokens']}"
    )
    print(" | ".join(f"{h:>11s}" for h in head))
    for name, r in res["results"].items():
        print(" | ".join([f"{name:>11s}"] + [f"{r[c]:11.2f}" for c in cols]))
    print("sizes (MB):", res["file_sizes_mb"], " int8 recipe:", res["int8_recipe"])
    print("targets:", res["targets_met"])


if __name__ == "__main__":
    main()
