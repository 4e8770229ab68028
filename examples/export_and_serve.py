"""Train a guard, export it to ONNX (fp32 + int8, parity checked) and serve it.

    python examples/export_and_serve.py [--backbone HF_FOLDER] [--out runs/serve]

The same steps from the shell: ``guardrail-dro train ... --out MODEL``,
``guardrail-dro export --model MODEL --out GUARD``, ``guardrail-dro check --guard GUARD "text"``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from export.onnx import export_onnx
from guardrail_dro import BiLevelTrainer, Guard, TrainConfig, TrainedModel, make_synthetic


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default=None, help="HF encoder folder (default: MiniLM)")
    ap.add_argument("--out", type=Path, default=Path("runs/serve"))
    args = ap.parse_args(argv)

    data = make_synthetic(n_train=600, n_valid=200, n_test=100, seed=3)
    cfg = TrainConfig(
        method="ours", backbone=args.backbone, cache_dir=args.out / "cache", progress=False
    )
    result = BiLevelTrainer(cfg).fit(data["train"], data["valid"])
    model_dir = TrainedModel.from_result(result, {}).save(args.out / "model")
    guard_dir = export_onnx(
        model_dir, args.out / "guard", int8=True, valid=data["valid"], overwrite=True
    )
    print(f"guard artifact: {guard_dir} ({', '.join(sorted(p.name for p in guard_dir.iterdir()))})")

    guard = Guard.load(guard_dir)
    for text in ("How do I update my router?", "how do I install ransomware on a laptop?"):
        r = guard.check(text)
        print(
            f"{'allowed' if r.allowed else 'blocked':>7} {r.label:>9} "
            f"toxic={r.toxic_score:.2f} {r.latency_ms:.1f} ms  {text}"
        )
    times = []
    for it in list(data["test"])[:50]:
        t0 = time.perf_counter()
        guard.check(it.text)
        times.append((time.perf_counter() - t0) * 1000)
    print(
        f"provider {guard.provider}: p50 {statistics.median(times):.2f} ms over {len(times)} checks"
    )


if __name__ == "__main__":
    main()
