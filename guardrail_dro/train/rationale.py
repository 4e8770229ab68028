"""The annotators' rationales as a feature of the soft-label estimator (issue 11 item 3).

An LLM annotator explains its label; the explanation can say what the label alone does
not: "it opens with a reminder of the rules, so it reads as safe" is the rationale of an
annotator fooled by a jailbreak phrase, a hedge ("hard to tell, possibly...") that of a
guess. The estimator may read them: each rationale is embedded by the same encoder as
the texts (pre-trained, through the embedding cache), compared with what that annotator
usually writes for that label on train, and projected on the P directions along which
rationales vary most on train (``RationaleBasis``; no gold, no valid). The estimator
learns one shared weight per direction on valid (model.WeightEstimator's rationale
term), and whether it reads them at all is chosen like the confidence term: by the
2-fold CV inside valid (rank_selection), unless ``use_rationale`` is on or off.

Why relative to (annotator, label): the label and the annotator's trust are already in
the estimator; a rationale that merely restates the label ("the question reads as
hate") must give 0, and only how this rationale differs from the usual ones may move
the weight. Why a few shared directions: valid has hundreds to a few thousand items, and
a free weight per embedding dimension (384) would fit them, not the annotators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from guardrail_dro.train.model import RationaleBasis, project_rationales

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset

__all__ = [
    "RATIONALE_DIM",
    "fit_rationale_basis",
    "rationale_features",
]

RATIONALE_DIM = 8
"""Directions of the rationale feature (P)."""

MIN_VARIANCE = 1e-6
"""Below this total variance of the centred train rationales there is nothing to read
(every annotator writes the same reason for the same label)."""

Embed = Callable[[list[str]], np.ndarray]
Rows = list[tuple[int, int, str, str]]


def fit_rationale_basis(
    emb: np.ndarray,
    annotators: np.ndarray,
    labels: np.ndarray,
    num_annotators: int,
    num_classes: int,
    dim: int = RATIONALE_DIM,
) -> RationaleBasis | None:
    """The ``RationaleBasis`` of M training rationales ((M, D) embeddings, their
    annotator and label indices), or None when they do not vary beyond (annotator, label).

    Each (annotator, label) cell is centred on its own mean, however few its rationales
    (a shared fallback would make merely naming a rare label read as unusual); a cell
    with none on train has a NaN centre, so its rationales elsewhere read as 0: nothing
    on train says what is usual there.
    """
    if emb.shape[0] < 2:
        return None
    d = emb.shape[1]
    emb64 = emb.astype(np.float64)
    sums = np.zeros((num_annotators, num_classes, d))
    counts = np.zeros((num_annotators, num_classes, 1))
    np.add.at(sums, (annotators, labels), emb64)
    np.add.at(counts, (annotators, labels), 1.0)
    with np.errstate(invalid="ignore"):  # 0 / 0 = NaN: the cells unseen on train
        center = sums / counts
    resid = emb64 - center[annotators, labels]
    if float((resid**2).sum(1).mean()) < MIN_VARIANCE:
        return None
    _, sing, vt = np.linalg.svd(resid, full_matrices=False)
    keep = int(min(dim, d, (sing > sing[0] * 1e-6).sum()))
    directions = vt[:keep].T
    scale = np.maximum((resid @ directions).std(0), 1e-6)
    return (
        torch.as_tensor(center, dtype=torch.float32),
        torch.as_tensor(directions, dtype=torch.float32),
        torch.as_tensor(scale, dtype=torch.float32),
    )


def _features(
    rows: Rows,
    emb: np.ndarray,
    n_items: int,
    num_annotators: int,
    class_index: Callable[[str], int],
    basis: RationaleBasis,
) -> torch.Tensor:
    """(N, K, P) float32 features of a split's rationales (0 where none)."""
    p = basis[1].shape[1]
    out = torch.zeros(n_items, num_annotators, p)
    if not rows:
        return out
    i = torch.as_tensor([r[0] for r in rows])
    k = torch.as_tensor([r[1] for r in rows])
    y = torch.as_tensor([class_index(r[2]) for r in rows])
    out[i, k] = project_rationales(torch.as_tensor(emb, dtype=torch.float32), k, y, basis)
    return out


def rationale_features(
    train: AnnotatedDataset,
    valid: AnnotatedDataset,
    annotators: Sequence[str],
    embed: Embed,
    dim: int = RATIONALE_DIM,
) -> tuple[RationaleBasis, torch.Tensor, torch.Tensor]:
    """(basis fit on train, (N, K, P) train features, (V, K, P) valid features).

    Args:
        embed: texts -> (M, D) embeddings by the encoder the estimator's features use.

    Raises:
        ValueError: with the reason (fewer than 2 rationales on train, none varying
            beyond (annotator, label), none on valid from a cell seen on train): the
            term would have nothing to learn from.
    """
    schema = train.schema
    rows_t, rows_v = train.rationales(annotators), valid.rationales(annotators)
    texts = sorted({r[3] for r in rows_t} | {r[3] for r in rows_v})
    vecs = embed(texts)
    at = {t: n for n, t in enumerate(texts)}
    emb_t = vecs[[at[r[3]] for r in rows_t]] if rows_t else np.zeros((0, vecs.shape[1]))
    emb_v = vecs[[at[r[3]] for r in rows_v]] if rows_v else np.zeros((0, vecs.shape[1]))
    basis = fit_rationale_basis(
        emb_t,
        np.asarray([r[1] for r in rows_t], dtype=np.int64),
        np.asarray([schema.index(r[2]) for r in rows_t], dtype=np.int64),
        len(annotators),
        schema.num_classes,
        dim,
    )
    if basis is None:
        raise ValueError(
            "fewer than 2 rationales on train"
            if len(rows_t) < 2
            else "on train every annotator gives the same rationale for the same label"
        )
    k = len(annotators)
    feats_t = _features(rows_t, emb_t, len(train), k, schema.index, basis)
    feats_v = _features(rows_v, emb_v, len(valid), k, schema.index, basis)
    if not bool(feats_v.any()):
        raise ValueError(
            "no rationale on valid differs from its annotator's usual one for that label "
            "on train (or none comes from an annotator and label seen there)"
        )
    return basis, feats_t, feats_v
