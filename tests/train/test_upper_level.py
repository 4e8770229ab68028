"""The estimator's upper-level step, on three-item tensors."""

import torch

from guardrail_dro.train import objectives as O
from guardrail_dro.train.model import WeightEstimator
from guardrail_dro.train.upper_level import AgreementItems, upper_step


def _split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = torch.tensor([[0, 1], [1, 1], [0, 2]])
    gold = torch.tensor([0, 0, 0])
    groups = torch.tensor([0, 1, 1])
    feats = torch.zeros(3, 4)
    return feats, labels, gold, groups


def test_agreement_items_keep_only_items_some_annotator_got_right() -> None:
    _, labels, gold, groups = _split()
    items = AgreementItems.select(labels, gold, groups)
    torch.testing.assert_close(items.index, torch.tensor([True, False, True]))
    torch.testing.assert_close(items.labels, torch.tensor([[0, 1], [0, 2]]))
    torch.testing.assert_close(items.groups, torch.tensor([0, 1]))
    torch.testing.assert_close(items.present, torch.ones(2, 2, dtype=torch.bool))


def test_upper_step_moves_q_by_the_risks_and_the_estimator_toward_agreement() -> None:
    feats, labels, gold, groups = _split()
    items = AgreementItems.select(labels, gold, groups)
    est = WeightEstimator(4, 2, rank=0)  # uniform weights: each item risk is log 2
    opt = torch.optim.SGD(est.parameters(), lr=0.5)
    q = torch.tensor([0.5, 0.5])
    with torch.no_grad():
        R, n = items.risks(est, feats, 2, 3)
    new_q = upper_step(opt, q, lambda: items.risks(est, feats, 2, 3), group_step=1.0)
    torch.testing.assert_close(new_q, O.update_group_weights(q, R, 1.0, n > 0))
    torch.testing.assert_close(q, torch.tensor([0.5, 0.5]))  # input untouched
    with torch.no_grad():
        after, _ = items.risks(est, feats, 2, 3)
    assert (after < R).all(), (R, after)  # annotator 0 gave the gold on both items
