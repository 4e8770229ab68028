"""Reading a saved soft-label weight estimator back (``estimator.safetensors`` of a model
directory): its shape comes from the saved tensors, since estimators saved by older
versions lack the terms added since (label terms, confidence, rationales).

Kept apart from ``modeldir`` so that the directory's reading and writing stay one module
of a readable size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from guardrail_dro.errors import ArtifactError, ConfigError
from guardrail_dro.train.model import WeightEstimator

if TYPE_CHECKING:
    from guardrail_dro.train.modeldir import TrainManifest

__all__ = ["load_estimator"]


def load_estimator(
    state: dict[str, torch.Tensor], dim: int, manifest: TrainManifest
) -> WeightEstimator:
    """The soft-label weight estimator saved beside the head, in eval mode.

    Its rank is read from the saved annotator table (K, rank) rather than from the
    config, where ``estimator_rank`` is None when cross-validation chose it; its class
    count from the saved label terms, absent in models saved before them.

    Raises:
        ArtifactError: a state that does not fit the manifest's annotators.
    """
    table = state.get("annotators")
    if table is None or table.ndim != 2 or table.shape[0] != len(manifest.annotators):
        raise ArtifactError(
            f"estimator.safetensors does not hold a weight estimator for the "
            f"{len(manifest.annotators)} annotators of the manifest"
        )
    # The shared label terms (and their class count) exist only in models saved since
    # they were added; older estimators load without them.
    label_bias = state.get("label_bias")
    classes = int(label_bias.shape[0]) if label_bias is not None else 0
    # Likewise the confidence term (issue 11 item 3), saved only by estimators that read
    # confidences.
    mean, spread = state.get("confidence_mean"), state.get("confidence_spread")
    conf = (mean, spread) if mean is not None and spread is not None else None
    # And the rationale term's basis, saved only by estimators that read rationales.
    center, basis, scale = (state.get(f"rationale_{n}") for n in ("center", "basis", "scale"))
    rat = None
    if center is not None and basis is not None and scale is not None:
        rat = (center, basis, scale)
    try:
        est = WeightEstimator(
            dim, len(manifest.annotators), int(table.shape[1]), classes, None, conf, rat
        )
        est.load_state_dict(state)
    except (RuntimeError, ConfigError) as exc:
        raise ArtifactError(
            f"estimator.safetensors does not fit a weight estimator: {exc}"
        ) from None
    return est.eval()
