"""The guard classifier as a Hugging Face ``transformers`` model (config + model class).

This file is self-contained on purpose: it imports only torch and transformers, never
guardrail_dro, because ``TrainedModel.save`` copies it verbatim into every trained model
directory as ``modeling_guardrail_dro.py``, named by the ``auto_map`` of its config.json.
So the directory loads anywhere transformers does, without guardrail-dro installed::

    AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)
    pipeline("text-classification", model=DIR, trust_remote_code=True)

and, without ``trust_remote_code``, wherever ``guardrail_dro.train.hf_format`` has been
imported (it registers these classes with the Auto classes).

Why a custom architecture and not a stock one: our model is encoder -> mean pooling over
the real tokens -> L2 normalisation -> linear (or one-hidden-layer GELU) head. A stock
``BertForSequenceClassification`` classifies the [CLS] token through a tanh ``pooler``
dense layer, and no stock ``*ForSequenceClassification`` over a BERT-like encoder mean-
pools and L2-normalises (ModernBERT mean-pools, but its encoder is another architecture),
so no stock class gives our scores exactly. The model type ``guardrail_dro`` is unknown to
a bare transformers on purpose: loading the folder without our code then fails loudly
instead of silently building a BERT classifier with a random head.

The weights use the standard layout: the encoder's own state dict under ``encoder.``
(any ``AutoModel`` encoder: BERT, MPNet, ...; its config nested as ``config.encoder``) and
the head as ``classifier.weight`` / ``classifier.bias`` (with ``pre_classifier.*`` for
the hidden layer, as DistilBERT names it), so ``id2label`` / ``label2id``, fine-tuning
with ``Trainer`` and the pipeline's softmax all work as for any sequence classifier.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging

__all__ = ["MODEL_TYPE", "GuardrailDroConfig", "GuardrailDroForSequenceClassification"]

MODEL_TYPE = "guardrail_dro"
logger = logging.get_logger(__name__)


class GuardrailDroConfig(PretrainedConfig):
    """Config of the guard classifier.

    Args:
        encoder: the encoder's config (a ``PretrainedConfig`` or its dict, with
            ``model_type``).
        normalize: L2-normalise the mean-pooled embedding (sentence-transformers style).
        head_hidden: width of the head's hidden GELU layer; 0 for a linear head.
        classifier_dropout: dropout before each head layer (training only).
        max_seq_length: tokens per text the model was trained and scored with; pass
            ``truncation=True`` to the tokenizer or pipeline to cut longer texts the same way.
        safe_labels: the labels that are safe (allowed); every other label is harmful.
        label_descriptions: label -> human-readable name.
        toxic_score_weight: the binary toxic head's share of the toxic score (0: no
            binary head; the score is 1 - P(safe labels)); see ``_mix_toxic``.
    """

    model_type = MODEL_TYPE
    sub_configs: ClassVar[dict] = {"encoder": AutoConfig}

    def __init__(
        self,
        encoder: PretrainedConfig | dict | None = None,
        normalize: bool = True,
        head_hidden: int = 0,
        classifier_dropout: float = 0.0,
        max_seq_length: int = 512,
        safe_labels: list[str] | None = None,
        label_descriptions: dict[str, str] | None = None,
        toxic_score_weight: float = 0.0,
        **kwargs,
    ) -> None:
        if isinstance(encoder, dict):
            spec = dict(encoder)
            encoder = AutoConfig.for_model(spec.pop("model_type", "bert"), **spec)
        self.encoder = encoder
        self.normalize = normalize
        self.head_hidden = head_hidden
        self.classifier_dropout = classifier_dropout
        self.max_seq_length = max_seq_length
        self.safe_labels = list(safe_labels or [])
        self.label_descriptions = dict(label_descriptions or {})
        self.toxic_score_weight = float(toxic_score_weight)
        super().__init__(**kwargs)


def _mix_toxic(
    logits: torch.Tensor, binary: torch.Tensor, safe: torch.Tensor, weight: float
) -> torch.Tensor:
    """Class log-probabilities whose harmful mass is (1 - weight) * (1 - P(safe)) +
    weight * sigmoid(binary); a copy of ``guardrail_dro.train.model.mix_toxic`` (this
    file is copied into model folders and imports nothing of guardrail_dro)."""
    logp = torch.log_softmax(logits, dim=-1)
    neg = torch.finfo(logp.dtype).min
    log_safe = torch.logsumexp(logp.masked_fill(~safe, neg), dim=-1, keepdim=True)
    log_toxic = torch.logsumexp(logp.masked_fill(safe, neg), dim=-1, keepdim=True)
    t = (1.0 - weight) * torch.exp(log_toxic) + weight * torch.sigmoid(binary)
    t = t.clamp(1e-7, 1.0 - 1e-7)
    return torch.where(safe, logp - log_safe + torch.log1p(-t), logp - log_toxic + torch.log(t))


class GuardrailDroForSequenceClassification(PreTrainedModel):
    """Encoder -> mean pooling -> (L2 normalisation) -> head: token ids in, logits out."""

    config_class = GuardrailDroConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: GuardrailDroConfig) -> None:
        super().__init__(config)
        if config.encoder is None:
            raise ValueError("GuardrailDroConfig.encoder is required (the encoder's config)")
        num_labels = config.num_labels
        if not num_labels:
            raise ValueError("GuardrailDroConfig needs id2label (the classes)")
        self.encoder = AutoModel.from_config(config.encoder)
        dim = config.encoder.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.pre_classifier: nn.Linear | None = None
        if config.head_hidden:
            self.pre_classifier = nn.Linear(dim, config.head_hidden)
            dim = config.head_hidden
        self.classifier = nn.Linear(dim, num_labels)
        self.toxic_classifier: nn.Linear | None = None
        if config.toxic_score_weight > 0:
            self.toxic_classifier = nn.Linear(config.encoder.hidden_size, 1)
            # A plain list, not a buffer: from_pretrained builds models on the meta device,
            # where a non-persistent buffer would never get its values.
            names: dict[int, str] = dict(config.id2label or {})  # type: ignore[assignment]
            self._safe = [names[i] in config.safe_labels for i in range(num_labels)]
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Class logits (and the cross-entropy loss when ``labels`` are given).

        ``token_type_ids`` is accepted and ignored: texts are single segments, scored
        with the encoder's default (all zeros), as in training.
        """
        if input_ids is None:
            raise ValueError("input_ids is required")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if input_ids.shape[-1] > self.config.max_seq_length:
            logger.warning_once(
                f"inputs of {input_ids.shape[-1]} tokens: this guard was trained and is "
                f"scored on at most {self.config.max_seq_length}; pass truncation=True to "
                "the tokenizer or pipeline to get guardrail-dro's scores"
            )
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        states = hidden.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        if self.config.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        x = self.dropout(pooled)
        if self.pre_classifier is not None:
            x = self.dropout(nn.functional.gelu(self.pre_classifier(x)))
        logits = self.classifier(x)
        if self.toxic_classifier is not None:
            # Log-probabilities whose 1 - P(safe) is the guard's toxic score.
            logits = _mix_toxic(
                logits,
                self.toxic_classifier(pooled),
                torch.tensor(self._safe, device=logits.device),
                self.config.toxic_score_weight,
            )
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
