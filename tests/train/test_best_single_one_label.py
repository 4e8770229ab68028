"""best-single and an annotator that gave one label only: no candidate, and said so.

Its classifier can only learn to predict that class; on a crowd of 12 or fewer
``best-single`` trained it anyway (a wasted run) and its ``single:<a>`` row read like a
real candidate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.train.baselines import one_label_annotators, single_candidates
from guardrail_dro.train.trainer import TrainConfig

LAZY = "human_1"


def _lazy(ds: AnnotatedDataset, who: str = LAZY) -> AnnotatedDataset:
    """``ds`` with every label of ``who`` replaced by "safe"."""
    items = [
        it.model_copy(
            update={
                "annotations": tuple(
                    a.model_copy(update={"label": "safe"}) if a.annotator == who else a
                    for a in it.annotations
                )
            }
        )
        for it in ds.items
    ]
    return AnnotatedDataset(items, ds.schema, name=ds.name)


def test_the_shortlist_skips_one_label_annotators_and_names_them() -> None:
    labels = np.array([[0, 1, 2, -1], [0, 0, 1, -1], [0, 2, -1, 2], [-1, 1, 0, 2]])
    assert one_label_annotators(labels) == [0, 3]
    cols, note = single_candidates(labels, 3, names=["a", "b", "c", "d"])
    assert cols == [1, 2]
    assert note is not None and note.startswith("skipped 2 annotator(s) ('a', 'd') that gave")
    # The only annotator, or all of them: trained all the same, and the note says so.
    cols, note = single_candidates(labels[:, :1], 3, names=["a"])
    assert cols == [0] and note is not None
    assert note.startswith("trained anyway: the only annotator, 'a', gave every training item")
    cols, note = single_candidates(labels[:, [0, 3]], 3, names=["a", "d"])
    assert cols == [0, 1] and note is not None and "every one of the 2 annotators" in note
    # A large crowd: never shortlisted, counted in the note.
    rng = np.random.default_rng(0)
    big = rng.integers(0, 3, size=(100, 20))
    big[:, 0] = 1
    cols, note = single_candidates(big, 3, limit=12, min_items=20)
    assert 0 not in cols and len(cols) == 12
    assert note is not None and "1 that gave every item the same label skipped" in note


def test_the_trainer_s_best_single_leaves_the_one_label_annotator_out(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    from guardrail_dro.train.trainer import BiLevelTrainer

    train = _lazy(synthetic["train"].subset(range(60), name="train"))
    cfg = TrainConfig(
        method="best-single",
        backbone=str(tiny_backbone),
        cache_dir=tmp_path / "c",
        epochs=1,
        progress=False,
    )
    res = BiLevelTrainer(cfg).fit(train, synthetic["valid"].subset(range(60)))
    (skipped,) = [n for n in res.notes if n.startswith("best-single skipped")]
    assert skipped.startswith(f"best-single skipped 1 annotator(s) ('{LAZY}') that gave"), skipped
    (chose,) = [n for n in res.notes if "chose" in n]
    assert f"{LAZY} " not in chose.split("(", 1)[1], chose  # not among the scores


def test_the_bench_trains_no_run_for_it_and_says_which(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    from guardrail_dro.train.bench import bench_methods, default_methods, run_bench

    train = _lazy(synthetic["train"].subset(range(60), name="train"))
    valid = synthetic["valid"].subset(range(60))
    assert f"single:{LAZY}" not in default_methods(train)
    assert "single:human_2" in default_methods(train)
    _, notes = bench_methods(None, train, valid)
    assert len(notes) == 1 and notes[0].startswith(f"annotator(s) '{LAZY}' gave every"), notes
    assert "left out of the default methods and best-single does not consider them" in notes[0]
    trained: list[str] = []
    report = run_bench(
        train, valid, synthetic["test"].subset(range(60)), methods=["best-single"], seeds=1,
        config=TrainConfig(backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1,
                           progress=False),
        score_annotators=False, on_run=lambda m, s, _: trained.append(m),
    )  # fmt: skip
    assert sorted(trained) == sorted(f"single:{a}" for a in train.annotators if a != LAZY)
    lines = report.note_lines()
    assert any(
        line.startswith(f"bench: annotator(s) '{LAZY}'") and "best-single does not" in line
        for line in lines
    ), lines
    assert any(line.startswith("best-single: best-single skipped 1 annotator(s)") for line in lines)
