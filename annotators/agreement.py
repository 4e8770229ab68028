"""Quality before training: how each annotator agrees with the others and with gold.

Per annotator (human, vendor or LLM): Cohen's kappa and raw agreement with every other
annotator and with the gold labels (on the items both labelled), the per-class
confusion matrix and recall against gold, the refusal and invalid rates when a
failures file of an ``annotate`` run says them (otherwise they are not known and shown
as such), and the mean confidence of its right and of its wrong labels when it gave
confidences. Right and wrong are judged against gold where an item has it, else
against the strict majority of the *other* annotators (so an LLM is not judged by its
own vote); the report says which.

Every metric is scikit-learn's (``cohen_kappa_score``, ``accuracy_score``,
``confusion_matrix``, ``recall_score``): no hand-written copy to get wrong.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import DataError, require

__all__ = ["GOLD", "AgreementReport", "AnnotatorQuality", "agreement_report", "read_failures"]

GOLD = "gold"
"""The name the gold labels take in the pairwise tables."""


@dataclass
class AnnotatorQuality:
    """One annotator's numbers (None: not known / nothing to compute it on)."""

    name: str
    kind: str
    labelled: int
    kappa_gold: float | None = None
    accuracy_gold: float | None = None
    n_gold: int = 0
    recall_per_class: dict[str, float | None] = field(default_factory=dict)
    confusion: list[list[int]] | None = None
    """Rows: gold class, columns: this annotator's label (schema order)."""
    refusal_rate: float | None = None
    invalid_rate: float | None = None
    confidence_right: float | None = None
    confidence_wrong: float | None = None
    reference: str = GOLD
    """What right / wrong was judged against: "gold" or "majority of the others"."""


@dataclass
class AgreementReport:
    """The whole report: per-annotator quality and the pairwise matrices.

    ``kappa[a][b]`` / ``agreement[a][b]`` / ``overlap[a][b]`` over the annotators and
    (when any item has one) ``GOLD``; None where two never labelled the same item, and
    a kappa None where it is undefined (both gave one same label throughout: an annotator
    whose labels never vary, with itself too).
    """

    classes: list[str]
    names: list[str]
    annotators: list[AnnotatorQuality]
    kappa: dict[str, dict[str, float | None]]
    agreement: dict[str, dict[str, float | None]]
    overlap: dict[str, dict[str, int]]
    items: int

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "classes": self.classes, "names": self.names,
                "annotators": [a.__dict__ for a in self.annotators], "kappa": self.kappa,
                "agreement": self.agreement, "overlap": self.overlap}

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path


def read_failures(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an ``annotate`` failures file (item_id, annotator, outcome...)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: failures file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the failures file ({exc.strerror})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not a JSON line ({exc})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: expected a JSON object (annotator, outcome...), "
                                f"got {type(row).__name__}")
            rows.append(row)
    return rows


def _display_names(ids: list[str], names: Mapping[str, str] | None, gold: bool,
                   dataset: str) -> dict[str, str]:
    """Annotator id -> the name shown; every table and matrix is keyed by it, so a name
    given for no annotator, two annotators shown alike, or one shown as ``GOLD`` beside
    the gold labels is refused (one annotator's numbers would silently replace another's).
    """
    names = dict(names or {})
    unknown = [a for a in names if a not in ids]
    if unknown:
        known = ", ".join(ids[:20]) + (f" ... ({len(ids)} in all)" if len(ids) > 20 else "")
        raise DataError(f"--name {', '.join(unknown)}: no such annotator in {dataset} "
                        f"(its annotators: {known})")
    show = {a: names.get(a, a) for a in ids}
    seen: dict[str, str] = {GOLD: "the gold labels"} if gold else {}
    for a, shown in show.items():
        if shown in seen:
            raise DataError(f"annotator {a!r} would be shown as {shown!r}, as is {seen[shown]}: "
                            "give each a different name (--name ANNOTATOR=DISPLAY NAME)")
        seen[shown] = f"annotator {a!r}"
    return show


def _pair(labels: dict[str, dict[str, str]], a: str, b: str) -> tuple[list[str], list[str]]:
    common = labels[a].keys() & labels[b].keys()
    order = sorted(common)
    return [labels[a][i] for i in order], [labels[b][i] for i in order]


def _kappa_and_agreement(cm: np.ndarray) -> tuple[float | None, float]:
    """Cohen's kappa (None where it is undefined: one class only) and raw agreement of
    a pair's confusion counts: what ``cohen_kappa_score`` / ``accuracy_score`` give
    (a test checks it against them), from one ``bincount`` per pair. sklearn's calls
    cost ~3 ms a pair: 2 min 39 s for a crowd of 400 annotators."""
    n = cm.sum()
    po = np.trace(cm) / n
    pe = float(cm.sum(axis=0) @ cm.sum(axis=1)) / n**2
    return (None if pe >= 1.0 else float((po - pe) / (1.0 - pe))), float(po)


def _majority(votes: Iterable[str]) -> str | None:
    top = Counter(votes).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def agreement_report(dataset: AnnotatedDataset,
                     failures: Iterable[Mapping[str, Any]] | None = None,
                     names: Mapping[str, str] | None = None) -> AgreementReport:
    """Score every annotator of ``dataset`` (see the module docstring).

    Args:
        dataset: items with annotations (and gold where known).
        failures: rows of an ``annotate`` failures file: their refused / invalid
            outcomes give the rates (without them the rates are None: not known).
        names: annotator id -> display name (e.g. ``label_4`` -> ``GPT-4``).

    Raises:
        DataError: the dataset has fewer than one annotator; ``names`` names an
            annotator the dataset lacks, or shows two alike (or one as ``GOLD``).
    """
    metrics = require("sklearn.metrics", "annotate")
    confusion_matrix, recall_score = metrics.confusion_matrix, metrics.recall_score

    ids = list(dataset.annotators)
    if not ids:
        raise DataError(f"{dataset.name}: no annotations to compare")
    classes = list(dataset.schema.classes)
    labels: dict[str, dict[str, str]] = {a: {} for a in ids}
    confidences: dict[str, dict[str, float]] = {a: {} for a in ids}
    gold: dict[str, str] = {}
    for it in dataset.items:
        if it.gold is not None:
            gold[it.item_id] = it.gold
        for ann in it.annotations:
            labels[ann.annotator][it.item_id] = ann.label
            if ann.confidence is not None:
                confidences[ann.annotator][it.item_id] = ann.confidence
    fails: dict[str, Counter[str]] = {}
    for row in failures or ():
        fails.setdefault(str(row.get("annotator")), Counter())[str(row.get("outcome"))] += 1
    # refused or invalid on every item: no label in the data, but the most telling row
    unlabelled = [a for a in fails if a not in labels]
    show = _display_names(ids + unlabelled, names, bool(gold), dataset.name)
    keys = ids + ([GOLD] if gold else [])
    if gold:  # an annotator may be called "gold" where there is no gold
        labels[GOLD] = gold
    shown = [show.get(k, k) for k in keys]

    kappa: dict[str, dict[str, float | None]] = {}
    agree: dict[str, dict[str, float | None]] = {}
    overlap: dict[str, dict[str, int]] = {}
    index = {c: i for i, c in enumerate(classes)}
    codes = {a: {i: index[y] for i, y in labels[a].items()} for a in keys}
    k2 = len(classes) ** 2
    for a in keys:
        kappa[show.get(a, a)], agree[show.get(a, a)], overlap[show.get(a, a)] = {}, {}, {}
        for b in keys:
            common = codes[a].keys() & codes[b].keys()
            ka, kb = show.get(a, a), show.get(b, b)
            overlap[ka][kb] = len(common)
            if not common:
                kappa[ka][kb] = agree[ka][kb] = None
                continue
            pairs = [codes[a][i] * len(classes) + codes[b][i] for i in common]
            cm = np.bincount(pairs, minlength=k2).reshape(len(classes), len(classes))
            # with itself too: 1.0, or None (undefined) where its labels never vary
            kappa[ka][kb], agree[ka][kb] = _kappa_and_agreement(cm)

    kinds = dataset.annotator_kinds
    out = []
    for a in ids:
        q = AnnotatorQuality(show[a], kinds.get(a, "human"), len(labels[a]))
        if gold:
            yg, ya = _pair(labels, GOLD, a)
            q.n_gold = len(ya)
            if ya:
                q.accuracy_gold = agree[GOLD][show[a]]
                q.kappa_gold = kappa[GOLD][show[a]]
                q.confusion = confusion_matrix(yg, ya, labels=classes).tolist()
                rec = recall_score(yg, ya, labels=classes, average=None, zero_division=np.nan)
                present = set(yg)
                q.recall_per_class = {c: (float(r) if c in present else None)
                                      for c, r in zip(classes, rec, strict=True)}
        f = fails.get(a)
        if failures is not None and (f or q.kind == "llm"):  # a person is never asked:
            asked = q.labelled + (sum(f.values()) if f else 0)  # no rate, not "0% refused"
            q.refusal_rate = (f["refused"] if f else 0) / asked if asked else None
            q.invalid_rate = (f["invalid"] if f else 0) / asked if asked else None
        right: list[float] = []
        wrong: list[float] = []
        for item_id, conf in confidences[a].items():
            ref = gold.get(item_id)
            if ref is None:
                q.reference = "majority of the others" if not gold else "gold, else majority"
                ref = _majority(labels[o][item_id] for o in ids
                                if o != a and item_id in labels[o])
            if ref is not None:
                (right if labels[a][item_id] == ref else wrong).append(conf)
        q.confidence_right = float(np.mean(right)) if right else None
        q.confidence_wrong = float(np.mean(wrong)) if wrong else None
        out.append(q)
    for a in unlabelled:  # no labels: no kappa, only its rates (refused / invalid of all)
        asked = sum(fails[a].values())
        out.append(AnnotatorQuality(show[a], "llm", 0, refusal_rate=fails[a]["refused"] / asked,
                                    invalid_rate=fails[a]["invalid"] / asked))
    return AgreementReport(classes, shown, out, kappa, agree, overlap, len(dataset))
