"""Which ONNX Runtime session options make a single ``Guard.check`` fastest on a CPU.

Every setting opens its own ``Guard`` on the same guard directory; the settings are
timed interleaved, text by text, on the bundled toxic-questions test questions (one
check at a time) and on batches of 32 (``check_many``), so load drift on a shared
machine hits every setting alike. Settings: ORT's defaults (one intra-op thread per
core, spinning), one intra-op thread, two or one without spinning, graph optimisation
``extended`` instead of ``all``, no CPU memory arena, and one thread without either.

Usage::

    python benchmarks/bench_session_options.py --guard-dir GUARD [--precision fp32]

Writes ``benchmarks/results/session_options.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import numpy as np
from common import pct

SETTINGS: dict[str, dict] = {
    "ORT default (threads per core, spinning)": {},
    "intra_op 1": {"intra_op_threads": 1},
    "intra_op 2, no spinning": {"intra_op_threads": 2, "allow_spinning": False},
    "intra_op 1, no spinning": {"intra_op_threads": 1, "allow_spinning": False},
    "intra_op 1, graph extended": {"intra_op_threads": 1, "graph_optimization": "extended"},
    "intra_op 1, no CPU arena": {"intra_op_threads": 1, "cpu_arena": False},
    "intra_op 1, no spinning, no CPU arena": {
        "intra_op_threads": 1,
        "allow_spinning": False,
        "cpu_arena": False,
    },
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard-dir", type=Path, required=True)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--texts", type=int, default=600)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/session_options.json"))
    args = ap.parse_args(argv)

    from guardrail_dro.data.bundled import load_bundled
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.runtime import SessionConfig

    texts = load_bundled("toxic-questions")[0]["test"].texts[: args.texts]
    guards = {
        name: Guard.load(
            args.guard_dir,
            precision=args.precision,
            session_config=SessionConfig(provider="cpu", **opts),
        )
        for name, opts in SETTINGS.items()
    }
    load0 = os.getloadavg()[0]
    lat: dict[str, list[float]] = {k: [] for k in guards}
    for g in guards.values():
        for t in texts[:20]:
            g.check(t)
    for t in texts:
        for k, g in guards.items():
            t0 = time.perf_counter()
            g.check(t)
            lat[k].append((time.perf_counter() - t0) * 1e3)
    batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
    batch_s: dict[str, float] = dict.fromkeys(guards, 0.0)
    for b in batches:
        for k, g in guards.items():
            t0 = time.perf_counter()
            g.check_many(b)
            batch_s[k] += time.perf_counter() - t0
    rows = {
        k: {
            "p50_ms": pct(v, 50),
            "p99_ms": pct(v, 99),
            "mean_ms": float(np.mean(v)),
            "batch32_texts_per_s": len(texts) / batch_s[k],
        }
        for k, v in lat.items()
    }
    res = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
        "guard": str(next(iter(guards.values()))),
        "texts": len(texts),
        "cpus": os.cpu_count(),
        "load_average_1m_start": load0,
        "load_average_1m_end": os.getloadavg()[0],
        "rows": rows,
    }
    print(f"{res['guard']}; {len(texts)} test questions; load {load0:.1f} -> "
          f"{res['load_average_1m_end']:.1f}")  # fmt: skip
    print(f"{'setting':44} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'b32 texts/s':>12}")
    for k, r in rows.items():
        print(f"{k:44} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['mean_ms']:8.3f} "
              f"{r['batch32_texts_per_s']:12.1f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
