"""Does the guard let ordinary chat through and stop harmful requests?

A development probe (issue 10, item 6): ``data/chat_probe.json`` holds 30 everyday
questions and 20 clearly harmful requests, written by hand and never used to train or
choose anything. ``--probe data/chat_probe_b.json`` runs a second one, written
independently later (before the experiments it judges, without reading the first; frozen
since): a few of the first probe's everyday items were seen while the bundled
``everyday-requests`` set was being written, so its numbers are optimistic.

For each exported guard this prints how many everyday questions it
allows and how many harmful requests it blocks, at the threshold in its guard.json and
at any other toxic threshold asked for (``--threshold``; ``--valid-threshold`` adds the
one its model chose on valid, best worst-group binary accuracy, recorded in the model
manifest's ``background`` section), and writes the table and every score as JSON.

    python benchmarks/bench_chat_probe.py --guard quickstart-out/guard \\
        --model quickstart-out/model --valid-threshold --out benchmarks/results/chat_probe.json
    python benchmarks/bench_chat_probe.py --guard quickstart-out/guard \\
        --probe benchmarks/data/chat_probe_b.json   # -> benchmarks/results/chat_probe_b.json

Targets (issue 10): at least 28 of 30 everyday questions allowed, at least 19 of 20
harmful requests blocked, on an independent set; this probe is only a development aid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from guardrail_dro import Guard
from guardrail_dro.serve.policy import Policy

PROBE = Path(__file__).resolve().parent / "data" / "chat_probe.json"


def _thresholds(guard_dir: Path, model_dir: Path | None, extra: list[float], valid: bool):
    """(name, toxic threshold or None for guard.json's) to measure at."""
    out: list[tuple[str, float | None]] = [("guard.json", None)]
    out += [(f"{t:g}", t) for t in extra]
    if valid:
        if model_dir is None:
            raise SystemExit("--valid-threshold needs --model (its manifest records it)")
        bg = json.loads((model_dir / "manifest.json").read_text()).get("background") or {}
        if bg.get("valid_threshold") is None:
            raise SystemExit(f"{model_dir}: the manifest records no valid threshold")
        out.append((f"valid-chosen {bg['valid_threshold']:.3f}", float(bg["valid_threshold"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard", type=Path, required=True, help="An exported guard folder.")
    ap.add_argument("--model", type=Path, help="Its trained model folder (for --valid-threshold).")
    ap.add_argument("--threshold", type=float, action="append", default=[])
    ap.add_argument("--valid-threshold", action="store_true")
    ap.add_argument(
        "--probe",
        type=Path,
        default=PROBE,
        help="Probe JSON: {'everyday': [...], 'harmful': [...]} (default data/chat_probe.json; "
        "data/chat_probe_b.json is the second, independent one).",
    )
    ap.add_argument(
        "--out", type=Path, help="JSON out (default benchmarks/results/<probe name>.json)."
    )
    args = ap.parse_args()
    out = args.out or Path("benchmarks/results") / f"{args.probe.stem}.json"

    probe = json.loads(args.probe.read_text())
    guard = Guard.load(args.guard)
    rows = []
    table = Table("threshold", "everyday allowed", "harmful blocked", "wrongly blocked")
    for name, thr in _thresholds(args.guard, args.model, args.threshold, args.valid_threshold):
        g = guard if thr is None else guard.with_policy(Policy(toxic_threshold=thr))
        every = [g.check(t) for t in probe["everyday"]]
        harm = [g.check(t) for t in probe["harmful"]]
        allowed = sum(r.allowed for r in every)
        blocked = sum(not r.allowed for r in harm)
        wrong = [t for t, r in zip(probe["everyday"], every, strict=True) if not r.allowed]
        table.add_row(
            name,
            f"{allowed}/{len(every)}",
            f"{blocked}/{len(harm)}",
            "; ".join(w[:40] for w in wrong),
        )
        rows.append(
            {
                "threshold": name,
                "toxic_threshold": thr,
                "everyday_allowed": allowed,
                "everyday": len(every),
                "harmful_blocked": blocked,
                "harmful": len(harm),
                "everyday_scores": {
                    t: r.toxic_score for t, r in zip(probe["everyday"], every, strict=True)
                },
                "harmful_scores": {
                    t: r.toxic_score for t, r in zip(probe["harmful"], harm, strict=True)
                },
            }
        )
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"guard": str(args.guard), "probe": args.probe.name, "rows": rows}, indent=2)
        + "\n"
    )
    Console().print(f"written to {out}")


if __name__ == "__main__":
    main()
