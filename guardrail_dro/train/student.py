"""The student's parts: which teacher layers it keeps, how it is built, what it learns.

Split from ``train/distill.py`` (the loop and its data) so each stays readable; the
names are re-exported there.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator, Sequence
from typing import Literal

import torch

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.model import GuardClassifier, safe_toxic_log_mass

__all__ = [
    "DistillLoss",
    "LayerChoice",
    "distill_loss",
    "fake_int8",
    "model_outputs",
    "pick_layers",
    "student_from_teacher",
]

LayerChoice = Literal["first", "spread"]
DistillLoss = Literal["kl", "embed", "both"]


def pick_layers(total: int, k: int, choice: LayerChoice = "spread") -> list[int]:
    """Teacher layer indices for a K-layer student.

    >>> pick_layers(6, 3, "spread"), pick_layers(6, 3, "first"), pick_layers(6, 1, "spread")
    ([0, 2, 5], [0, 1, 2], [0])
    """
    if not 1 <= k <= total:
        raise ConfigError(f"the student needs 1..{total} layers (the teacher's), not {k}")
    if choice == "first" or k == 1:
        return list(range(k))
    if choice != "spread":
        raise ConfigError(f"layer choice must be first or spread, not {choice!r}")
    return sorted({round(i * (total - 1) / (k - 1)) for i in range(k)})


_LAYER = re.compile(r"^(encoder\.layer\.)(\d+)(\..*)$")


def student_from_teacher(teacher: GuardClassifier, layers: Sequence[int]) -> GuardClassifier:
    """A ``GuardClassifier`` with the teacher's embeddings, the given layers and a copy
    of its head (a BERT-like encoder: ``encoder.layer.N.*`` weights), in eval mode.

    Raises:
        ConfigError: the encoder does not number its layers as BERT does.
    """
    from transformers import AutoModel

    cfg = copy.deepcopy(teacher.encoder.config)
    cfg.num_hidden_layers = len(layers)
    student = AutoModel.from_config(cfg)
    src = teacher.encoder.state_dict()
    if not any(_LAYER.match(k) for k in src):
        raise ConfigError(
            f"cannot distil a {type(teacher.encoder).__name__}: its weights have no "
            "encoder.layer.N.* (only BERT-like encoders are supported)"
        )
    state = {}
    for j, i in enumerate(layers):
        for k, v in src.items():
            m = _LAYER.match(k)
            if m and int(m.group(2)) == i:
                state[f"{m.group(1)}{j}{m.group(3)}"] = v.clone()
    state |= {k: v.clone() for k, v in src.items() if not _LAYER.match(k)}
    student.load_state_dict(state, strict=True)
    head = copy.deepcopy(teacher.head)
    # The teacher's binary toxic head, when valid chose one (train/toxic_score.py), rides
    # along on the student's pooled embedding (which the loss pulls toward the teacher's),
    # so the student's toxic score is the same kind as the teacher's manifest says.
    toxic = copy.deepcopy(teacher.toxic)
    return GuardClassifier(student, head, normalize=teacher.normalize, toxic=toxic).eval()


def distill_loss(
    student_logits: torch.Tensor,
    student_emb: torch.Tensor,
    teacher_probs: torch.Tensor,
    teacher_emb: torch.Tensor,
    *,
    loss: DistillLoss = "both",
    embed_weight: float = 1.0,
    temperature: float = 1.0,
    toxic_weight: float = 0.0,
    safe: torch.Tensor | None = None,
) -> torch.Tensor:
    """The distillation objective, a pure function of one batch.

    ``kl``: KL(teacher || student) of the class distributions at ``temperature``
    (scaled by T^2 so its gradients keep their size, as Hinton et al.); ``embed``: the
    squared distance between the pooled embeddings, summed over dimensions (for
    normalised embeddings, 2 - 2 cos); ``both``: their sum, the embedding term weighted.
    The teacher's probabilities are re-tempered from their logs for T != 1.
    ``toxic_weight`` adds the binary KL between the two toxic scores, 1 - P(``safe``)
    (at T = 1): the one number the guard thresholds, which the 15-way KL spreads thin.
    """
    parts = []
    if loss in ("kl", "both"):
        t = temperature
        log_p = torch.log(teacher_probs.clamp_min(1e-12))
        target = torch.softmax(log_p / t, -1) if t != 1.0 else teacher_probs
        log_q = torch.log_softmax(student_logits / t, -1)
        kl = (target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum(-1).mean()
        parts.append(kl * t * t)
    if loss in ("embed", "both"):
        w = embed_weight if loss == "both" else 1.0
        parts.append(w * ((student_emb - teacher_emb) ** 2).sum(-1).mean())
    if not parts:
        raise ConfigError(f"loss must be kl, embed or both, not {loss!r}")
    if toxic_weight > 0 and safe is not None and safe.any() and not safe.all():
        q = torch.cat(safe_toxic_log_mass(torch.log_softmax(student_logits, -1), safe), -1)
        p_safe = teacher_probs[:, safe].sum(-1).clamp(1e-7, 1 - 1e-7)
        p = torch.stack([p_safe, 1 - p_safe], -1)
        parts.append(toxic_weight * (p * (torch.log(p) - q)).sum(-1).mean())
    return torch.stack(parts).sum()


def model_outputs(model: GuardClassifier, emb: torch.Tensor) -> torch.Tensor:
    """Class logits (or, with a binary toxic head, the mixed log-probabilities) of a
    pooled embedding: what the exported guard outputs."""
    logits = model.head(emb)
    return logits if model.toxic is None else model.toxic(emb, logits)


def _fake_quant_input(x: torch.Tensor) -> torch.Tensor:
    """What ONNX Runtime's dynamic quantization does to a MatMul input: one asymmetric
    uint8 scale per tensor per run (``DynamicQuantizeLinear``), gradients straight
    through."""
    lo = x.detach().amin().clamp(max=0.0)
    hi = x.detach().amax().clamp(min=0.0)
    scale = ((hi - lo) / 255.0).clamp_min(1e-8).reshape(1).float()
    zero = torch.round(-lo / scale).clamp(0, 255).to(torch.int32).reshape(1)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Per output channel symmetric int8 weights (the export's ``per-channel s8``)."""
    scale = (w.detach().abs().amax(dim=1) / 127.0).clamp_min(1e-8).float()
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127)


@contextlib.contextmanager
def fake_int8(model: torch.nn.Module) -> Iterator[int]:
    """Inside, every ``nn.Linear`` of ``model`` computes with int8-rounded inputs and
    weights (quantisation-aware training); yields how many layers it covers.

    Why: the export's fast int8 recipe (dynamic, per-channel s8) is kept only if it
    changes under 1% of the decisions on valid; a 2-layer student's margins let it pass
    or fail by a few texts from one seed to the next (README "Guard"). Training the last
    epochs through the same rounding teaches the student margins that survive it.
    """
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]

    def forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        w = _fake_quant_weight(self.weight)
        return torch.nn.functional.linear(_fake_quant_input(x), w, self.bias)

    for m in linears:
        m.forward = forward.__get__(m)  # type: ignore[method-assign]
    try:
        yield len(linears)
    finally:
        for m in linears:
            del m.forward
