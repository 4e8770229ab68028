"""The pure maths on three-element tensors, values worked out by hand (and the unrolled
hypergradient against finite differences)."""

import math

import pytest
import torch

from guardrail_dro.train import objectives as O
from guardrail_dro.train.model import ClassifierHead


def test_masked_softmax_renormalises_per_item_over_present_annotators() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 5.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, True], [True, True, False], [False, False, False]])
    w = O.masked_softmax(logits, mask)
    torch.testing.assert_close(w[0], torch.full((3,), 1 / 3))
    # The absent annotator's large logit must not leak into the others' weights.
    torch.testing.assert_close(w[1], torch.tensor([0.75, 0.25, 0.0]))
    torch.testing.assert_close(w[2], torch.zeros(3))  # no annotator: all zero, not NaN


def test_soft_labels_sum_weights_by_class_and_ignore_missing() -> None:
    labels = torch.tensor([[0, 2, -1], [1, 1, 0]])
    w = torch.tensor([[0.25, 0.75, 0.0], [0.2, 0.3, 0.5]])
    s = O.soft_labels(w, labels, num_classes=3)
    torch.testing.assert_close(s, torch.tensor([[0.25, 0.0, 0.75], [0.5, 0.5, 0.0]]))


def test_soft_labels_are_differentiable_in_the_weights() -> None:
    logits = torch.zeros(1, 3, requires_grad=True)
    labels = torch.tensor([[0, 1, 1]])
    s = O.soft_labels(O.masked_softmax(logits, labels >= 0), labels, 2)
    (-torch.log(s[0, 0])).backward()
    assert logits.grad is not None
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # more weight on the annotator saying 0


def test_soft_cross_entropy_matches_hard_cross_entropy_on_one_hot() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    y = torch.tensor([1, 2])
    hard = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    soft = O.soft_cross_entropy(logits, torch.nn.functional.one_hot(y, 3).float())
    torch.testing.assert_close(soft, hard)


def test_agreement_risk_is_minus_log_mass_on_gold() -> None:
    s = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    r = O.agreement_risk(s, torch.tensor([0, 2, 1]), eps=1e-6)
    assert r[0].item() == pytest.approx(math.log(2), abs=1e-5)
    assert r[1].item() == pytest.approx(0.0, abs=1e-5)
    assert r[2].item() == pytest.approx(-math.log(1e-6), rel=1e-4)  # finite, large


def test_group_mean_ignores_ungrouped_items_and_reports_empty_groups() -> None:
    values = torch.tensor([1.0, 3.0, 10.0, 7.0])
    groups = torch.tensor([0, 0, -1, 2])
    means, counts = O.group_mean(values, groups, num_groups=3)
    torch.testing.assert_close(means, torch.tensor([2.0, 0.0, 7.0]))
    torch.testing.assert_close(counts, torch.tensor([2.0, 0.0, 1.0]))


def test_group_weight_update_is_exponentiated_gradient() -> None:
    q = torch.tensor([0.5, 0.25, 0.25])
    risks = torch.tensor([0.0, math.log(2.0), 0.0])
    new = O.update_group_weights(q, risks, step_size=1.0)
    # q * exp(R) = [0.5, 0.5, 0.25] -> normalised
    torch.testing.assert_close(new, torch.tensor([0.4, 0.4, 0.2]))
    torch.testing.assert_close(q, torch.tensor([0.5, 0.25, 0.25]))  # input untouched


def test_group_weight_update_leaves_unobserved_groups_relative_weight() -> None:
    q = torch.tensor([0.2, 0.2, 0.6])
    new = O.update_group_weights(
        q, torch.tensor([5.0, 1.0, 9.0]), 1.0, present=torch.tensor([True, False, False])
    )
    assert new[2] / new[1] == pytest.approx(3.0)
    assert new[0] > q[0]


def test_group_weight_update_survives_huge_steps() -> None:
    q = torch.full((3,), 1 / 3)
    new = O.update_group_weights(q, torch.tensor([1e4, 0.0, 0.0]), step_size=10.0)
    assert torch.isfinite(new).all()
    assert new[0].item() == pytest.approx(1.0)


def test_fixable_items_and_agreement_group_risks() -> None:
    labels = torch.tensor([[0, 1], [1, 1], [2, -1]])
    gold = torch.tensor([0, 0, 2])
    torch.testing.assert_close(O.fixable_items(labels, gold), torch.tensor([True, False, True]))
    w = torch.tensor([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    R, n = O.agreement_group_risks(
        w[[0, 2]], labels[[0, 2]], gold[[0, 2]], torch.tensor([0, 1]), num_groups=2, num_classes=3
    )
    torch.testing.assert_close(n, torch.tensor([1.0, 1.0]))
    assert R[0].item() == pytest.approx(math.log(2), abs=1e-5)
    assert R[1].item() == pytest.approx(0.0, abs=1e-5)


def _unrolled_case(hidden: int) -> dict:
    """A float64 batch of 4 items, 3 annotators, 3 classes, 2 groups; a head without
    dropout (gradcheck needs a deterministic function)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    head = ClassifierHead(5, 3, hidden=hidden, dropout=0.0).double()
    return {
        "head": head,
        "labels": torch.tensor([[0, 1, -1], [2, 2, 1], [-1, 0, 0], [1, -1, 2]]),
        "feats": torch.randn(4, 5, generator=gen, dtype=torch.float64),
        "valid_feats": torch.randn(6, 5, generator=gen, dtype=torch.float64),
        "valid_gold": torch.tensor([0, 1, 2, 0, 1, 2]),
        "valid_groups": torch.tensor([0, 0, 1, 1, -1, 1]),
        "logits": torch.randn(4, 3, generator=gen, dtype=torch.float64),
    }


@pytest.mark.parametrize("hidden", [0, 4], ids=["linear-head", "hidden-layer-head"])
def test_unrolled_group_risks_gradient_matches_finite_differences(hidden: int) -> None:
    """d(group risks)/d(estimator logits), through the soft labels and the unrolled step,
    against central differences (torch.autograd.gradcheck, float64)."""
    c = _unrolled_case(hidden)
    labels = c["labels"]

    def risks(logits: torch.Tensor) -> torch.Tensor:
        w = O.masked_softmax(logits, O.annotator_mask(labels))
        R, _ = O.unrolled_group_risks(
            c["head"],
            w,
            labels,
            c["feats"],
            c["valid_feats"],
            c["valid_gold"],
            c["valid_groups"],
            num_groups=2,
            num_classes=3,
            inner_lr=0.7,
        )
        return R

    logits = c["logits"].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(risks, (logits,), eps=1e-6, atol=1e-6, rtol=1e-4)
    # The gradient is not trivially zero: the unrolled step does carry the weights' signal.
    (g,) = torch.autograd.grad(risks(logits).sum(), logits)
    assert g.abs().max() > 1e-4


def test_unrolled_group_risks_without_a_step_are_the_heads_valid_risks() -> None:
    c = _unrolled_case(0)
    before = {k: v.clone() for k, v in c["head"].state_dict().items()}
    w = O.masked_softmax(c["logits"], O.annotator_mask(c["labels"]))
    R, n = O.unrolled_group_risks(
        c["head"],
        w,
        c["labels"],
        c["feats"],
        c["valid_feats"],
        c["valid_gold"],
        c["valid_groups"],
        num_groups=2,
        num_classes=3,
        inner_lr=1e-12,
    )
    ce = torch.nn.functional.cross_entropy(
        c["head"](c["valid_feats"]), c["valid_gold"], reduction="none"
    )
    torch.testing.assert_close(R, torch.stack([ce[:2].mean(), ce[[2, 3, 5]].mean()]))
    torch.testing.assert_close(n, torch.tensor([2.0, 3.0], dtype=torch.float64))
    for k, v in c["head"].state_dict().items():  # the head itself is read, not stepped
        torch.testing.assert_close(v, before[k])
