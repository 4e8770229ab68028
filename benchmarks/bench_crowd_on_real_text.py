"""A sparse crowd on real text: does ``ours`` hold where the text is hard?

Issue 11 asks the method to hold on sparse crowds (hundreds of workers, a few per item)
on real datasets this project does not see. The synthetic sparse crowd
(``make_sparse_crowd``) is template text a frozen encoder separates almost perfectly,
so it cannot show what happens when the classifier itself is weak, as on every real
dataset measured so far. This bench keeps toxic-questions' real texts, splits, gold and
topic groups and replaces its six annotators by a simulated crowd of ``--workers``
workers, ``--per-item`` per item, so that the text is as hard as it really is and only
the crowd is simulated. Train has no gold: there the crowd is drawn around the six real
annotators' majority (GPT-4 Turbo, ``label_5``, breaking ties); valid and test around
their gold, and test is scored against gold as everywhere else.

Crowd regimes (each worker's overall accuracy uniform in ``--accuracy``):

- ``lenient``: on three toxic classes (drawn per crowd) 65 % of the workers are lenient
  and call a toxic question of that class safe 85 % of the time (10 % of the workers on
  the other classes); other errors are a uniformly drawn class. Reliability differs by
  class, which the crowd's majority cannot see.
- ``hard-items``: a worker errs more on the items the six real annotators disagreed on
  (error rate times 1 + 2 x their disagreement), and its wrong label is one of the real
  annotators' wrong labels on that item where there is one: errors follow the text's
  real ambiguity, not a coin.
- ``spammers``: 30 % of the workers are spammers, half of them answering a uniformly
  drawn class whatever the text and half always answering safe (the click-through
  worker of a moderation queue); the others err to a uniformly drawn class.
- ``long-tail``: who labels an item follows a power law, as on crowdsourcing platforms:
  worker w is drawn with weight 1 / rank(w) (ranks shuffled, independent of accuracy),
  so a few workers label thousands of items and most a handful; each worker's errors
  lean to a wrong class of its own (half of them), a confusion the busy workers reveal
  and the rare ones cannot.

``ours`` against ``mv``, ``soft``, ``ds`` and ``dro-mv`` (GroupDRO on majority vote:
whether a lead on the worst group is more than a worst-group objective), and ``truth``,
majority vote's trainer on train labelled by the truth the crowd was drawn around: what
perfect crowd labels would give with the mean loss. Frozen all-MiniLM-L6-v2 (embeddings
cached once), everything chosen on valid; test worst-group accuracy and accuracy, per
crowd seed and the mean::

    python benchmarks/bench_crowd_on_real_text.py --crowds 6 \\
        --json benchmarks/results/crowd_on_real_text.json

Prints a table and writes every run to the JSON after each fit; runs already in the
JSON (same workers, per-item count and accuracy range) are kept, so a stopped bench
resumes and a new regime or method adds only its own fits. Needs the bundled
toxic-questions only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.readers import read_splits

REGIMES = ("lenient", "hard-items", "spammers", "long-tail")
RIVALS = ("mv", "soft", "ds", "dro-mv")
# ``truth``: majority vote's trainer on train labelled by the truth the crowd was drawn
# around (one label per item, no noise): what perfect crowd labels would give.
METHODS = ("ours", *RIVALS, "truth")
TIEBREAK = "label_5"  # GPT-4 Turbo, the most accurate annotator on valid
SPAMMERS = 0.3  # share of spamming workers in the ``spammers`` regime


def real_truth(item: Item) -> str:
    """Gold where known, else the real annotators' majority (``TIEBREAK`` breaks ties)."""
    if item.gold is not None:
        return item.gold
    votes = Counter(a.label for a in item.annotations)
    top = max(votes.values())
    tied = [lab for lab, n in votes.items() if n == top]
    if len(tied) == 1:
        return tied[0]
    tb = item.label_of(TIEBREAK)
    return tb if tb in tied else sorted(tied)[0]


def simulate(
    splits: dict[str, AnnotatedDataset],
    regime: str,
    seed: int,
    workers: int,
    per_item: int,
    accuracy: tuple[float, float],
) -> dict[str, AnnotatedDataset]:
    """The same items with a simulated crowd's labels in place of the real ones."""
    schema = splits["train"].schema
    classes = list(schema.classes)
    safe = schema.safe[0]
    toxic = [c for c in classes if c != safe]
    rng = np.random.default_rng([seed, REGIMES.index(regime)])
    acc = rng.uniform(*accuracy, size=workers)
    harsh = set(rng.choice(toxic, size=3, replace=False).tolist())
    lenient = {c: rng.random(workers) < (0.65 if c in harsh else 0.1) for c in toxic}
    # Drawn apart so that the first two regimes' crowds stay as they were published.
    other = np.random.default_rng([seed, REGIMES.index(regime), 1])
    # spammers: 1 answers a random class, 2 always safe; 0 is an honest worker
    spam = np.where(other.random(workers) < SPAMMERS, other.integers(1, 3, size=workers), 0)
    weights = 1.0 / other.permutation(np.arange(1, workers + 1))
    activity = weights / weights.sum() if regime == "long-tail" else None
    pet = other.integers(len(classes), size=workers)  # each worker's favourite wrong class
    out = {}
    for name, ds in splits.items():
        items = []
        for it in ds.items:
            truth = real_truth(it)
            real = [a.label for a in it.annotations]
            disagree = sum(lab != truth for lab in real) / max(len(real), 1)
            wrong_real = [lab for lab in real if lab != truth]
            anns = []
            for w in rng.choice(workers, size=per_item, replace=False, p=activity):
                if regime == "lenient":
                    if truth != safe and lenient[truth][w] and rng.random() < 0.85:
                        label = safe
                    elif rng.random() < acc[w]:
                        label = truth
                    else:
                        label = classes[rng.integers(len(classes))]
                elif regime == "hard-items":
                    err = min(0.95, (1 - acc[w]) * (1 + 2 * disagree))
                    if rng.random() >= err:
                        label = truth
                    elif wrong_real:
                        label = wrong_real[rng.integers(len(wrong_real))]
                    else:
                        label = classes[rng.integers(len(classes))]
                elif regime == "spammers" and spam[w]:
                    label = safe if spam[w] == 2 else classes[rng.integers(len(classes))]
                elif rng.random() < acc[w]:  # an honest worker of spammers / long-tail
                    label = truth
                elif regime == "long-tail" and classes[pet[w]] != truth and rng.random() < 0.5:
                    label = classes[pet[w]]
                else:
                    label = classes[rng.integers(len(classes))]
                anns.append(Annotation(annotator=f"worker_{w:03d}", label=label))
            items.append(it.model_copy(update={"annotations": tuple(anns)}))
        out[name] = AnnotatedDataset(items, schema, name=name)
    return out


def truth_only(ds: AnnotatedDataset) -> AnnotatedDataset:
    """The split with one label per item, the truth its crowds are drawn around."""
    items = [
        it.model_copy(
            update={"annotations": (Annotation(annotator="truth", label=real_truth(it)),)}
        )
        for it in ds.items
    ]
    return AnnotatedDataset(items, ds.schema, name=ds.name)


def run(
    regimes: list[str],
    crowds: int,
    workers: int,
    per_item: int,
    accuracy: tuple[float, float],
    cache: Path | None,
    done: list[dict] | None = None,
    save: Callable[[list[dict]], None] | None = None,
    average_seeds: int = 1,
) -> list[dict]:
    """Fit every method on every crowd; runs in ``done`` (same regime, crowd and
    method) are kept, not refitted, and ``save`` gets every row after each fit, so a
    stopped bench resumes where it stopped. ``average_seeds`` > 1: every fit is the
    average of that many seeds (``train --average-seeds``)."""
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    real, _ = read_splits(
        {s: f"toxic-questions:{s}" for s in ("train", "valid", "test")},
    )
    rows = list(done or [])
    have = {(r["regime"], r["crowd"], r["method"]) for r in rows}
    for regime in regimes:
        for seed in range(crowds):
            if all((regime, seed, m) in have for m in METHODS):
                continue
            data = simulate(real, regime, seed, workers, per_item, accuracy)
            for method in METHODS:
                if (regime, seed, method) in have:
                    continue
                # Neither truth's training labels nor its selection (valid gold) depend
                # on the crowd: a regime's row is the first regime's fit for that seed.
                truths = (r for r in rows if r["method"] == "truth" and r["crowd"] == seed)
                same = next(truths, None) if method == "truth" else None
                if same is not None:
                    rows.append({**same, "regime": regime, "same_as": same["regime"]})
                    have.add((regime, seed, method))
                    if save:
                        save(rows)
                    continue
                train = data["train"] if method != "truth" else truth_only(real["train"])
                cfg = TrainConfig(
                    method=method if method != "truth" else "mv",
                    seed=seed,
                    cache_dir=cache,
                    progress=False,
                    average_seeds=average_seeds,
                )
                t0 = time.perf_counter()
                res = BiLevelTrainer(cfg).fit(train, data["valid"])
                m = res.evaluate(data["test"])
                rows.append({
                    "regime": regime,
                    "crowd": seed,
                    "method": method,
                    "test_worst_group_accuracy": m.worst_group_accuracy,
                    "test_accuracy": m.accuracy,
                    "seconds": round(time.perf_counter() - t0, 1),
                })  # fmt: skip
                have.add((regime, seed, method))
                if save:
                    save(rows)
                Console().print(
                    f"{regime} crowd {seed} {method}: worst {m.worst_group_accuracy:.3f}"
                    f" acc {m.accuracy:.3f} ({rows[-1]['seconds']} s)",
                    highlight=False,
                )
    return rows


def table(rows: list[dict]) -> Table:
    t = Table(
        "regime",
        *METHODS,
        "ours - best rival",
        "ours ahead on",
        title="test worst-group accuracy (accuracy), mean ± std over crowds",
    )
    for regime in dict.fromkeys(r["regime"] for r in rows):
        mine = [r for r in rows if r["regime"] == regime]
        means, cells = {}, []
        for method in METHODS:
            w = [r["test_worst_group_accuracy"] for r in mine if r["method"] == method]
            a = [r["test_accuracy"] for r in mine if r["method"] == method]
            means[method] = float(np.mean(w))
            cells.append(f"{np.mean(w):.3f} ± {np.std(w):.3f} ({np.mean(a):.3f})")
        gap = means["ours"] - max(means[k] for k in RIVALS)
        worst = {(r["crowd"], r["method"]): r["test_worst_group_accuracy"] for r in mine}
        crowds = sorted({c for c, _ in worst})
        best = {c: max(worst[c, k] for k in RIVALS) for c in crowds}
        ahead = sum(worst[c, "ours"] > best[c] for c in crowds)
        ties = sum(worst[c, "ours"] == best[c] for c in crowds)
        tied = f" ({ties} tied)" if ties else ""
        t.add_row(regime, *cells, f"{gap:+.3f}", f"{ahead} of {len(crowds)} crowds{tied}")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regimes", default=",".join(REGIMES), help="comma-separated")
    ap.add_argument("--crowds", type=int, default=3, help="crowd seeds per regime")
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--per-item", type=int, default=3)
    ap.add_argument("--accuracy", type=float, nargs=2, default=(0.6, 0.95), metavar=("LO", "HI"))
    ap.add_argument("--cache-dir", type=Path)
    ap.add_argument(
        "--average-seeds",
        type=int,
        default=1,
        help="every fit averages this many seeds (frozen mode; train --average-seeds)",
    )
    ap.add_argument(
        "--json",
        type=Path,
        help="write every run here after each fit; runs already in it are kept, not refitted",
    )
    args = ap.parse_args()
    regimes = list(dict.fromkeys(r for r in args.regimes.split(",") if r))
    unknown = set(regimes) - set(REGIMES)
    if unknown:
        ap.error(f"unknown regimes {sorted(unknown)}; choose from {list(REGIMES)}")
    accuracy = (args.accuracy[0], args.accuracy[1])
    # What the crowds and fits depend on; runs stored under other values are not reused.
    options = {
        "workers": args.workers,
        "per_item": args.per_item,
        "accuracy": list(accuracy),
        "average_seeds": args.average_seeds,
    }
    done: list[dict] = []
    if args.json and args.json.exists():
        stored: dict[str, Any] = json.loads(args.json.read_text())
        had = {"average_seeds": 1, **stored.get("options", {})}  # stored before it existed
        if {k: had.get(k) for k in options} != options:
            ap.error(f"{args.json} holds runs made with other options; pass another --json")
        done = stored["runs"]
        Console().print(f"{len(done)} runs kept from {args.json}", highlight=False)

    def save(rows: list[dict]) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            payload = {"options": options, "runs": rows}
            tmp = args.json.with_suffix(".tmp")  # a kill mid-write keeps the old file
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
            os.replace(tmp, args.json)

    rows = run(
        regimes, args.crowds, args.workers, args.per_item, accuracy, args.cache_dir, done, save,
        args.average_seeds,
    )  # fmt: skip
    shown = [r for r in rows if r["regime"] in regimes and r["crowd"] < args.crowds]
    Console(width=200).print(table(shown))  # wide enough unwrapped, as under nohup


if __name__ == "__main__":
    main()
