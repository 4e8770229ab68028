"""How far does a linear probe on a frozen encoder (all-MiniLM-L6-v2 by default) go on
toxic-questions?

Not a method: a reference point for issue 11's targets (test worst-group accuracy
>= 0.62, accuracy >= 0.72, toxic-vs-safe ROC AUC >= 0.93, FPR <= 0.25 at recall
>= 0.90). The frozen features every frozen-mode method trains on (the trainer's own
feature path and embedding cache) feed scikit-learn's logistic regression, scored by
1 - P(safe), trained on labels no method has:

- **gold, valid + test folds**: the 1,000 validation gold labels plus 4/5 of the test
  split's own gold, scoring the held-out fifth (5 folds, every test item scored once);
- **gold, test folds only**: 4/5 of test's gold alone (the test distribution without
  valid's), the same folds;
- **gold, valid only**: the validation gold alone (what the `gold` method trains on);
- **train votes**: each training item once per class its annotators voted for, weighted
  by that class's share of the votes (uniform soft labels), train items repeated in
  valid or test left out as the bench does: the crowd's information, no estimator;
- **test's own votes, no model**: no training at all: each test item's class
  probabilities are the shares of its own annotators' votes (the toxic score is the
  share voting toxic; accuracy is the plurality vote, ties to the lower class id). It
  reads the test labels no deployed guard has: what the six annotators' judgement itself
  gives on the guard's ROC AUC and FPR targets.

C is shown for every value of a grid instead of being chosen, since test decides
nothing here. FPR at recall 0.90 puts the threshold on test itself (the oracle point).
It bounds none of: a hidden-layer head, another toxic score (the binary head, the mean
of both), a worst-group objective (GroupDRO), a fine-tuned encoder.

Usage::

    python benchmarks/bench_ceiling.py
    python benchmarks/bench_ceiling.py --backbone PATH   # another local encoder

Prints a markdown table; writes ``benchmarks/results/ceiling.json`` (with ``--backbone``:
``ceiling-<folder name>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
FOLDS = 5
RECALL = 0.90


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000).fit(x, y, sample_weight=w)


def _proba(model, x: np.ndarray, k: int) -> np.ndarray:
    """Class probabilities over all ``k`` classes (a fold may lack a rare class)."""
    out = np.zeros((len(x), k))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def _score(proba: np.ndarray, test, safe: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score, roc_curve

    from guardrail_dro.train.metrics import score_split

    m = score_split(test, proba.argmax(1))
    toxic = ~safe[test.gold_array()]
    score = 1 - proba[:, safe].sum(1)
    fpr, tpr, _ = roc_curve(toxic, score, drop_intermediate=False)
    return {
        "accuracy": m.accuracy,
        "worst_group_accuracy": m.worst_group_accuracy,
        "toxic_roc_auc": float(roc_auc_score(toxic, score)),
        f"fpr_at_recall_{RECALL}": float(fpr[np.searchsorted(tpr, RECALL)]),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="default: results/ceiling.json")
    ap.add_argument(
        "--backbone",
        default=None,
        help="another encoder to probe: a local sentence-transformers folder (default: "
        "the shipped all-MiniLM-L6-v2); the JSON is then ceiling-<folder name>.json",
    )
    args = ap.parse_args(argv)

    from sklearn.model_selection import KFold

    from guardrail_dro.data.bundled import load_bundled
    from guardrail_dro.train.features import build_features
    from guardrail_dro.train.trainer import TrainConfig

    t0 = time.perf_counter()
    splits, schema = load_bundled("toxic-questions")
    valid, test = splits["valid"], splits["test"]
    train, _ = splits["train"].without_overlap(valid)
    train, _ = train.without_overlap(test)
    extra = {"backbone": args.backbone} if args.backbone else {}
    feats = build_features(TrainConfig(progress=True, **extra), {**splits, "train": train})
    x = {s: feats.features(s, None).cpu().numpy() for s in ("train", "valid", "test")}
    k = schema.num_classes
    safe = np.array(schema.safe_mask())
    yv, yt = valid.gold_array(), test.gold_array()

    # Uniform soft labels as weighted rows: one row per (item, class voted for).
    labels = train.label_matrix()
    rows, ys, ws = [], [], []
    for i in range(labels.shape[0]):
        votes = labels[i][labels[i] >= 0]
        for c in np.unique(votes):
            rows.append(i)
            ys.append(int(c))
            ws.append(float(np.mean(votes == c)))
    x_votes, y_votes, w_votes = x["train"][rows], np.array(ys), np.array(ws)

    test_votes = test.label_matrix()
    shares = np.stack([(test_votes == c).sum(1) for c in range(k)], 1)
    own = shares / np.maximum((test_votes >= 0).sum(1, keepdims=True), 1)

    folds = list(KFold(FOLDS, shuffle=True, random_state=0).split(x["test"]))
    results: dict[str, dict] = {}
    for c in GRID:
        both, alone = np.zeros((len(yt), k)), np.zeros((len(yt), k))
        for tr, te in folds:
            model = _fit(
                np.vstack([x["valid"], x["test"][tr]]), np.concatenate([yv, yt[tr]]), None, c
            )
            both[te] = _proba(model, x["test"][te], k)
            alone[te] = _proba(_fit(x["test"][tr], yt[tr], None, c), x["test"][te], k)
        results[f"gold, valid + test folds, C={c:g}"] = _score(both, test, safe)
        results[f"gold, test folds only, C={c:g}"] = _score(alone, test, safe)
        model = _fit(x["valid"], yv, None, c)
        results[f"gold, valid only, C={c:g}"] = _score(_proba(model, x["test"], k), test, safe)
        model = _fit(x_votes, y_votes, w_votes, c)
        results[f"train votes (uniform soft), C={c:g}"] = _score(
            _proba(model, x["test"], k), test, safe
        )
        print(f"C={c:g} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    results["test's own votes, no model"] = _score(own, test, safe)

    cols = ("accuracy", "worst_group_accuracy", "toxic_roc_auc", f"fpr_at_recall_{RECALL}")
    print("\n| training labels | acc | worst-group acc | toxic ROC AUC | FPR at recall 0.90 |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    print("\nBest over C, chosen on test (README's table):\n")
    print("| training labels | acc | worst-group acc | toxic ROC AUC | FPR at recall 0.90 |")
    print("|---|---|---|---|---|")
    for source in dict.fromkeys(name.rsplit(", C=", 1)[0] for name in results):
        if source in results:  # no C to choose
            print(f"| {source} | " + " | ".join(f"{results[source][c]:.3f}" for c in cols) + " |")
            continue
        by_c = {n.rsplit("=", 1)[1]: r for n, r in results.items() if n.startswith(source + ",")}
        cells = []
        for col in cols:
            pick = min if col.startswith("fpr") else max
            best = pick(by_c, key=lambda c, col=col: by_c[c][col])
            cells.append(f"{by_c[best][col]:.3f} (C={best})")
        print(f"| {source} | " + " | ".join(cells) + " |")
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "data": "toxic-questions (bundled), scored on test (1710); frozen "
        + (Path(args.backbone).name if args.backbone else "all-MiniLM-L6-v2"),
        "seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    out = args.out or RESULTS / (
        f"ceiling-{Path(args.backbone).name}.json" if args.backbone else "ceiling.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
