"""ConvAbuse (real conversational abuse, 8 expert annotators, 1-7 per turn) as a
guardrail-dro dataset, then the frozen bench of ours against mv, soft and ds.

    python examples/convabuse_recipe.py [--data ../shared/datasets/convabuse]
        [--out runs/convabuse] [--seeds 3] [--convert-only]

Conversion (the dataset's README states the conventions):

- text: the rated ``user`` turn; group: ``bot`` (E.L.I.Z.A. or CarbonBot).
- an annotator's binary label: ``abusive`` when its rating is -1, -2 or -3, else
  ``not_abusive`` (1 = not abusive and 0 = ambiguous both count as not abusive).
  A few cells hold several ratings by the same annotator ("0, 1"): each is one
  rating, and the annotator's label is abusive only if a strict majority of its own
  ratings are.
- gold: ``abusive`` when a strict majority of the turn's annotators say abusive;
  ties are not abusive. Gold is therefore made of the same people's labels (there is
  no independent gold in ConvAbuse): valid and test measure agreement with the
  majority of a turn's own annotators, as in the paper.

Writes ``train/valid/test.jsonl`` (+ the label schema beside each) under ``--out``,
then runs ``guardrail-dro bench --mode frozen`` on them, unless ``--convert-only``.
Where the data folder is absent it says so and exits 0 (the data is not shipped).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "convabuse"
SPLITS = ("train", "valid", "test")
LEVELS = ("1", "0", "-1", "-2", "-3")
ABUSIVE_LEVELS = frozenset({"-1", "-2", "-3"})
SCHEMA = LabelSchema(
    classes=("not_abusive", "abusive"),
    safe=("not_abusive",),
    descriptions={
        "not_abusive": "a user turn that is not abusive (or only ambiguous)",
        "abusive": "a user turn abusive toward the agent or others (mild to very strong)",
    },
)


def annotator_label(row: dict[str, str], k: int) -> str | None:
    """Annotator ``k``'s binary label of a row, or None where it did not rate it."""
    cells = {lv: row.get(f"Annotator{k}_is_abuse.{lv}", "").strip() for lv in LEVELS}
    if not any(cells.values()):
        return None
    columns = {lv: [v.strip() for v in c.split(",")] if c else [] for lv, c in cells.items()}
    repeats = max(len(v) for v in columns.values())
    abusive = rated = 0
    for j in range(repeats):
        chosen = [lv for lv, vals in columns.items() if j < len(vals) and vals[j] == "1"]
        if len(chosen) == 1:
            rated += 1
            abusive += chosen[0] in ABUSIVE_LEVELS
    if not rated:
        return None
    return "abusive" if 2 * abusive > rated else "not_abusive"


def convert_split(path: Path, name: str) -> AnnotatedDataset:
    """One split's CSV as items with annotator labels, gold and group (see the module)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    annotators = sorted(
        {int(c.split("_", 1)[0].removeprefix("Annotator")) for c in rows[0] if "_is_abuse." in c}
    )
    items = []
    for row in rows:
        anns = []
        for k in annotators:
            label = annotator_label(row, k)
            if label is not None:
                anns.append(Annotation(annotator=f"annotator_{k}", label=label))
        if not anns:
            continue
        abusive = sum(a.label == "abusive" for a in anns)
        gold = "abusive" if 2 * abusive > len(anns) else "not_abusive"
        items.append(
            Item(
                item_id=row["example_id"],
                text=row["user"],
                annotations=tuple(anns),
                gold=gold,
                group=row["bot"],
            )
        )
    return AnnotatedDataset(items, SCHEMA, name=name)


def convert(data: Path, out: Path) -> dict[str, Path]:
    """Write the three splits as JSONL under ``out``; returns their paths."""
    paths = {}
    for split in SPLITS:
        ds = convert_split(data / f"{split}.csv", split)
        paths[split] = out / f"{split}.jsonl"
        ds.save_jsonl(paths[split])
        share = sum(it.gold == "abusive" for it in ds) / len(ds)
        ties = sum(
            2 * sum(a.label == "abusive" for a in it.annotations) == len(it.annotations)
            for it in ds
        )
        print(f"{split}: {len(ds)} turns, {share:.1%} abusive (gold), {ties} ties -> not abusive")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the convabuse folder")
    ap.add_argument("--out", type=Path, default=Path("runs/convabuse"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="ours,mv,soft,ds")
    ap.add_argument("--convert-only", action="store_true")
    args = ap.parse_args(argv)
    if not all((args.data / f"{s}.csv").is_file() for s in SPLITS):
        print(
            f"convabuse not found at {args.data} (train/valid/test.csv): it is not shipped "
            "with guardrail-dro; point --data at a copy. Nothing done."
        )
        return 0
    paths = convert(args.data, args.out)
    if args.convert_only:
        return 0
    cmd = [
        sys.executable, "-m", "guardrail_dro", "bench",
        "--train", str(paths["train"]), "--valid", str(paths["valid"]),
        "--test", str(paths["test"]), "--out", str(args.out / "bench"),
        "--seeds", str(args.seeds), "--methods", args.methods, "--mode", "frozen",
    ]  # fmt: skip
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
