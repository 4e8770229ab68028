"""Pure tensor functions of the bi-level soft-label GroupDRO method.

No state, no devices: each function takes tensors and returns tensors, so the training
loop only sequences them and each is unit-tested on tiny inputs. The one module an
argument may be, the classifier head of ``unrolled_group_risks``, is only called as a
function of explicit parameters (``torch.func.functional_call``), never changed.

Notation (see ../shared/docs/METHOD.md): B items, K annotators, C classes, G groups.
``labels`` is a (B, K) long tensor of class indices with -1 where the annotator did
not label the item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

__all__ = [
    "agreement_group_risks",
    "agreement_risk",
    "annotator_mask",
    "fixable_items",
    "group_mean",
    "masked_softmax",
    "soft_cross_entropy",
    "soft_labels",
    "unrolled_group_risks",
    "update_group_weights",
]


def annotator_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: which annotators labelled each item."""
    return labels >= 0


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``mask``; rows with no True give all zeros.

    Renormalising per item over the annotators present is the fix for the reference
    code's batch-wide normalisation.
    """
    neg = torch.finfo(logits.dtype).min
    masked = logits.masked_fill(~mask, neg)
    w = torch.softmax(masked, dim=-1) * mask
    # Rows with no annotator: softmax of all -inf-ish is uniform; zero them explicitly.
    return w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(logits.dtype).tiny)


def soft_labels(weights: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """s(x) = sum_k w_k(x) * onehot(y^k): (B, K) weights, (B, K) labels -> (B, C).

    ``weights`` must already be zero where ``labels`` is -1 (``masked_softmax`` does that).
    Differentiable in ``weights``.
    """
    onehot = F.one_hot(labels.clamp_min(0), num_classes).to(weights.dtype)  # (B, K, C)
    onehot = onehot * annotator_mask(labels).unsqueeze(-1)
    return torch.einsum("bk,bkc->bc", weights, onehot)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-item cross-entropy against a target distribution: (B, C), (B, C) -> (B,)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1)


def agreement_risk(soft: torch.Tensor, gold: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-item -log s(x)[y]: how little soft-label mass sits on the true class. (B,)

    The eps keeps the loss finite when no annotator gave the gold class; without it a
    single such item would dominate its group with an infinite risk.
    """
    return -torch.log(soft.gather(1, gold.unsqueeze(1)).squeeze(1) + eps)


def fixable_items(labels: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """(B,) bool: some annotator gave the gold class.

    Only these items carry signal for the estimator's agreement risk: on the others
    s(x)[y] = 0 whatever the weights, a constant -log(eps) that would inflate its
    group's risk and steer GroupDRO toward groups nothing can fix.
    """
    return (labels == gold[:, None]).any(1)


def agreement_group_risks(
    weights: torch.Tensor,
    labels: torch.Tensor,
    gold: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The agreement risk's group means: soft labels from ``weights`` -> -log s(x)[y]
    -> mean per group. Returns (G,) risks and (G,) counts, differentiable in weights."""
    risk = agreement_risk(soft_labels(weights, labels, num_classes), gold)
    return group_mean(risk, groups, num_groups)


def group_mean(
    values: torch.Tensor, groups: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` (B,) within each group (B,) -> (G,) means and (G,) counts.

    Groups with no item get mean 0 and count 0; items with group -1 are ignored.
    Differentiable in ``values``.
    """
    valid = groups >= 0
    idx = groups.clamp_min(0)
    sums = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add(
        0, idx, values * valid
    )
    counts = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add(
        0, idx, valid.to(values.dtype)
    )
    return sums / counts.clamp_min(1), counts


def update_group_weights(
    q: torch.Tensor, risks: torch.Tensor, step_size: float, present: torch.Tensor | None = None
) -> torch.Tensor:
    """GroupDRO's exponentiated-gradient step: q_g <- q_g exp(eta R_g), renormalised.

    Done in log space so a large ``step_size * risk`` cannot overflow. Groups not
    ``present`` in the batch keep their weight relative to each other (their risk is
    not observed, so it must not move them). Returns a new tensor; ``q`` is untouched.

    Args:
        q: (G,) current weights on the simplex.
        risks: (G,) group risks (detached: q is not learned by gradient).
        step_size: eta_q >= 0.
        present: (G,) bool, groups observed in this batch; default all.
    """
    risks = risks.detach()
    if present is None:
        present = torch.ones_like(q, dtype=torch.bool)
    logq = torch.log(q.clamp_min(torch.finfo(q.dtype).tiny)) + step_size * risks * present
    return torch.softmax(logq, dim=0)


def unrolled_group_risks(
    head: nn.Module,
    weights: torch.Tensor,
    labels: torch.Tensor,
    feats: torch.Tensor,
    valid_feats: torch.Tensor,
    valid_gold: torch.Tensor,
    valid_groups: torch.Tensor,
    *,
    num_groups: int,
    num_classes: int,
    inner_lr: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group risks on valid of the classifier after one SGD step on the soft labels.

    theta' = theta - inner_lr * grad_theta mean CE(f_theta(x), s(x)), where s(x) is the
    soft label of ``weights``; the step keeps its graph (``create_graph=True``), so the
    valid risk of f_theta' back-propagates into ``weights`` and so into the estimator
    that produced them (meta-weight learning). Only the head is unrolled: the features
    are inputs, so in full mode the encoder is held fixed for this step. The head's
    parameters are read, not changed; a head in train mode draws its dropout masks
    (inner pass first, then the valid pass).

    Args:
        head: the classifier head (plain module, not a DDP wrapper: its parameter
            names are used).
        weights: (B, K) estimator weights over the annotators of the batch items.
        labels: (B, K) annotator labels of the batch, -1 where absent.
        feats: (B, D) features of the batch.
        valid_feats, valid_gold, valid_groups: (V, D), (V,), (V,) of the upper level.
        num_groups, num_classes: G and C.
        inner_lr: step size of the unrolled update.

    Returns:
        (G,) group means of the valid cross-entropy and (G,) item counts.
    """
    params: dict[str, torch.Tensor] = dict(head.named_parameters())
    s = soft_labels(weights, labels, num_classes)
    inner = soft_cross_entropy(functional_call(head, params, (feats,)), s).mean()
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    fast = {k: p - inner_lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
    logits = functional_call(head, fast, (valid_feats,))
    risk = F.cross_entropy(logits, valid_gold, reduction="none")
    return group_mean(risk, valid_groups, num_groups)
