"""Train on a long-format CSV of sparse crowd labels (120 workers, 3 per item) plus
LLM judges, and compare our method with majority vote on the worst group.

    python examples/train_on_crowd_labels.py [--backbone HF_FOLDER] [--out runs/crowd]

Your own data has the same shape: one row per (item, annotator) with columns
``item_id,text,annotator,label`` and, on the validation split, ``gold,group``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from guardrail_dro import BiLevelTrainer, TrainConfig, make_synthetic, read_splits
from guardrail_dro.data.items import AnnotatedDataset


def write_long_csv(ds: AnnotatedDataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "text", "annotator", "label", "kind", "gold", "group"])
        for it in ds:
            for a in it.annotations:
                w.writerow([it.item_id, it.text, a.annotator, a.label, a.kind, it.gold, it.group])
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default=None, help="HF encoder folder (default: MiniLM)")
    ap.add_argument("--out", type=Path, default=Path("runs/crowd"))
    ap.add_argument("--n-train", type=int, default=800)
    args = ap.parse_args(argv)

    data = make_synthetic(
        n_train=args.n_train, n_valid=300, n_test=300, crowd_size=120, crowd_per_item=3, seed=11
    )
    paths = {k: write_long_csv(v, args.out / f"{k}.csv") for k, v in data.items()}
    splits, schema = read_splits(paths)  # format detected from the columns
    print(
        f"{len(splits['train'])} items, {len(splits['train'].annotators)} annotators, "
        f"classes {list(schema.classes)}"
    )
    for method in ("ours", "mv"):
        cfg = TrainConfig(
            method=method, backbone=args.backbone, cache_dir=args.out / "cache", progress=False
        )
        m = BiLevelTrainer(cfg).fit(splits["train"], splits["valid"]).evaluate(splits["test"])
        print(
            f"{method:>4}: test accuracy {m.accuracy:.3f}, worst-group accuracy "
            f"{m.worst_group_accuracy:.3f} ({m.worst_group})"
        )


if __name__ == "__main__":
    main()
