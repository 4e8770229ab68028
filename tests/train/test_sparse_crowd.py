"""The method on a sparse crowd: 200 workers, 3 per item, reliabilities that differ by
topic (data.synthetic.make_sparse_crowd), frozen MiniLM.

Issue 11: on a real 200-worker crowd the estimator's free weight per annotator, fit on
a handful of valid items each, was noise and ours trailed majority vote. This is the
acceptance test of the fix (shared label terms, a Dawid-Skene prior, shrinkage), means
over two crowds on the same items (one embedding pass). Measured when it was written,
over three crowds (loaded 2-core machine): ours 0.977, ds 0.932, soft 0.618, mv 0.583;
the method before the fix scored 0.638 here, so this test failed on it. Two crowds
since 2026-12-02 (CI time), measured then (idle): ours 0.971, ds 0.927, soft 0.602, mv 0.573;
mv 0.583 since its ties share their mass (2026-12-04).
"""

from __future__ import annotations

import pytest

from guardrail_dro.data.synthetic import SHIFTED_GROUP, make_sparse_crowd
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

pytestmark = pytest.mark.slow  # the real MiniLM: eight trainings on 2,000 texts

METHODS = ("ours", "mv", "soft", "ds")
CROWDS = (0, 1)
SIZES = {"n_train": 1200, "n_valid": 300, "n_test": 500}


@pytest.fixture(scope="module")
def crowd():
    return make_sparse_crowd(**SIZES, seed=0)


def test_the_sparse_crowd_is_what_it_promises(crowd) -> None:
    train = crowd["train"]
    assert len(train.annotators) >= 200
    assert {len(it.annotations) for it in train} == {3}
    # Reliability differs by topic: on the shifted topic toxic questions get far more
    # "safe" votes than elsewhere.
    def safe_share(topic_is_shifted: bool) -> float:
        votes = [
            a.label == "safe"
            for it in train
            if it.gold != "safe" and (it.group == SHIFTED_GROUP) == topic_is_shifted
            for a in it.annotations
        ]
        return sum(votes) / len(votes)

    assert safe_share(True) > safe_share(False) + 0.3
    with pytest.raises(ValueError, match="unknown topics"):
        make_sparse_crowd(lenient_share={"cooking": 0.5})


@pytest.fixture(scope="module")
def worst(tmp_path_factory) -> dict[str, float]:
    """Mean test worst-group accuracy per method over ``CROWDS`` (10 epochs each)."""
    cache = tmp_path_factory.mktemp("crowd-cache")
    out = dict.fromkeys(METHODS, 0.0)
    for crowd_seed in CROWDS:
        data = make_sparse_crowd(**SIZES, seed=0, crowd_seed=crowd_seed)
        for method in METHODS:
            cfg = TrainConfig(method=method, cache_dir=cache, progress=False, epochs=10)
            res = BiLevelTrainer(cfg).fit(data["train"], data["valid"])
            w = res.evaluate(data["test"]).worst_group_accuracy
            assert w is not None
            out[method] += w / len(CROWDS)
    return out


def test_ours_beats_mv_soft_and_ds_on_test_worst_group(worst) -> None:
    print("test worst-group accuracy, mean over crowds:", worst)
    for baseline in ("mv", "soft", "ds"):
        assert worst["ours"] >= worst[baseline] + 0.03, worst
