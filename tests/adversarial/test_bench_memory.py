"""Issue 12, item 15: ``bench`` on a large crowd. ``best-single`` trained one classifier
per annotator and kept every run alive (each holds its features and encoder): memory grew
with the crowd until the process was killed. Regression tests on a synthetic crowd of
1,000 sparse annotators (``make_synthetic(crowd_size=...)``)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest

from guardrail_dro.data.synthetic import make_synthetic
from guardrail_dro.train.baselines import SINGLE_CANDIDATES, SINGLE_MIN_ITEMS, single_candidates
from guardrail_dro.train.bench import run_bench
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig


@pytest.fixture(scope="module")
def crowd():
    # 1,000 crowd workers, 30 per item: ~24 training items each, so most reach the
    # minimum and the proxy has to rank them; plus llm_a/b/c and careless.
    return make_synthetic(n_train=800, n_valid=150, n_test=120, crowd_size=1000, crowd_per_item=30)


def test_bench_keeps_one_single_run_alive_on_a_crowd_of_1000(
    crowd, tiny_backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound: the number of single-annotator runs alive at once (each holds its own
    encoder and features), whatever the crowd size; and the runs trained are capped."""
    real_fit = BiLevelTrainer.fit
    refs: list[weakref.ref] = []
    trained: list[str] = []
    most_alive = 0

    def counting_fit(self: BiLevelTrainer, train, valid):
        nonlocal most_alive
        if self.config.method.startswith("single:"):
            gc.collect()
            alive = sum(r() is not None for r in refs)
            most_alive = max(most_alive, alive)
            # Fail at once (not after 1,004 runs) when earlier runs pile up.
            assert alive <= 1, f"{alive} single-annotator runs alive at once"
            trained.append(self.config.method)
        result = real_fit(self, train, valid)
        if self.config.method.startswith("single:"):
            refs.append(weakref.ref(result))
        return result

    monkeypatch.setattr(BiLevelTrainer, "fit", counting_fit)
    cfg = TrainConfig(
        backbone=str(tiny_backbone), epochs=1, progress=False, cache_dir=tmp_path / "cache"
    )
    report = run_bench(
        crowd["train"],
        crowd["valid"],
        crowd["test"],
        methods=["best-single"],
        seeds=1,
        config=cfg,
        score_annotators=False,
    )
    assert len(crowd["train"].annotators) == 1004
    assert 1 <= len(trained) <= SINGLE_CANDIDATES and most_alive <= 1
    notes = report.results["best-single"].notes
    skipped = [n for n in notes if "of 1004 annotators" in n]
    assert skipped and f"fewer than {SINGLE_MIN_ITEMS} training items skipped" in skipped[0], notes
    assert any("chose" in n for n in notes), notes
    assert any("of 1004 annotators" in line for line in report.note_lines())


def test_candidates_are_capped_and_ranked_by_agreement() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, size=200)
    labels = np.full((200, 40), -1)
    for a in range(40):
        rows = rng.choice(200, size=5 if a < 10 else 60, replace=False)  # 10 too sparse
        noise = a >= 30  # 10 annotators who label at random
        labels[rows, a] = rng.integers(0, 3, size=len(rows)) if noise else gold[rows]
    cols, note = single_candidates(labels, 3, limit=12, min_items=20)
    assert len(cols) == 12 and all(10 <= a < 30 for a in cols)  # careful ones only
    assert note is not None and "12 of 40" in note and "10 with fewer than 20" in note
    assert "18 more ranked below" in note
    few, none = single_candidates(labels[:, :5], 3, limit=12)
    assert few == [0, 1, 2, 3, 4] and none is None  # a small crowd: everyone, as before


def test_candidate_ranking_does_not_depend_on_the_order_of_the_classes() -> None:
    """A tie in the others' majority credits its share: renaming the classes (the
    schema's order) must not change who is shortlisted. With ties broken toward the
    lowest class index, three of the annotators who always say class 0 ranked first."""
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, size=300)
    labels = np.full((300, 30), -1)
    for i in range(300):  # 3 labels an item: the other two often disagree, a 1-1 tie
        for a in rng.choice(30, size=3, replace=False):
            biased = a < 6  # these say 0 whatever the item
            labels[i, a] = 0 if biased else (gold[i] if rng.random() < 0.6 else rng.integers(3))
    perm = np.array([2, 0, 1])  # class c is called perm[c]
    renamed = np.where(labels >= 0, perm[np.maximum(labels, 0)], -1)
    cols, _ = single_candidates(labels, 3, limit=12, min_items=5)
    cols_renamed, _ = single_candidates(renamed, 3, limit=12, min_items=5)
    assert cols == cols_renamed
