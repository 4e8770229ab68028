"""The paired, group-stratified bootstrap between two methods' test predictions."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail_dro.train.metrics import compute_metrics
from guardrail_dro.train.paired import paired_bootstrap, paired_table


def _data(rng: np.random.Generator, n: int = 300, groups: int = 4, classes: int = 3):
    gold = rng.integers(0, classes, n)
    grp = rng.integers(0, groups, n)
    return gold, grp


def _noisy(rng, gold, flip: float, classes: int = 3) -> np.ndarray:
    wrong = rng.random(len(gold)) < flip
    return np.where(wrong, (gold + 1) % classes, gold)


def test_the_point_difference_is_the_difference_of_the_tables_means() -> None:
    rng = np.random.default_rng(0)
    gold, grp = _data(rng)
    a = np.stack([_noisy(rng, gold, 0.2), _noisy(rng, gold, 0.25)])
    b = np.stack([_noisy(rng, gold, 0.3), _noisy(rng, gold, 0.35)])
    out = paired_bootstrap(gold, grp, {"ours": a, "mv": b}, "ours", draws=200)
    assert set(out) == {"mv"}

    def mean(p: np.ndarray, key: str) -> float:
        ms = [compute_metrics(gold, s, num_classes=3, groups=grp) for s in p]
        return float(np.mean([getattr(m, key) for m in ms]))

    c = out["mv"]
    for key in ("worst_group_accuracy", "accuracy"):
        iv = getattr(c, key)
        assert iv.diff == pytest.approx(mean(a, key) - mean(b, key))
        assert iv.low <= iv.high
    assert c.rival_seeds == 2 and c.draws == 200


def test_identical_predictions_differ_by_exactly_zero_in_every_draw() -> None:
    rng = np.random.default_rng(1)
    gold, grp = _data(rng)
    p = _noisy(rng, gold, 0.3)
    c = paired_bootstrap(gold, grp, {"ours": p, "twin": p.copy()}, "ours", draws=100)["twin"]
    for iv in (c.worst_group_accuracy, c.accuracy):
        assert (iv.diff, iv.low, iv.high, iv.ahead) == (0.0, 0.0, 0.0, 0.5)


def test_every_draw_keeps_each_group_whole_and_at_its_size() -> None:
    """The rival fails every item of group 1 and nothing else: with the resampling
    stratified by group, every draw has group 1 at its own size, so the worst-group
    difference is 1 and the accuracy difference is group 1's share, in every draw."""
    rng = np.random.default_rng(2)
    gold, grp = _data(rng)
    rival = np.where(grp == 1, (gold + 1) % 3, gold)
    c = paired_bootstrap(gold, grp, {"ours": gold, "rival": rival}, "ours", draws=300)["rival"]
    share = float(np.mean(grp == 1))
    assert (c.worst_group_accuracy.low, c.worst_group_accuracy.high) == (1.0, 1.0)
    assert c.accuracy.low == pytest.approx(share) and c.accuracy.high == pytest.approx(share)
    assert c.accuracy.ahead == 1.0


def test_a_clear_lead_excludes_zero_and_a_small_one_on_small_groups_does_not() -> None:
    rng = np.random.default_rng(3)
    gold, grp = _data(rng, n=240, groups=4)
    ours = _noisy(rng, gold, 0.10)
    far = _noisy(rng, gold, 0.45)
    # Close: the same predictions with a handful of extra errors scattered.
    close = ours.copy()
    idx = rng.choice(np.nonzero(ours == gold)[0], 4, replace=False)
    close[idx] = (gold[idx] + 1) % 3
    out = paired_bootstrap(gold, grp, {"ours": ours, "far": far, "close": close}, "ours")
    assert out["far"].worst_group_accuracy.low > 0 and out["far"].accuracy.ahead > 0.99
    near = out["close"].worst_group_accuracy
    assert near.low <= 0 <= near.high
    table = paired_table(out).splitlines()
    assert table[2].startswith("| `close` |") and table[3].startswith("| `far` |")


def test_items_without_a_group_count_in_accuracy_only() -> None:
    rng = np.random.default_rng(4)
    gold, grp = _data(rng)
    grp[:50] = -1
    rival = gold.copy()
    rival[:50] = (gold[:50] + 1) % 3  # wrong only where there is no group
    c = paired_bootstrap(gold, grp, {"ours": gold, "r": rival}, "ours", draws=100)["r"]
    assert c.worst_group_accuracy.diff == 0.0 and c.worst_group_accuracy.high == 0.0
    assert c.accuracy.diff == pytest.approx(50 / len(gold))


def test_bad_input_is_named() -> None:
    gold = np.array([0, 1, 1, 0])
    grp = np.array([0, 0, 1, 1])
    with pytest.raises(KeyError, match="ours"):
        paired_bootstrap(gold, grp, {"mv": gold}, "ours")
    with pytest.raises(ValueError, match="mv: 3 predictions for 4 test items"):
        paired_bootstrap(gold, grp, {"ours": gold, "mv": gold[:3]}, "ours")
    with pytest.raises(ValueError, match="group labels"):
        paired_bootstrap(gold, np.full(4, -1), {"ours": gold, "mv": gold}, "ours")


def test_the_coverage_benchmark_runs_and_sees_the_minimum_bias(tmp_path) -> None:
    """``benchmarks/bench_paired_coverage.py`` end to end on a few simulated splits:
    accuracy's difference is unbiased, the worst group's is not when one profile is flat
    and the other has a single weak group (a minimum over noisy groups falls further for
    the flat one)."""
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).parents[2] / "benchmarks" / "bench_paired_coverage.py"
    main = runpy.run_path(str(script))["main"]
    main(["--reps", "20", "--draws", "100", "--out", str(tmp_path / "c.json")])
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    flat = rows["flat vs one weak group"]
    assert flat["worst_group_accuracy"]["bias"] < -0.04
    assert abs(flat["accuracy"]["bias"]) < 0.01
    assert rows["equal, flat"]["worst_group_accuracy"]["coverage"] >= 0.9
