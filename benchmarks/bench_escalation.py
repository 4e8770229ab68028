"""Escalation to an LLM judge: bands chosen on toxic-questions valid, measured on test.

For each judge budget (the most of the texts the guard may send to the judge), the band
with the lowest validation FPR at recall >= 0.90 is chosen on valid
(``calibrate_escalation``: the exported guard's own toxic scores, the gold labels, the
judge's own validation labels), then applied to the test split with the judge's own test
labels standing in for its answers (toxic-questions ships every annotator's label on
every text, so no API is called). Budget 0 is the guard alone at its best valid
threshold for the same recall target; "judge alone" is every text sent to the judge.

Usage::

    python benchmarks/bench_escalation.py --model-dir runs/model [--judge label_5]

Writes ``benchmarks/results/escalation.json`` and ``escalation.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path("benchmarks/results")


def binary_metrics(blocked: np.ndarray, toxic: np.ndarray, groups: np.ndarray) -> dict:
    correct = blocked == toxic
    per_group = [float(correct[groups == g].mean()) for g in np.unique(groups)]
    return {
        "recall": float(blocked[toxic].mean()),
        "fpr": float(blocked[~toxic].mean()),
        "binary_accuracy": float(correct.mean()),
        "worst_group_binary_accuracy": min(per_group),
    }


def end_to_end(guard, band, test, judge: str, toxic: np.ndarray, groups: np.ndarray) -> dict:
    """The band through ``EscalatingGuard`` for real: the OpenAI SDK over HTTP to a local
    server that answers each text with the judge's recorded label and rationale."""
    from annotators.openai_annotator import OpenAIAnnotator
    from annotators.testing import FakeLLMServer
    from annotators.testing.rules import FakeReply
    from guardrail_dro.serve.escalation import EscalatingGuard

    said = {it.text: a for it in test.items for a in it.annotations if a.annotator == judge}

    def replay(text: str) -> FakeReply:
        a = said[text]
        return FakeReply(a.label, a.rationale or "replayed", a.confidence or 0.9)

    with FakeLLMServer(replay) as srv:
        ann = OpenAIAnnotator(judge, api_key="local-replay", base_url=srv.openai_base_url)
        with EscalatingGuard(guard, ann, band) as cascade:
            out = cascade.check_many(test.texts)
        calls = sum(srv.calls.values())
    blocked = np.array([not e.allowed for e in out])
    return binary_metrics(blocked, toxic, groups) | {
        "deferred": float(np.mean([e.escalated for e in out])),
        "judge_calls": calls,
        "degraded": int(sum(e.result.degraded for e in out)),
    }


def plot(path: Path, rows: list[dict], judge: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["test"]["deferred"] for r in rows]
    ax.plot(x, [r["test"]["fpr"] for r in rows], "o-", label="test FPR")
    ax.plot(x, [r["test"]["recall"] for r in rows], "s-", label="test recall")
    ax.axhline(judge["fpr"], ls=":", c="C0", label="judge alone: FPR")
    ax.axhline(judge["recall"], ls=":", c="C1", label="judge alone: recall")
    ax.set_xlabel("share of test texts sent to the judge")
    ax.set_ylabel("rate")
    ax.set_title("Guard + LLM judge, bands chosen on valid (recall >= 0.90)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, required=True, help="a trained model directory")
    ap.add_argument("--judge", default="label_5", help="annotator column used as the judge")
    ap.add_argument("--budgets", default="0,0.05,0.1,0.15,0.2,0.3,0.5,1")
    ap.add_argument("--target-recall", type=float, default=0.90)
    ap.add_argument(
        "--end-to-end",
        type=float,
        default=0.2,
        help="also run this budget's band through EscalatingGuard and a replaying server",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "escalation.json")
    args = ap.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from export.onnx import export_onnx
    from guardrail_dro.data.bundled import load_bundled
    from guardrail_dro.serve.escalation import (
        band_predictions,
        calibration_arrays,
        choose_band,
        judge_verdicts,
    )
    from guardrail_dro.serve.guard import Guard

    t0 = time.perf_counter()
    splits, _ = load_bundled("toxic-questions")
    valid, test = splits["valid"], splits["test"]
    work = Path(tempfile.mkdtemp(prefix="bench-escalation-"))
    print("exporting (fp32, --valid toxic-questions:valid)", flush=True)
    guard = Guard.load(
        export_onnx(args.model_dir, work / "guard", int8=False, valid=valid),
        provider="cpu",
        precision="fp32",
    )
    scores = np.array([r.toxic_score for r in guard.decide_many(test.texts)])
    safe = np.asarray(test.schema.safe_mask(), dtype=bool)
    toxic = ~safe[test.gold_array()]
    groups = test.group_array()
    verdict = judge_verdicts(test, args.judge)
    if (verdict < 0).any():
        raise SystemExit(f"{args.judge} left {(verdict < 0).sum()} test texts unlabelled")
    judge_toxic = verdict == 1
    judge = binary_metrics(judge_toxic, toxic, groups)
    arrays = calibration_arrays(guard, valid, args.judge)
    rows = []
    for budget in [float(b) for b in args.budgets.split(",")]:
        band = choose_band(
            *arrays, target_recall=args.target_recall, max_defer=budget, judge=args.judge
        )
        blocked, deferred = band_predictions(scores, judge_toxic, band.low, band.high)
        test_m = binary_metrics(blocked, toxic, groups) | {"deferred": float(deferred.mean())}
        rows.append({"max_defer": budget, "band": band.model_dump(), "test": test_m})
        print(
            f"budget {budget:.2f}: band [{band.low:.3f}, {band.high:.3f}) valid recall "
            f"{band.valid.recall:.3f} FPR {band.valid.fpr:.3f} deferred "
            f"{band.valid.deferred:.3f} | test recall {test_m['recall']:.3f} FPR "
            f"{test_m['fpr']:.3f} deferred {test_m['deferred']:.3f} worst-group binary acc "
            f"{test_m['worst_group_binary_accuracy']:.3f}",
            flush=True,
        )
    print(f"judge alone ({args.judge}): test recall {judge['recall']:.3f} FPR {judge['fpr']:.3f}")
    e2e = None
    if args.end_to_end is not None:
        band = choose_band(
            *arrays, target_recall=args.target_recall, max_defer=args.end_to_end, judge=args.judge
        )
        e2e = {"max_defer": args.end_to_end, "test": end_to_end(guard, band, test, args.judge,
                                                                  toxic, groups)}  # fmt: skip
        print(f"end to end (EscalatingGuard, OpenAI SDK, replaying server): {e2e}", flush=True)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "model_dir": str(args.model_dir),
        "judge": args.judge,
        "data": "toxic-questions (bundled): bands chosen on valid (1000 texts), measured on "
        "test (1710), the judge's recorded labels as its answers",
        "variant": "fp32 ONNX, the guard's own toxic scores (Guard.decide_many)",
        "target_recall": args.target_recall,
        "guard_test_roc_auc": float(roc_auc_score(toxic, scores)),
        "judge_alone": judge,
        "rows": rows,
        "end_to_end": e2e,
        "seconds": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(args.out.with_suffix(".png"), rows, judge)
    return report


if __name__ == "__main__":
    main()
