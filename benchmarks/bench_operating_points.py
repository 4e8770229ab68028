"""Operating points that transfer: chosen on toxic-questions valid, measured on test.

One run:

1. exports the model (fp32 ONNX) with ``--valid toxic-questions:valid``: the default
   objective (best worst-group binary accuracy) is chosen on valid, the validation
   operating curve stored in guard.json;
2. for the default point, ``Policy(target_recall=0.90)`` (picked from the stored curve)
   and the old flat 0.5, runs the guard's own decisions on the TEST split
   (``evaluate_guard``: windows, policy, the fp32 variant) and reports precision, recall,
   FPR, binary accuracy and the worst group; acceptance: test recall of the 0.90 point
   within 0.03 of 0.90;
3. the toxic score question (issue 10): ROC AUC on valid (and test, for the record) of
   1 - P(safe) of the 15-class head vs a binary logistic head on the same frozen
   embeddings, trained on the soft labels' P(toxic) (the model's own learned soft
   labels, and uniform annotator votes), C chosen on valid; and their average; with a
   paired bootstrap of each valid AUC difference (an interval holding 0 is a tie). Every
   trained model now makes this choice itself (train/toxic_score.py, manifest
   ``toxic_score``); this step re-measures it with C chosen on valid, for the record;
4. plots the test operating curve (recall vs FPR, overall and per group) with the
   chosen points marked.

Usage::

    python benchmarks/bench_operating_points.py --model-dir runs/model   # ours on toxic-questions
    python benchmarks/bench_operating_points.py   # trains ours on toxic-questions first

Writes ``benchmarks/results/operating_points.json`` and ``operating_points.png``.
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
TARGET_RECALL = 0.90
TOLERANCE = 0.03


def _train(work: Path, splits) -> Path:
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    result = BiLevelTrainer(TrainConfig(method="ours", progress=False)).fit(
        splits["train"], splits["valid"]
    )
    hashes = {k: splits[k].content_hash() for k in ("train", "valid")}
    return TrainedModel.from_result(result, hashes).save(work / "model")


def toxic_score_auc(model_dir: Path, splits) -> dict:
    """ROC AUC of 1 - P(safe) (15-class head) vs binary heads on the frozen embeddings."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from guardrail_dro.train.features import build_features
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import TrainConfig

    trained = TrainedModel.load(model_dir)
    schema = trained.schema
    safe = np.array([c in schema.safe for c in schema.classes])
    feats = build_features(
        TrainConfig(progress=False, max_length=trained.manifest.max_length), splits
    )
    x = {k: feats.features(k, None).cpu().numpy() for k in splits}
    y = {k: ~safe[splits[k].gold_array()] for k in ("valid", "test")}
    with torch.no_grad():
        head = {
            k: 1
            - torch.softmax(trained.model.head(torch.from_numpy(x[k])), -1).numpy()[:, safe].sum(1)
            for k in ("valid", "test")
        }
    labels = splits["train"].label_matrix(trained.manifest.annotators)
    onehot = np.zeros((*labels.shape, len(schema.classes)))
    for a in range(labels.shape[1]):
        ok = labels[:, a] >= 0
        onehot[ok, a, labels[ok, a]] = 1
    soft = {"uniform votes": onehot.sum(1) / np.maximum(onehot.sum((1, 2))[:, None], 1)}
    if trained.estimator is not None:
        with torch.no_grad():
            w = trained.estimator(torch.from_numpy(x["train"]), torch.from_numpy(labels))
        soft["learned soft labels (ours)"] = (w.numpy()[:, :, None] * onehot).sum(1)
    base = "1 - P(safe), 15-class head"
    out: dict = {base: {k: float(roc_auc_score(y[k], head[k])) for k in ("valid", "test")}}
    valid_scores = {base: head["valid"]}
    for name, s in soft.items():
        keep = s.sum(1) > 0
        p = 1 - s[keep][:, safe].sum(1)
        xt = np.concatenate([x["train"][keep]] * 2)
        yt = np.r_[np.ones(keep.sum()), np.zeros(keep.sum())]
        best = None
        for c in (0.1, 1.0, 10.0, 100.0):  # C chosen on valid
            lr = LogisticRegression(C=c, max_iter=3000).fit(xt, yt, sample_weight=np.r_[p, 1 - p])
            auc = roc_auc_score(y["valid"], lr.decision_function(x["valid"]))
            if best is None or auc > best[0]:
                best = (auc, c, lr)
        assert best is not None
        _, c, lr = best
        prob = {k: lr.predict_proba(x[k])[:, 1] for k in ("valid", "test")}
        out[f"binary head, {name} (C={c})"] = {
            k: float(roc_auc_score(y[k], prob[k])) for k in ("valid", "test")
        }
        out[f"mean of both, {name}"] = {
            k: float(roc_auc_score(y[k], (prob[k] + head[k]) / 2)) for k in ("valid", "test")
        }
        valid_scores[f"binary head, {name} (C={c})"] = prob["valid"]
        valid_scores[f"mean of both, {name}"] = (prob["valid"] + head["valid"]) / 2
    # Paired bootstrap of the valid AUC difference to 1 - P(safe): a difference whose 95%
    # interval holds 0 is a tie (and C was chosen on valid, which favours the binary head).
    rng = np.random.default_rng(0)
    n = len(y["valid"])
    draws = [
        i for i in (rng.integers(0, n, n) for _ in range(1000)) if 0 < y["valid"][i].mean() < 1
    ]
    for name, sc in valid_scores.items():
        if name == base:
            continue
        d = [
            roc_auc_score(y["valid"][i], sc[i]) - roc_auc_score(y["valid"][i], head["valid"][i])
            for i in draws
        ]
        lo, hi = np.percentile(d, [2.5, 97.5])
        out[name]["valid_delta_vs_1_minus_p_safe_ci95"] = [float(lo), float(hi)]
    return out


def toxic_score_winner(auc: dict) -> str:
    """1 - P(safe) unless an alternative's valid AUC is higher with a 95% bootstrap
    interval of the difference above 0 (then the best such alternative)."""
    better = [
        k
        for k, v in auc.items()
        if "valid_delta_vs_1_minus_p_safe_ci95" in v
        and v["valid_delta_vs_1_minus_p_safe_ci95"][0] > 0
    ]
    return max(better, key=lambda k: auc[k]["valid"]) if better else "1 - P(safe), 15-class head"


def plot(path: Path, test_eval, valid_curve, group_curves: dict, points: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axg) = plt.subplots(1, 2, figsize=(12, 5.2))
    c = test_eval.curve
    ax.plot(c.fpr, c.recall, color="black", lw=2, label=f"test (AUC {test_eval.roc_auc:.3f})")
    ax.plot(valid_curve.fpr, valid_curve.recall, color="grey", ls="--", label="valid")
    markers = {"default objective": "o", f"target recall {TARGET_RECALL}": "s", "flat 0.5": "x"}
    for (name, p), m in zip(points.items(), markers.values(), strict=True):
        ax.scatter(
            [p["test"]["fpr"]],
            [p["test"]["recall"]],
            marker=m,
            s=80,
            zorder=5,
            label=f"{name}: t={p['threshold']:.3f} (test)",
        )
    ax.axhline(TARGET_RECALL, color="tab:orange", lw=0.8, ls=":")
    ax.set(
        xlabel="false-positive rate (safe texts blocked)",
        ylabel="recall (toxic texts blocked)",
        title="toxic-questions: operating curve, all texts",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=8)
    target_t = points[f"target recall {TARGET_RECALL}"]["threshold"]
    for name, gc in group_curves.items():
        (line,) = axg.plot(gc.fpr, gc.recall, lw=1, alpha=0.8)
        i = int(np.flatnonzero(np.asarray(gc.threshold) >= target_t)[-1])
        axg.scatter([gc.fpr[i]], [gc.recall[i]], color=line.get_color(), s=18, zorder=5)
        axg.annotate(
            name, (gc.fpr[i], gc.recall[i]), fontsize=6, xytext=(2, -6), textcoords="offset points"
        )
    axg.set(
        xlabel="false-positive rate",
        ylabel="recall",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"per topic group (test); dots: the target-recall {TARGET_RECALL} threshold",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, help="ours on toxic-questions (default: train it)")
    ap.add_argument("--out", type=Path, default=RESULTS / "operating_points.json")
    args = ap.parse_args(argv)

    from export.onnx import export_onnx
    from guardrail_dro.data.bundled import load_bundled
    from guardrail_dro.serve.calibration import operating_curve
    from guardrail_dro.serve.evaluate import evaluate_guard
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.policy import Policy

    splits, _ = load_bundled("toxic-questions")
    work = Path(tempfile.mkdtemp(prefix="bench-op-"))
    t0 = time.perf_counter()
    model_dir = args.model_dir or _train(work, splits)
    print("exporting with --valid toxic-questions:valid", flush=True)
    guard_dir = export_onnx(model_dir, work / "guard", int8=False, valid=splits["valid"])
    guard = Guard.load(guard_dir, provider="cpu", precision="fp32")
    cal = guard.artifact.manifest.calibration
    policies = {
        "default objective": Policy(),
        f"target recall {TARGET_RECALL}": Policy(target_recall=TARGET_RECALL),
        "flat 0.5": Policy(toxic_threshold=0.5),
    }
    points, test_eval = {}, None
    for name, policy in policies.items():
        print(f"checking the test split: {name}", flush=True)
        ev = evaluate_guard(guard.with_policy(policy), splits["test"])
        test_eval = test_eval or ev
        points[name] = {
            "threshold": ev.point.threshold,
            "valid": ev.valid_point.model_dump() if ev.valid_point else None,
            "test": ev.point.model_dump(),
        }
        print(f"  valid {points[name]['valid']}\n  test  {points[name]['test']}", flush=True)
    assert test_eval is not None
    test = splits["test"]
    s = np.array(test_eval.scores)
    safe = np.array([c in test.schema.safe for c in test.schema.classes])
    y, g = ~safe[test.gold_array()], test.group_array()
    group_curves = {
        name: operating_curve(s[g == k], y[g == k])
        for k, name in enumerate(test.groups)
        if y[g == k].any() and (~y[g == k]).any()
    }
    recall = points[f"target recall {TARGET_RECALL}"]["test"]["recall"]
    # Step 3 re-fits heads on the pre-trained encoder's embeddings: for a full-mode
    # model those are not its features (its head on them gave valid AUC 0.882 where the
    # model's own was 0.894, 2026-12-06), so it is skipped there.
    mode = json.loads((Path(model_dir) / "manifest.json").read_text())["config"].get("mode")
    auc: dict = {}
    winner = None
    if mode == "full":
        print("toxic score: step 3 skipped (full mode: the frozen embeddings are not this "
              "model's; its own choice is in the manifest's toxic_score)", flush=True)  # fmt: skip
    else:
        print("toxic score: valid / test ROC AUC", flush=True)
        auc = toxic_score_auc(Path(model_dir), splits)
        for k, v in auc.items():
            ci = v.get("valid_delta_vs_1_minus_p_safe_ci95")
            delta = f"  valid difference 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
            print(f"  {k}: valid {v['valid']:.4f}  test {v['test']:.4f}{delta}", flush=True)
        winner = toxic_score_winner(auc)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "model_dir": str(model_dir),
        "data": "toxic-questions (bundled): chosen on valid (1000 texts), measured on test (1710)",
        "variant": "fp32 ONNX, the guard's own decisions (Guard.decide_many)",
        "calibration": {k: v for k, v in cal.model_dump().items() if k != "curve"},
        "points": points,
        "test_roc_auc": test_eval.roc_auc,
        "acceptance": {
            "target_recall": TARGET_RECALL,
            "test_recall": recall,
            "within": TOLERANCE,
            "passed": abs(recall - TARGET_RECALL) <= TOLERANCE,
        },
        "toxic_score_auc": auc,
        "toxic_score_winner_on_valid": winner,
        "seconds": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    plot(png, test_eval, cal.curve, group_curves, points)
    print(
        f"acceptance: test recall {recall:.4f} for target {TARGET_RECALL} "
        f"({'within' if report['acceptance']['passed'] else 'NOT within'} {TOLERANCE})"
    )
    if winner is not None:
        print(f"toxic score kept (best valid AUC, ties to 1 - P(safe)): {winner}")
    print(f"wrote {args.out} and {png}")
    return report


if __name__ == "__main__":
    main()
