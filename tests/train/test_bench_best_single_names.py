"""The bench's best-single note names the annotators it skipped, as the trainer's does.

``RunStore._best_of`` derives best-single from the ``single:<a>`` runs and built its
note from ``single_candidates`` without the names: "skipped 1 annotator(s) that gave
every training item ..." said how many, not who, where ``train``'s note for the same
data said ``('human_1')``. The stored runs here stand in for trained ones (the bench
reuses them with ``resume``), so nothing is trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.baselines import single_candidates
from guardrail_dro.train.bench_runs import FinishedRun, RunStore, method_key, run_file, save_run
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.metrics import Metrics

SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))
LAZY = "lazy one"


def _train() -> AnnotatedDataset:
    """30 items labelled by two annotators who vary and one who says "safe" to all."""
    items = [
        Item(
            item_id=f"q{i}",
            text=f"text {i}",
            gold="toxic" if i % 2 else "safe",
            annotations=(
                Annotation(annotator="alice", label="toxic" if i % 2 else "safe"),
                Annotation(annotator=LAZY, label="safe"),
                Annotation(annotator="bob", label="toxic" if i % 3 else "safe"),
            ),
        )
        for i in range(30)
    ]
    return AnnotatedDataset(items, SCHEMA, name="train")


def test_the_bench_best_single_note_names_the_one_label_annotators(tmp_path: Path) -> None:
    train = _train()
    key = "a shared key"
    runs = tmp_path / "runs"
    for who, acc in (("alice", 0.9), ("bob", 0.7)):
        m = Metrics(n=30, accuracy=acc, macro_f1=acc)
        method = f"single:{who}"
        run = FinishedRun(
            key=method_key(key, method), method=method, seed=0, seconds=1.0,
            test=m, valid=m, unseen=m,
        )  # fmt: skip
        save_run(runs / run_file(method, 0), run)
    store = RunStore(
        TrainConfig(), key, (train, train, train), np.zeros(30, dtype=bool), runs, resume=True
    )
    notes = store.get("best-single", 0).notes
    skipped = [n for n in notes if "skipped" in n]
    assert skipped == [f"best-single skipped 1 annotator(s) ('{LAZY}') that gave every "
                       "training item they labelled the same class: a classifier taught "
                       "one class can only predict it"], notes  # fmt: skip
    # the trainer's note (best_single.best_of_annotators) for the same data, word for word
    _, trainer_note = single_candidates(
        train.label_matrix(), train.schema.num_classes, names=train.annotators
    )
    assert skipped == [f"best-single {trainer_note}"]
    assert any(n.startswith("best-single chose 'alice'") for n in notes), notes
