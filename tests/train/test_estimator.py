"""The sparse-crowd parts of the soft-label estimator on tiny tensors: the label-only
reliability prior, the shared label terms, and shrinkage of per-annotator weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.model import WeightEstimator
from guardrail_dro.train.rank_selection import Capacity, _fit, choose_estimator_rank
from guardrail_dro.train.reliability import annotator_reliability


def _crowd(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Binary items; annotators 0, 1, 2 label all, right 95%, 55%, 80% of the time;
    annotator 3 is right on the 3 items it labelled."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n)
    labels = np.full((n, 4), -1)
    for k, acc in ((0, 0.95), (1, 0.55), (2, 0.8)):
        right = rng.random(n) < acc
        labels[:, k] = np.where(right, gold, 1 - gold)
    labels[:3, 3] = gold[:3]
    return labels, gold


def test_reliability_ranks_annotators_and_shrinks_the_sparse_one_to_the_crowd() -> None:
    labels, _ = _crowd()
    r = annotator_reliability(labels, 2)
    assert r.shape == (4, 2)
    m = r.mean(1)
    assert m[0] > m[2] > m[1] + 1.0, r
    # Three labels, all right, are no proof: annotator 3 stays below the careful one.
    assert m[3] < m[0], r


def test_reliability_has_no_opinion_without_overlapping_labels() -> None:
    labels = np.array([[0, -1], [-1, 1]])
    assert not annotator_reliability(labels, 2).any()


def test_label_estimator_needs_labels_not_a_presence_mask() -> None:
    est = WeightEstimator(4, 3, rank=2, num_classes=2)
    with pytest.raises(ConfigError, match="label matrix"):
        est(torch.zeros(1, 4), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="reliability table has shape"):
        WeightEstimator(4, 3, rank=2, num_classes=2, reliability=torch.zeros(3, 5))
    w = est(torch.zeros(2, 4), torch.tensor([[0, 1, -1], [-1, -1, 1]]))
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))


def test_shared_label_terms_learn_from_every_annotator() -> None:
    """The label terms are one trust per class, shared by all annotators: votes of a
    class that is usually right get more weight whoever cast them."""
    labels, gold = _crowd()
    y = torch.as_tensor(labels)
    g = torch.as_tensor(gold)
    y[:, 1] = 1  # annotator 1 always says 1: wrong on every gold 0
    feats = torch.zeros(len(gold), 4)
    groups = torch.zeros(len(gold), dtype=torch.long)
    est = _fit(feats, y, g, groups, 1, 2, 0, 2.0, torch.zeros(4, 2), steps=150, lr=0.05,
               group_step=0.0)
    # Votes of "0" are always right here (only annotator 1 errs, always saying 1).
    assert float((est.label_bias[0] - est.label_bias[1]).detach()) > 0.2


def test_shrinkage_holds_a_rarely_seen_annotator_near_the_shared_model() -> None:
    """Annotator 1 (always wrong on 200 items) and annotator 2 (always wrong on 2 items)
    would both be pushed down by the same Adam steps; with the prior, the rare one moves
    in proportion to how few items it has."""
    n = 200
    gold = torch.zeros(n, dtype=torch.long)
    labels = torch.full((n, 3), -1)
    labels[:, 0] = 0
    labels[:, 1] = 1
    labels[:2, 2] = 1
    feats = torch.zeros(n, 4)
    groups = torch.zeros(n, dtype=torch.long)
    free = _fit(feats, labels, gold, groups, 1, 2, 0, 0.0, None, steps=200, lr=0.05,
                group_step=0.0)
    held = _fit(feats, labels, gold, groups, 1, 2, 0, 20.0, None, steps=200, lr=0.05,
                group_step=0.0)
    b_free, b_held = free.bias.detach(), held.bias.detach()
    spread_free = float(b_free[0] - b_free[2])
    spread_held = float(b_held[0] - b_held[2])
    assert spread_free > 2 * spread_held > 0, (b_free, b_held)
    assert float(b_held[0] - b_held[1]) > spread_held  # the frequent one still moves


def test_capacity_is_chosen_over_rank_and_shrinkage_by_cross_validation() -> None:
    labels, gold = _crowd(120)
    feats = torch.randn(120, 4, generator=torch.Generator().manual_seed(0))
    chosen, scores = choose_estimator_rank(
        feats,
        torch.as_tensor(labels),
        torch.as_tensor(gold),
        torch.zeros(120, dtype=torch.long),
        num_groups=1,
        num_classes=2,
        reliability=torch.as_tensor(annotator_reliability(labels, 2)),
        candidates=(0, 4),
        shrinkages=(2.0, 20.0),
        steps=30,
    )
    assert set(scores) == {Capacity(r, s) for r in (0, 4) for s in (2.0, 20.0)}
    assert chosen in scores and not chosen.confidence and not chosen.rationale
    best = max(v.accuracy for v in scores.values())
    assert scores[chosen].accuracy >= best - 0.005


def test_estimators_saved_before_the_label_terms_still_load() -> None:
    from types import SimpleNamespace

    from guardrail_dro.train.estimator_state import load_estimator as _load_estimator

    manifest = SimpleNamespace(annotators=["a", "b", "c"])
    old = WeightEstimator(4, 3, rank=2).state_dict()  # no label terms, as saved before
    assert "label_bias" not in old
    est = _load_estimator(old, 4, manifest)  # type: ignore[arg-type]
    assert est.num_classes == 0
    new = WeightEstimator(4, 3, rank=2, num_classes=5).state_dict()
    assert _load_estimator(new, 4, manifest).num_classes == 5  # type: ignore[arg-type]


def test_penalty_gradient_is_the_gradient_of_the_penalty() -> None:
    """Added outside autograd (DDP allows one gradient per parameter and pass), it must
    still be exactly d(scale * penalty)/d(parameters)."""
    torch.manual_seed(0)
    est = WeightEstimator(4, 3, rank=2, num_classes=2)
    with torch.no_grad():
        est.bias.normal_()
        est.annotators.normal_()
    (0.3 * est.penalty()).backward()
    want = (est.bias.grad.clone(), est.annotators.grad.clone())
    est.zero_grad()
    est.add_penalty_grad(0.3)
    torch.testing.assert_close(est.bias.grad, want[0])
    torch.testing.assert_close(est.annotators.grad, want[1])
