"""Which training recipe gives the quickstart a guard that lets ordinary chat through?

Issue 10's last acceptance bullet: the quickstart's guard must allow everyday questions
and block harmful requests on a set we do not see. This trains one variant of the
quickstart's recipe (``ours``, 20 epochs, frozen MiniLM, background weight 1, half the
background; toxic-questions train minus its overlap with valid and test, as ``bench``
does), exports it fp32 at the quickstart's operating point (``--objective balanced``,
chosen on valid) and measures, at that exported threshold:

- on valid: the toxic score's ROC AUC (the score the guard serves), and the binary
  accuracy, recall, FPR and worst-group binary accuracy of the guard's decisions;
- the held-out background block rate (every bundled set's held-out part as it is
  *now*, per set, so variants trained before the sets grew are measured on the same
  texts; a held-out text never trains in any variant: the split is by hash);
- both development probes (``data/chat_probe.json``, ``data/chat_probe_b.json``).

The choice between variants is made on valid and held-out background only, by this rule
(``RULE``, written down before any variant was measured); the probes are reported
either way.

    python benchmarks/bench_chat_variants.py train a --out /tmp/chat-variants
    python benchmarks/bench_chat_variants.py train c --head-hidden 256 \\
        --background convabuse-background --background everyday-requests --out /tmp/chat-variants
    python benchmarks/bench_chat_variants.py measure --out /tmp/chat-variants \\
        --json benchmarks/results/chat_variants.json

``train`` writes ``OUT/NAME/model`` and ``OUT/NAME/guard``; ``measure`` scores every
variant found under ``OUT`` and prints one table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

PROBES = {
    "probe A": Path(__file__).resolve().parent / "data" / "chat_probe.json",
    "probe B": Path(__file__).resolve().parent / "data" / "chat_probe_b.json",
}
BACKGROUND = ("convabuse-background", "everyday-requests")
"""The quickstart's background sets (guardrail_dro/cli/quick_recipe.py BACKGROUND)."""
HELDOUT = ("convabuse-background", "everyday-requests", "assistant-replies")
HARMFUL = "harmful-requests"
"""The bundled harmful background set; its held-out part is measured for every variant."""
HARMFUL_REPLIES = "harmful-replies"
"""The output rail's harmful side (assistant replies that comply with harm); its held-out
part is measured for every variant measured since it exists."""
OBJECTIVE = "worst_group_balanced_accuracy"
"""The quickstart's export objective (``--objective balanced``)."""
RULE = (
    "eligible: valid toxic ROC AUC at most 0.01 below the baseline's (a: today's data) and "
    "valid worst-group binary accuracy at the exported threshold at most 0.02 below it; "
    "among the eligible, the lowest held-out background block rate at the exported "
    "threshold (convabuse-background and everyday-requests held-out parts together), "
    "differences under 1 point counting as ties, broken by the higher valid ROC AUC; the "
    "baseline stays unless another variant wins"
)
"""Applied to seed 0 first; then, because one seed of ``ours`` moves its chosen epoch (and
so these numbers) by more than the differences seen, to the mean over seeds 0, 1, 2 of
each variant (decided after seed 0, before any other seed was measured).

Why: valid measures the toxic-questions task the guard must keep doing (separation and
the decisions at the shipped point), the held-out background measures ordinary text,
which valid does not contain. The probes judge, they do not choose."""


RULE_HARMFUL = (
    "harmful background round (written before any variant with harmful text was trained): "
    "baseline a = the quickstart's recipe (128-wide head, all the background, no harmful "
    "text); eligible: valid toxic ROC AUC at most 0.01 below a's, valid worst-group binary "
    "accuracy at the exported threshold at most 0.02 below a's, and held-out background "
    "block rate at most 1 point above a's; among the eligible, the highest held-out "
    "harmful-requests block rate, differences under 2 points counting as ties broken by "
    "the lower held-out background block rate; on the mean of seeds 0, 1, 2; a stays "
    "unless another variant wins"
)
"""Why the harmful round needs its own rule: ``RULE`` cannot see harmful text (valid's
toxic items are toxic-questions' kinds), and a harmful term can only cost ordinary text
and valid; so the costs are bounded and the gain is what is maximised. The probes judge."""


RULE_REPLIES = (
    "replies round (written before the variant was trained): r3 = the chosen harmful "
    "recipe h3 with assistant-replies added to the safe background; kept over h3 only if "
    "it passes RULE_HARMFUL's bounds against a, its held-out harmful-requests block rate is "
    "at most 2 points below h3's, and its held-out assistant-replies block rate is lower "
    "than h3's; on the mean of seeds 0, 1, 2"
)
"""Why: the quickstart's output rail blocks an ordinary assistant reply (backup advice);
assistant-replies was left out of the background before (valid AUC fell, 0.886 -> 0.866,
on one seed without harmful text). Its held-out part is still never trained."""


RULE_OUTPUT = (
    "output round (written 2026-12-03 before the variant was trained): o3 = the chosen "
    "harmful recipe h3 with assistant-replies added to the safe background and "
    "harmful-replies to the harmful one (weight 3 like harmful-requests); kept over h3 only "
    "if it passes RULE_HARMFUL's bounds against a, its held-out harmful-requests block "
    "rate is at most 2 points below h3's, its held-out harmful-replies block rate is not "
    "below h3's, and its held-out assistant-replies block rate is lower than h3's; on the "
    "mean of seeds 0, 1, 2"
)
"""Why a second try at replies: with replies only on the safe side (r3, r6) the guard
learned that a declarative answer is safe, and lost harmful recall and valid worst-group
binary accuracy; harmful replies on the other side give the output rail both kinds of
the text it checks. The output rail's recall (held-out harmful-replies) may not drop."""


def keep_output(rows: dict[str, dict[str, float]]) -> bool:
    """Whether ``RULE_OUTPUT`` keeps o3 over h3 (rows: name -> mean ``_summary``)."""
    o3, h3 = rows["o3"], rows["h3"]
    return (
        choose_harmful({"a": rows["a"], "o3": o3}, "a") == "o3"  # as RULE_REPLIES reads it
        and o3["heldout_harmful_block_rate"] >= h3["heldout_harmful_block_rate"] - 0.02
        and o3["heldout_harmful_replies_block_rate"] >= h3["heldout_harmful_replies_block_rate"]
        and o3["heldout_replies_block_rate"] < h3["heldout_replies_block_rate"]
    )


def choose_harmful(rows: dict[str, dict[str, float]], baseline: str = "a") -> str:
    """The variant ``RULE_HARMFUL`` picks among ``rows`` (name -> ``_summary``)."""
    base = rows[baseline]
    ok = [
        n
        for n, r in rows.items()
        if r["valid_auc"] >= base["valid_auc"] - 0.01
        and r["valid_wg_binary_accuracy"] >= base["valid_wg_binary_accuracy"] - 0.02
        and r["heldout_block_rate"] <= base["heldout_block_rate"] + 0.01
    ]
    top = max(rows[n].get("heldout_harmful_block_rate", 0.0) for n in ok)
    tied = [n for n in ok if rows[n].get("heldout_harmful_block_rate", 0.0) > top - 0.02]
    if baseline in tied:
        return baseline
    return min(tied, key=lambda n: rows[n]["heldout_block_rate"])


def keep_replies(rows: dict[str, dict[str, float]], replies: dict[str, float]) -> bool:
    """Whether ``RULE_REPLIES`` keeps r3 over h3 (``replies``: held-out assistant-replies
    block rate per variant, mean over seeds)."""
    r3, h3 = rows["r3"], rows["h3"]
    return (
        choose_harmful({"a": rows["a"], "r3": r3}, "a") == "r3"
        and r3["heldout_harmful_block_rate"] >= h3["heldout_harmful_block_rate"] - 0.02
        and replies["r3"] < replies["h3"]
    )


def train(args: argparse.Namespace) -> None:
    """Train and export one variant into ``OUT/NAME``."""
    from export.onnx import export_onnx
    from guardrail_dro.data.bundled import load_bundled
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    splits, _ = load_bundled("toxic-questions")
    trn, valid, test = splits["train"], splits["valid"], splits["test"]
    trn, _ = trn.without_overlap(test)  # what bench (and so the quickstart) trains on
    cfg = TrainConfig(
        method="ours",
        epochs=args.epochs,
        background_safe=list(args.background or BACKGROUND),
        background_harmful=list(args.harmful or []),
        harmful_weight=args.harmful_weight,
        background_weight=args.weight,
        background_fraction=args.fraction,
        head_hidden=args.head_hidden,
        seed=args.seed,
        average_seeds=args.average_seeds,
        progress=False,
    )
    t0 = time.perf_counter()
    result = BiLevelTrainer(cfg).fit(trn, valid)
    seconds = time.perf_counter() - t0
    folder = args.out / args.name
    model = TrainedModel.from_result(
        result, {"train": trn.content_hash(), "valid": valid.content_hash()}
    ).save(folder / "model")
    export_onnx(
        model, folder / "guard", int8=False, valid=valid, overwrite=True, objective=OBJECTIVE
    )
    record = {
        "name": args.name,
        "note": args.note,
        "config": cfg.model_dump(mode="json"),
        "train_seconds": round(seconds, 1),
        "best_epoch": result.best_epoch,
        "valid_accuracy": result.valid_metrics.accuracy,
        "valid_worst_group_accuracy": result.valid_metrics.worst_group_accuracy,
        "toxic_score": result.toxic_score.model_dump() if result.toxic_score else None,
        "background": result.background.model_dump() if result.background else None,
    }
    (folder / "variant.json").write_text(json.dumps(record, indent=2) + "\n")
    Console().print(f"{args.name}: trained in {seconds:.0f} s, epoch {result.best_epoch}")


def _binary(toxic: np.ndarray, positive: np.ndarray, groups: np.ndarray, thr: float) -> dict:
    """ROC AUC of the score, and the binary metrics of the decisions ``toxic >= thr``
    (serve.calibration's, what export and evaluate report)."""
    from sklearn.metrics import roc_auc_score

    from guardrail_dro.serve.calibration import binary_metrics

    names, codes = np.unique(groups, return_inverse=True)
    op = binary_metrics(toxic >= thr, positive, codes, list(names), threshold=thr)
    return {
        "roc_auc": float(roc_auc_score(positive, toxic)),
        "accuracy": op.accuracy,
        "recall": op.recall,
        "fpr": op.fpr,
        "worst_group_accuracy": op.worst_group_accuracy,
    }


def measure_one(folder: Path) -> dict:
    """Score one variant's guard at its exported threshold (kept in ``measured.json``, so
    a second ``measure`` scores only the variants trained since)."""
    done = folder / "measured.json"
    if done.is_file() and done.stat().st_mtime > (folder / "variant.json").stat().st_mtime:
        return json.loads(done.read_text())
    from guardrail_dro import Guard
    from guardrail_dro.data.background import load_background
    from guardrail_dro.data.bundled import load_bundled

    guard = Guard.load(folder / "guard")
    thr = json.loads((folder / "guard" / "guard.json").read_text())["thresholds"]["toxic"]
    record = json.loads((folder / "variant.json").read_text())

    def scores(texts) -> np.ndarray:
        return np.asarray([r.toxic_score for r in guard.check_many(list(texts))])

    valid = load_bundled("toxic-questions", ("valid",))[0]["valid"]
    safe = np.asarray(valid.schema.safe_mask())
    positive = ~safe[valid.gold_array()]
    groups = np.asarray([it.group or "" for it in valid])
    record["threshold"] = thr
    record["valid_binary"] = _binary(scores(it.text for it in valid), positive, groups, thr)
    record["heldout_blocked"] = {}
    for name in (*HELDOUT, HARMFUL, HARMFUL_REPLIES):
        texts = load_background([f"{name}:heldout"], require_both=False, harmful=None).heldout
        s = scores(texts)
        record["heldout_blocked"][name] = {"blocked": int((s >= thr).sum()), "texts": len(s)}
    record["probes"] = {}
    for name, path in PROBES.items():
        probe = json.loads(path.read_text())
        every, harm = scores(probe["everyday"]), scores(probe["harmful"])
        record["probes"][name] = {
            "everyday_allowed": int((every < thr).sum()),
            "everyday": len(every),
            "harmful_blocked": int((harm >= thr).sum()),
            "harmful": len(harm),
        }
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _summary(r: dict) -> dict[str, float]:
    """The numbers ``RULE`` reads, and the probes', of one measured variant."""
    v, h = r["valid_binary"], r["heldout_blocked"]
    bg = [h[n] for n in BACKGROUND]
    out = {
        "valid_auc": v["roc_auc"],
        "valid_wg_binary_accuracy": v["worst_group_accuracy"],
        "valid_recall": v["recall"],
        "heldout_block_rate": sum(b["blocked"] for b in bg) / sum(b["texts"] for b in bg),
    }
    if HARMFUL in h:
        out["heldout_harmful_block_rate"] = h[HARMFUL]["blocked"] / h[HARMFUL]["texts"]
    if HARMFUL_REPLIES in h:
        r_ = h[HARMFUL_REPLIES]
        out["heldout_harmful_replies_block_rate"] = r_["blocked"] / r_["texts"]
        out["heldout_replies_block_rate"] = (
            h["assistant-replies"]["blocked"] / h["assistant-replies"]["texts"]
        )
    for name, p in r["probes"].items():
        out[f"{name} everyday allowed"] = p["everyday_allowed"]
        out[f"{name} harmful blocked"] = p["harmful_blocked"]
    return out


def choose(rows: dict[str, dict[str, float]], baseline: str) -> str:
    """The variant ``RULE`` picks among ``rows`` (name -> ``_summary``)."""
    base = rows[baseline]
    ok = [
        n
        for n, r in rows.items()
        if r["valid_auc"] >= base["valid_auc"] - 0.01
        and r["valid_wg_binary_accuracy"] >= base["valid_wg_binary_accuracy"] - 0.02
    ]
    best = min(rows[n]["heldout_block_rate"] for n in ok)
    tied = [n for n in ok if rows[n]["heldout_block_rate"] < best + 0.01]
    if baseline in tied:
        return baseline
    return max(tied, key=lambda n: rows[n]["valid_auc"])


def measure(args: argparse.Namespace) -> None:
    """One row per variant under ``OUT``: valid, held-out background, both probes."""
    records = [measure_one(f) for f in sorted(args.out.iterdir()) if (f / "variant.json").is_file()]
    table = Table(
        "variant", "thr", "valid AUC", "valid wg bin. acc.", "valid recall / FPR",
        "held-out bg blocked (convabuse / everyday)", "replies", "harmful (requests / replies)",
        "probe A",
        "probe B",
    )  # fmt: skip
    for r in records:
        v, h = r["valid_binary"], r["heldout_blocked"]
        bg = [h[n] for n in BACKGROUND]
        table.add_row(
            r["name"],
            f"{r['threshold']:.3f}",
            f"{v['roc_auc']:.4f}",
            f"{v['worst_group_accuracy']:.3f}",
            f"{v['recall']:.3f} / {v['fpr']:.3f}",
            f"{sum(b['blocked'] for b in bg) / sum(b['texts'] for b in bg):.3f} "
            + " / ".join(f"{b['blocked']}/{b['texts']}" for b in bg),
            f"{h['assistant-replies']['blocked']}/{h['assistant-replies']['texts']}",
            " / ".join(
                f"{h[n]['blocked']}/{h[n]['texts']}" for n in (HARMFUL, HARMFUL_REPLIES) if n in h
            )
            or "-",
            *(
                f"{p['everyday_allowed']}/{p['everyday']}, {p['harmful_blocked']}/{p['harmful']}"
                for p in r["probes"].values()
            ),
        )
    console = Console(width=200)
    console.print(table)
    rows = {r["name"]: _summary(r) for r in records}
    if "a" in rows:
        first = {n: r for n, r in rows.items() if "-s" not in n}
        console.print(f"seed 0: the rule picks [bold]{choose(first, 'a')}[/]")
    seeds: dict[str, list[dict[str, float]]] = {}
    for name, row in rows.items():
        seeds.setdefault(name.split("-s")[0], []).append(row)
    means = {n: {k: float(np.mean([x[k] for x in rs])) for k in rs[0]} for n, rs in seeds.items()}
    mt = Table("variant", "seeds", *next(iter(means.values())).keys(), title="mean over seeds")
    for n, m in means.items():
        mt.add_row(
            n, str(len(seeds[n])), *(f"{x:.4f}" if x < 1 else f"{x:.2f}" for x in m.values())
        )
    console.print(mt)
    if "a" in means:
        console.print(f"mean over seeds: the rule picks [bold]{choose(means, 'a')}[/]")
        if any("heldout_harmful_block_rate" in m for m in means.values()):
            pick = choose_harmful(means, "a")
            console.print(f"mean over seeds, harmful round: RULE_HARMFUL picks [bold]{pick}[/]")
        if {"r3", "h3"} <= means.keys():
            replies = {
                n: float(np.mean([
                    r["heldout_blocked"]["assistant-replies"]["blocked"]
                    / r["heldout_blocked"]["assistant-replies"]["texts"]
                    for r in records if r["name"].split("-s")[0] == n
                ]))
                for n in ("r3", "h3")
            }  # fmt: skip
            kept = "keeps r3" if keep_replies(means, replies) else "keeps h3"
            console.print(f"replies round: RULE_REPLIES {kept} (replies blocked {replies})")
        if {"o3", "h3"} <= means.keys() and "heldout_replies_block_rate" in means["h3"]:
            kept = "keeps o3" if keep_output(means) else "keeps h3"
            console.print(f"output round: RULE_OUTPUT {kept}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "rule": RULE,
                    "rule_harmful": RULE_HARMFUL,
                    "rule_replies": RULE_REPLIES,
                    "rule_output": RULE_OUTPUT,
                    "variants": records,
                    "mean_over_seeds": means,
                },
                indent=2,
            )
            + "\n"
        )
        Console().print(f"written to {args.json}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="Train and export one variant.")
    t.add_argument("name")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--background", action="append", help="Background sets (default: quickstart's).")
    t.add_argument("--weight", type=float, default=1.0)
    t.add_argument("--fraction", type=float, default=0.5)
    t.add_argument("--head-hidden", type=int, default=0)
    t.add_argument("--harmful", action="append", help="Harmful background sets (default none).")
    t.add_argument("--harmful-weight", type=float, default=1.0)
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--average-seeds",
        type=int,
        default=1,
        help="ship the average of this many seeds' heads (train --average-seeds): seeds "
        "K*seed .. K*seed+K-1",
    )
    t.add_argument("--note", default="")
    m = sub.add_parser("measure", help="Measure every variant under --out.")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--json", type=Path)
    args = ap.parse_args()
    (train if args.cmd == "train" else measure)(args)


if __name__ == "__main__":
    main()
