"""Every int8 recipe against the int8 gate, on a real validation split, in one run.

For each candidate (``export.quantize.CANDIDATE_RECIPES``: today's dynamic recipes,
per-tensor, blockwise 8-bit MatMulNBits with several block sizes; plus static QDQ
calibrated on training texts with MinMax / Percentile / Entropy), the script measures
at one operating point chosen on the validation split with fp32 scores (the threshold
that maximises binary worst-group accuracy, at a midpoint between two scores):

- the gate's numbers (``export.gate.int8_gate``, the exporter's own code): decision
  agreement with fp32 (each text scored alone, as the guard serves int8), decision
  flips, binary worst-group accuracy drop, pass / fail;
- 15-class argmax agreement and max |logit diff| (recorded, not gated);
- file size and single-text latency as ratios to fp32, timed interleaved with fp32 in
  the same run (the ratios, not the milliseconds, are what carries across machines).

Usage::

    python benchmarks/bench_int8_recipes.py --model-dir runs/model
    python benchmarks/bench_int8_recipes.py --guard-dir runs/guard   # fp32 already exported

Writes ``benchmarks/results/int8_recipes.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _operating_point(scores: np.ndarray, worst_group: Callable[[np.ndarray], float]) -> float:
    """The threshold with the best binary worst-group accuracy (closest to 0.5 on ties),
    at midpoints between consecutive scores so no text sits on it."""
    u = np.unique(scores)
    cands = np.concatenate([[0.5], (u[1:] + u[:-1]) / 2])
    return float(max(cands, key=lambda t: (worst_group(scores >= t), -abs(t - 0.5))))


def _static_builders(train_ids: list[list[int]]) -> dict[str, Callable[[Path, Path], None]]:
    """Static QDQ (activation scales from calibration texts), MatMul nodes, per channel."""

    def make(method: str, ops: list[str] | None):
        def build(src: Path, dst: Path) -> None:
            import onnx
            from onnxruntime.quantization import (
                CalibrationDataReader,
                CalibrationMethod,
                QuantFormat,
                QuantType,
                quantize_static,
            )

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.it = iter(train_ids)

                def get_next(self):
                    ids = next(self.it, None)
                    if ids is None:
                        return None
                    a = np.array([ids], np.int64)
                    return {"input_ids": a, "attention_mask": np.ones_like(a)}

            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method),
                op_types_to_quantize=ops,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )

        return build

    return {
        "static QDQ MinMax, all ops": make("MinMax", None),
        "static QDQ MinMax, MatMul": make("MinMax", ["MatMul"]),
        "static QDQ Percentile, MatMul": make("Percentile", ["MatMul"]),
        "static QDQ Entropy, MatMul": make("Entropy", ["MatMul"]),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, help="trained model dir (exported to fp32 first)")
    ap.add_argument("--guard-dir", type=Path, help="guard dir holding model.onnx (fp32)")
    ap.add_argument("--valid", default="toxic-questions:valid", help="validation split")
    ap.add_argument("--train", default="toxic-questions:train", help="calibration texts from")
    ap.add_argument("--calib", type=int, default=128, help="calibration texts (static QDQ)")
    ap.add_argument("--latency-texts", type=int, default=40, help="texts timed per repeat")
    ap.add_argument("--reps", type=int, default=5, help="interleaved timing repeats")
    ap.add_argument("--no-static", action="store_true", help="skip the static QDQ recipes")
    ap.add_argument(
        "--threshold",
        type=float,
        help="toxic threshold of the operating point (default: the best fp32 binary "
        "worst-group accuracy on valid; give the guard's calibrated one to gate there)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_recipes.json"))
    args = ap.parse_args(argv)
    if (args.model_dir is None) == (args.guard_dir is None):
        ap.error("give exactly one of --model-dir and --guard-dir")

    from export.gate import int8_gate, toxic_decision
    from export.quantize import CANDIDATE_RECIPES, INT8_RECIPES, quantize_int8, quiet_logging
    from export.spec import Tolerances
    from export.validate import ParityReport
    from guardrail_dro.data.readers import read_dataset
    from guardrail_dro.serve.artifact import load_artifact
    from guardrail_dro.serve.runtime import create_session
    from guardrail_dro.train.metrics import compute_metrics

    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    guard = args.guard_dir
    if guard is None:
        from export.onnx import export_onnx

        print(f"exporting {args.model_dir} (fp32) ...", flush=True)
        guard = export_onnx(args.model_dir, work / "guard", int8=False)
    art = load_artifact(guard)
    schema = art.manifest.label_schema
    fp32 = art.model_path("fp32")
    valid = read_dataset(args.valid, schema=schema)
    tok = art.load_tokenizer(pad=False)
    ids = [e.ids for e in tok.encode_batch(valid.texts)]

    def per_row(path: Path) -> np.ndarray:
        sess = create_session(path, provider="cpu", intra_op_threads=1)
        rows = [sess.run(np.array([i], np.int64), np.ones((1, len(i)), np.int64))[0] for i in ids]
        return np.stack(rows).astype(np.float32)

    def latency_ratio(path: Path) -> float:
        sessions = [create_session(p, provider="cpu", intra_op_threads=1) for p in (fp32, path)]
        batch = [np.array([i], np.int64) for i in ids[: args.latency_texts]]
        times: list[list[float]] = [[], []]
        for _ in range(args.reps):
            for k, sess in enumerate(sessions):
                t0 = time.perf_counter()
                for a in batch:
                    sess.run(a, np.ones_like(a))
                times[k].append(time.perf_counter() - t0)
        return statistics.median(times[1]) / statistics.median(times[0])

    safe = np.asarray(schema.safe_mask(), dtype=bool)
    gold_toxic = (~safe[valid.gold_array()]).astype(np.int64)
    groups, names = valid.group_array(), list(valid.groups)

    def worst_group(blocked: np.ndarray) -> float:
        m = compute_metrics(
            gold_toxic, blocked.astype(np.int64), num_classes=2, groups=groups, group_names=names
        )
        return float(m.worst_group_accuracy or 0.0)

    print(f"fp32 on {len(valid)} texts, one at a time ...", flush=True)
    ref = per_row(fp32)
    e = np.exp(ref - ref.max(1, keepdims=True))
    scores = 1 - (e[:, safe].sum(1) / e.sum(1))
    threshold = _operating_point(scores, worst_group) if args.threshold is None else args.threshold
    decide = toxic_decision(schema.safe_mask(), threshold)
    print(
        f"operating point: toxic >= {threshold:.4f} (fp32 binary worst-group accuracy "
        f"{worst_group(decide(ref)):.4f}, {int(decide(ref).sum())} of {len(ref)} blocked)"
    )

    builders: dict[str, Callable[[Path, Path], object]] = {
        r.name: (lambda src, dst, r=r: quantize_int8(src, dst, r)) for r in CANDIDATE_RECIPES
    }
    if not args.no_static:
        calib = read_dataset(args.train, schema=schema).texts
        pick = np.random.default_rng(0).choice(len(calib), min(args.calib, len(calib)), False)
        builders.update(_static_builders([tok.encode(calib[i]).ids for i in pick]))

    rows = []
    for name, build in builders.items():
        dst = work / "int8.onnx"
        dst.unlink(missing_ok=True)
        row: dict = {"recipe": name, "kept": name in {r.name for r in INT8_RECIPES}}
        t0 = time.perf_counter()
        try:
            with quiet_logging():
                logging.disable(logging.WARNING)
                build(fp32, dst)
                logging.disable(logging.NOTSET)
            logits = per_row(dst)
        except Exception as exc:  # a recipe that cannot build or run is a row, not a crash
            logging.disable(logging.NOTSET)
            row["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
            print(f"{name:36s} failed: {row['error']}", flush=True)
            rows.append(row)
            continue
        report = ParityReport()
        int8_gate(report, valid, ref, logits, decide, Tolerances(), "validation texts")
        row.update(report.stats["int8"])
        row.update(
            passed=report.ok,
            mismatches=[str(m) for m in report.mismatches],
            size_ratio=dst.stat().st_size / fp32.stat().st_size,
            latency_ratio=latency_ratio(dst),
            seconds=time.perf_counter() - t0,
        )
        rows.append(row)
        print(
            f"{name:36s} {'PASS' if row['passed'] else 'fail'}  "
            f"agree {row['decision_agreement']:.3f} ({int(row['decision_flips'])} flips)  "
            f"wg drop {row['binary_worst_group_accuracy_drop']:+.4f}  "
            f"argmax {row['argmax_agreement']:.3f}  size x{row['size_ratio']:.2f}  "
            f"latency x{row['latency_ratio']:.2f}",
            flush=True,
        )

    res = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "valid": args.valid,
        "texts": len(valid),
        "operating_point": {
            "toxic_threshold": threshold,
            "fp32_binary_worst_group_accuracy": worst_group(decide(ref)),
        },
        "gate": Tolerances().model_dump(),
        "recipes": rows,
        "kept_in_order": [r.name for r in INT8_RECIPES],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
