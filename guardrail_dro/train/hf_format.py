"""The trained model directory in the Hugging Face format (manifest version 2).

Importing this module registers the ``guardrail_dro`` model type with transformers' Auto
classes, so a trained model directory loads with the stock calls and no extra argument::

    import guardrail_dro.train.hf_format  # registers guardrail_dro with the Auto classes
    from transformers import AutoModelForSequenceClassification, pipeline

    model = AutoModelForSequenceClassification.from_pretrained("runs/model")
    clf = pipeline("text-classification", model="runs/model", truncation=True, top_k=None)

Without guardrail-dro (a machine with only transformers), add ``trust_remote_code=True``
to either call: the directory carries its own ``modeling_guardrail_dro.py``. Why a custom
architecture and why the type is unknown to a bare transformers: see
``guardrail_dro.train.hf_modeling``. ``truncation=True`` cuts texts longer than the
model's ``max_length`` tokens as guardrail-dro does (the tokenizer's
``model_max_length`` is that length); shorter texts score the same without it.

Layout written here (the rest of the directory is ``TrainedModel``'s)::

    config.json               GuardrailDroConfig: encoder config, id2label / label2id,
                              safe labels, normalize, head_hidden, auto_map
    model.safetensors         encoder.* (the encoder's state dict) + classifier.* head
                              (+ toxic_classifier.* when a binary toxic head was chosen)
    modeling_guardrail_dro.py the model code (a copy of hf_modeling.py)
    tokenizer.json, tokenizer_config.json, ...   the encoder's tokenizer

``read_hf_layout`` loads it into our own ``GuardClassifier`` straight from the
safetensors file with strict state-dict loading (a missing or extra weight is an error,
where ``from_pretrained`` would initialise it at random with only a warning).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from guardrail_dro.errors import ArtifactError
from guardrail_dro.train import hf_modeling
from guardrail_dro.train.hf_modeling import (
    MODEL_TYPE,
    GuardrailDroConfig,
    GuardrailDroForSequenceClassification,
)
from guardrail_dro.train.model import ClassifierHead, GuardClassifier, ToxicMix

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from guardrail_dro.data.schema import LabelSchema

__all__ = [
    "HF_FILES",
    "MODELING_FILE",
    "head_state_from_hf",
    "head_state_to_hf",
    "hf_config",
    "read_hf_layout",
    "register_auto_classes",
    "write_hf_layout",
]

MODELING_FILE = "modeling_guardrail_dro.py"
HF_FILES = ("config.json", "model.safetensors", MODELING_FILE)
_MODULE = MODELING_FILE.removesuffix(".py")
TOXIC_PREFIX = "toxic_classifier."
"""Key prefix of the binary toxic head (``ToxicMix.binary``) in model.safetensors."""


def register_auto_classes() -> None:
    """Register ``guardrail_dro`` with ``AutoConfig`` and
    ``AutoModelForSequenceClassification`` (idempotent; done on import)."""
    AutoConfig.register(MODEL_TYPE, GuardrailDroConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(
        GuardrailDroConfig, GuardrailDroForSequenceClassification, exist_ok=True
    )


register_auto_classes()


def _head_linears(head: ClassifierHead) -> list[str]:
    """Names of the head's Linear layers in order (``net.1``, or ``net.1`` and ``net.4``)."""
    return [f"net.{i}" for i, m in enumerate(head.net) if isinstance(m, torch.nn.Linear)]


def head_state_to_hf(head: ClassifierHead) -> dict[str, torch.Tensor]:
    """Our head's weights under the standard names: ``[pre_classifier.*,] classifier.*``."""
    names = _head_linears(head)
    targets = ["classifier"] if len(names) == 1 else ["pre_classifier", "classifier"]
    state = head.state_dict()
    return {
        f"{dst}.{p}": state[f"{src}.{p}"].contiguous()
        for src, dst in zip(names, targets, strict=True)
        for p in ("weight", "bias")
    }


def _hf_head_keys(head: ClassifierHead) -> list[str]:
    one = len(_head_linears(head)) == 1
    return [
        f"{name}.{p}"
        for name in (["classifier"] if one else ["pre_classifier", "classifier"])
        for p in ("weight", "bias")
    ]


def head_state_from_hf(state: dict[str, torch.Tensor], head: ClassifierHead) -> None:
    """Load ``classifier.*`` (+ ``pre_classifier.*``) weights into our head, strictly.

    Raises:
        KeyError: a head tensor is missing (named as in the file).
        RuntimeError: a tensor of the wrong shape.
    """
    keys = _hf_head_keys(head)
    missing = [k for k in keys if k not in state]
    if missing:
        raise KeyError(f"missing tensors {missing}")
    ours = [f"{n}.{p}" for n in _head_linears(head) for p in ("weight", "bias")]
    head.load_state_dict({o: state[k] for o, k in zip(ours, keys, strict=True)}, strict=True)


def hf_config(
    model: GuardClassifier,
    schema: LabelSchema,
    *,
    max_length: int,
    head_hidden: int,
    dropout: float = 0.0,
) -> GuardrailDroConfig:
    """The ``config.json`` of a guard classifier: labels from the schema, auto_map to the
    modeling file written beside it."""
    classes = list(schema.classes)
    cfg = GuardrailDroConfig(
        encoder=model.encoder.config.to_dict(),
        normalize=model.normalize,
        head_hidden=head_hidden,
        classifier_dropout=dropout,
        max_seq_length=max_length,
        safe_labels=list(schema.safe),
        label_descriptions=dict(schema.descriptions),
        toxic_score_weight=model.toxic.weight if model.toxic is not None else 0.0,
        id2label=dict(enumerate(classes)),
        label2id={c: i for i, c in enumerate(classes)},
        problem_type="single_label_classification",
    )
    cfg.architectures = [GuardrailDroForSequenceClassification.__name__]
    cfg.auto_map = {
        "AutoConfig": f"{_MODULE}.{GuardrailDroConfig.__name__}",
        "AutoModelForSequenceClassification": (
            f"{_MODULE}.{GuardrailDroForSequenceClassification.__name__}"
        ),
    }
    return cfg


def write_hf_layout(
    out: Path,
    model: GuardClassifier,
    tokenizer: PreTrainedTokenizerBase,
    schema: LabelSchema,
    *,
    max_length: int,
    head_hidden: int,
    dropout: float = 0.0,
) -> None:
    """Write config.json, model.safetensors, the modeling file and the tokenizer to ``out``.

    The tokenizer is saved with ``model_max_length = max_length`` so that
    ``truncation=True`` cuts where guardrail-dro does.
    """
    from safetensors.torch import save

    cfg = hf_config(model, schema, max_length=max_length, head_hidden=head_hidden, dropout=dropout)
    cfg.save_pretrained(out)
    state = {f"encoder.{k}": v.contiguous() for k, v in model.encoder.state_dict().items()}
    state |= head_state_to_hf(model.head)
    if model.toxic is not None:
        state |= {
            f"{TOXIC_PREFIX}{k}": v.contiguous() for k, v in model.toxic.binary.state_dict().items()
        }
    # As bytes, written with open()'s mode (0666 less the umask): save_file writes the
    # file 0600, and a model trained by one user could not be loaded by another.
    (out / "model.safetensors").write_bytes(save(state, metadata={"format": "pt"}))
    shutil.copyfile(Path(hf_modeling.__file__), out / MODELING_FILE)
    previous = tokenizer.model_max_length
    tokenizer.model_max_length = max_length
    try:
        tokenizer.save_pretrained(out)
    finally:
        tokenizer.model_max_length = previous


def read_hf_layout(
    d: Path,
    *,
    num_classes: int,
    head_hidden: int,
    normalize: bool,
    safe: list[bool] | None = None,
) -> tuple[PreTrainedTokenizerBase, GuardClassifier]:
    """Load a version-2 model directory into our ``GuardClassifier`` (eval mode).

    Raises:
        ArtifactError: config.json is not a guardrail_dro config, or the weights do not
            fit it (missing, extra or mis-shaped tensors).
    """
    from safetensors.torch import load_file

    try:
        cfg = GuardrailDroConfig.from_pretrained(d)
    except (OSError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{d}/config.json: not a guard classifier config: {exc}") from None
    if cfg.model_type != MODEL_TYPE or cfg.encoder is None:
        raise ArtifactError(f"{d}/config.json: model_type must be {MODEL_TYPE!r} with an encoder")
    if cfg.num_labels != num_classes:
        raise ArtifactError(
            f"{d}/config.json has {cfg.num_labels} labels, manifest.json {num_classes} classes"
        )
    state = load_file(d / "model.safetensors")
    encoder = AutoModel.from_config(cfg.encoder)
    prefix = "encoder."
    enc_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    head = ClassifierHead(cfg.encoder.hidden_size, num_classes, head_hidden)
    weight = float(getattr(cfg, "toxic_score_weight", 0.0) or 0.0)
    toxic = None
    if weight > 0:
        if safe is None:
            names: dict[int, str] = dict(cfg.id2label or {})  # type: ignore[assignment]
            safe = [names[i] in cfg.safe_labels for i in range(num_classes)]
        toxic = ToxicMix(cfg.encoder.hidden_size, safe, weight)
    toxic_state = {
        k[len(TOXIC_PREFIX) :]: v for k, v in state.items() if k.startswith(TOXIC_PREFIX)
    }
    extra = [
        k
        for k in state
        if not k.startswith(prefix)
        and k not in _hf_head_keys(head)
        and not (toxic is not None and k.startswith(TOXIC_PREFIX))
    ]
    try:
        if extra:
            raise RuntimeError(f"unexpected tensors {extra}")
        encoder.load_state_dict(enc_state, strict=True)
        head_state_from_hf(state, head)
        if toxic is not None:
            toxic.binary.load_state_dict(toxic_state, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise ArtifactError(f"{d}/model.safetensors does not fit config.json: {exc}") from None
    tokenizer = AutoTokenizer.from_pretrained(d)
    return tokenizer, GuardClassifier(
        encoder.eval(),
        head.eval(),
        normalize=normalize,
        toxic=toxic.eval() if toxic is not None else None,
    )
