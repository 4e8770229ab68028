"""``TrainConfig``: everything that defines a training run, recorded in the model manifest.

Its own module so that the feature sources (features.py) and the trainer can both read
it without importing each other. The method names it accepts are those of the method
table (methods.py), so a new method needs no change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.methods import lookup
from guardrail_dro.train.unread import unread_settings

__all__ = ["HEAD_LR_FULL", "LP_COLLAPSE", "TrainConfig"]

HEAD_LR_FULL = 1e-3
"""The head's LR in full mode. The head is fresh and its inputs are unit-norm pooled
embeddings: at the encoder's 3e-5 (the old single LR) its logits stayed near zero for a
whole run and every method predicted a handful of classes (valid worst-group 0.000);
see CHANGELOG for the measurements that chose this value."""

LP_COLLAPSE: dict[str, float] = {"accuracy": 0.05, "worst_group_accuracy": 0.10}
"""Full mode, ``lp_select="tuned"``: how far below the LP stage on valid the chosen tuned
epoch must fall for the LP stage to be kept instead. A guard against a collapse (the
old full mode ended at worst group 0.000), not a selection: on valid's 1,000 items an
accuracy moves by about 0.015 a standard error and a worst group of 45-95 items by
0.05-0.07, and the LP stage's in-sample lead was up to 0.04 in worst group."""


class TrainConfig(BaseModel):
    """Everything that defines a training run; recorded in the model manifest."""

    model_config = ConfigDict(extra="forbid")
    _given: frozenset[str] | None = PrivateAttr(None)
    """The settings a ``model_copy`` was given (its ``update``): what ``for_run`` judges
    in a copy. None in a config built or validated, judged on ``model_fields_set``."""

    method: str = Field("ours", description="One of METHODS or 'single:<annotator id>'.")
    mode: Literal["frozen", "full"] = Field(
        "frozen",
        description="frozen: heads on cached embeddings (CPU, seconds); "
        "full: the frozen fit, then fine-tune head + encoder from it (LP-FT; minutes on a CPU).",
    )
    backbone: str | None = Field(None, description="HF folder or name; None = all-MiniLM-L6-v2.")
    max_length: int = Field(128, ge=8, description="Tokens per text for the encoder.")
    epochs: int | None = Field(None, ge=1, description="Default: 40 frozen, 3 full.")
    batch_size: int | None = Field(None, ge=1, description="Default: 128 frozen, 32 full.")
    lr: float | None = Field(
        None,
        gt=0,
        description="Classifier head LR; default 1e-2 frozen (chosen on valid), HEAD_LR_FULL full.",
    )
    encoder_lr: float = Field(
        3e-5, gt=0, description="Encoder LR in full mode (its own AdamW parameter group)."
    )
    warmup: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Full mode: share of the steps with a linear LR warmup, then linear decay "
        "to 0 (both parameter groups). Frozen mode keeps a constant LR.",
    )
    probe_epochs: int = Field(
        40,
        ge=0,
        description="Full mode: epochs of the LP stage, the same method's frozen-mode fit "
        "on the pre-trained encoder's cached embeddings (head, and for ours its estimator), "
        "which fine-tuning starts from (LP-FT) and falls back to where the tuned epochs "
        "collapse (lp_select); 0 = fine-tune from a fresh head.",
    )
    lp_select: Literal["tuned", "compete"] = Field(
        "tuned",
        description="Full mode with an LP stage: which checkpoint is kept. tuned = the best "
        "tuned epoch on valid; the LP stage only where the tuned epochs collapsed (the "
        "chosen one more than LP_COLLAPSE below it on valid accuracy or worst-group "
        "accuracy). compete = the LP stage competes with the tuned epochs on the same key "
        "(before 2026-12-05). Why not compete: the LP stage's valid score is in-sample (its "
        "epoch, of 40, and ours' estimator were chosen on valid), so it won on that bias. "
        "Fit and selected on one half of valid, scored on the other (MiniLM, ours, top 2 "
        "layers, 2 seeds x 2 folds, benchmarks/bench_lp_select.py): compete kept the LP "
        "stage 3 times in 4 and scored worst group 0.516 / accuracy 0.683 on the other "
        "half, tuned 0.535 / 0.688.",
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Full mode: clip the gradient norm of head + encoder; None = off."
    )
    weight_decay: float = Field(1e-4, ge=0)
    head_hidden: int = Field(0, ge=0, description="0 = linear head (logistic regression).")
    dropout: float = Field(0.1, ge=0, lt=1)
    estimator_lr: float = Field(3e-3, gt=0, description="Soft-label estimator LR (Adam).")
    estimator_rank: int | None = Field(
        None,
        ge=0,
        description="Item/annotator space size; 0 = one global weight per annotator; "
        "None = chosen among 0, 4, 32 by 2-fold cross-validation inside valid.",
    )
    estimator_weight_decay: float = Field(
        0.0, ge=0, description="Decoupled weight decay: shrinks the weights toward uniform."
    )
    group_step: float = Field(0.05, ge=0, description="eta_q of the GroupDRO update.")
    inner_lr: float = Field(1.0, gt=0, description="Unrolled step size (ours).")
    estimator_steps: int = Field(1, ge=1, description="Estimator steps per classifier step.")
    drop_overlap: bool = Field(
        True, description="Drop train items whose normalised text is also in valid."
    )
    background_safe: list[str] = Field(
        default_factory=list,
        description="Background-safe text: bundled set names (convabuse-background, "
        "everyday-requests, assistant-replies) or files (.txt / .csv / .jsonl); every "
        "text trains as the schema's safe class (train/background.py).",
    )
    background_weight: float | None = Field(
        None,
        gt=0,
        description="Loss weight of a background item; None = chosen on valid "
        "and held-out background (train/background.py RULE).",
    )
    background_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Share of the background's train part used; None = chosen with the weight.",
    )
    background_harmful: list[str] = Field(
        default_factory=list,
        description="Harmful-by-construction text: bundled set names (harmful-requests) or "
        "files, read like background_safe; every text trains as 'not safe' (loss "
        "-log(1 - P(safe)): mass off the safe classes, no unsafe class chosen). Needs "
        "background_safe too (train/background.py).",
    )
    harmful_weight: float = Field(
        1.0, gt=0, description="Loss weight of a harmful background text (fixed, not chosen)."
    )
    toxic_score: Literal["choose", "class-head"] = Field(
        "choose",
        description="choose: the guard's toxic score is 1 - P(safe), a binary head or their "
        "mean, by valid ROC AUC (train/toxic_score.py); class-head: always 1 - P(safe) "
        "(the candidates are still measured and recorded).",
    )
    seed: int = Field(0, ge=0, description="numpy's generators take no negative seed.")
    average_seeds: int = Field(
        1,
        ge=1,
        le=32,
        description="Frozen mode: train k = this many seeds (k x seed ... k x seed + k - 1, "
        "so different seeds never share one) and keep one head, their average (the mean of "
        "their logits; train/seed_average.py). Costs k trainings, nothing at inference for "
        "a linear head (a k-times wider hidden layer otherwise).",
    )
    embed_batch_size: int = Field(64, ge=1)
    cache_dir: Path | None = Field(
        None, description="Embedding cache; default $GUARDRAIL_DRO_CACHE or ~/.cache/guardrail-dro."
    )
    device: str | None = Field(None, description="cpu, cuda, cuda:1...; default: best available.")
    progress: bool = True
    estimator_shrinkage: float | None = Field(
        None,
        ge=0,
        description="Prior precision, in valid items' worth, pulling each annotator's own "
        "weight toward the shared model (model.WeightEstimator); None = chosen with the "
        "rank by 2-fold cross-validation inside valid among 2 and 20 (20 when "
        "estimator_rank is set, which skips the cross-validation).",
    )
    estimator_reliability: bool = Field(
        True,
        description="Give the estimator each annotator's label-only trust (a Dawid-Skene "
        "confusion shrunk toward the crowd's, train/reliability.py) and per-label terms.",
    )

    use_confidence: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Let the estimator read the annotators' confidences (a term per "
        "annotator, model.WeightEstimator): auto = as 2-fold CV inside valid prefers, "
        "chosen with the rank; off without a fit when no annotation carries one.",
    )
    use_rationale: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Let the estimator read the annotators' rationales (embedded by the "
        "same encoder, train/rationale.py): auto = as 2-fold CV inside valid prefers, "
        "chosen with the rank after the confidence term; off without a fit when no "
        "annotation carries one.",
    )
    ft_estimator: Literal["freeze", "learn"] = Field(
        "freeze",
        description="Full mode, learned methods: whether the soft-label estimator keeps "
        "taking upper-level steps on valid while the encoder fine-tunes (learn) or the LP "
        "stage's soft labels stay the targets (freeze). Why freeze: valid also chooses "
        "between the LP stage and the tuned epochs, and an estimator that keeps fitting "
        "valid makes that choice in-sample (it kept tuned epochs whose test worst group "
        "fell; README, Modes). Without an LP stage (probe_epochs=0) there is no fit to "
        "freeze: the estimator learns.",
    )
    train_layers: int | None = Field(
        None,
        ge=1,
        description="Full mode: fine-tune only the top N transformer layers; the word "
        "embeddings and the layers below stay as pre-trained and get no gradient, which "
        "cuts a step's backward pass (None = every layer).",
    )

    @model_validator(mode="before")
    @classmethod
    def _numbers_not_text(cls, data: Any) -> Any:
        # Lax mode read epochs="3" as 3 and epochs=True as 1 without a word. Not
        # strict=True: that also refused numpy's integers (np.int64(3) from a grid), which
        # lax mode reads exactly; a manifest's JSON numbers load either way.
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                numeric = field is not None and field.annotation in _NUMBERS
                if numeric and isinstance(value, str | bytes | bool):
                    raise ValueError(
                        f"{name} must be a number, not {type(value).__name__} {value!r}"
                    )
        return data

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        lookup(v)  # raises ConfigError (a ValueError: pydantic names the field) listing them
        return v

    @field_validator("device")
    @classmethod
    def _a_device(cls, v: str | None) -> str | None:
        # Spelling only: whether the device is present is checked where it is used
        # (devices.pick_device), since a config may be written for another machine.
        if v is not None:
            import torch

            try:
                torch.device(v)
            except RuntimeError:
                raise ValueError(
                    f"{v!r} is not a device (--device): use cpu, cuda, cuda:<index> or mps"
                ) from None
        return v

    @model_validator(mode="after")
    def _train_layers_in_full_mode(self) -> TrainConfig:
        if self.train_layers is not None and self.mode != "full":
            raise ValueError(
                "train_layers (--train-layers) chooses the encoder layers full mode "
                "fine-tunes; frozen mode trains no encoder layer: add --mode full or drop it"
            )
        return self

    @model_validator(mode="after")
    def _harmful_needs_safe(self) -> TrainConfig:
        if self.background_harmful and not self.background_safe:
            raise ValueError(
                "background_harmful needs background_safe too: harmful text alone teaches "
                "the guard that whatever the dataset lacks is harmful, so it blocks "
                "ordinary chat (add e.g. --background-safe everyday-requests)"
            )
        return self

    def resolved(self, name: str) -> int | float:
        """``epochs``, ``batch_size`` or ``lr`` as set, else the default of the mode."""
        defaults = {"epochs": (40, 3), "batch_size": (128, 32), "lr": (1e-2, HEAD_LR_FULL)}
        v = getattr(self, name)
        return defaults[name][self.mode == "full"] if v is None else v

    @property
    def uses_estimator(self) -> bool:
        """Whether the method learns a soft-label weight estimator (ours, ours-agree)."""
        return lookup(self.method)[0].targets.learned

    def for_run(self) -> TrainConfig:
        """This config, once no setting its caller gave is one the run would not read
        (``unread_settings``); ``BiLevelTrainer`` takes its config through this. Why:
        such a setting trained a model identical to one without it, and the manifest
        recorded it as if it had trained.

        What the caller gave: ``model_fields_set`` in a config built with keywords or
        validated (a stored manifest's config loads as it is and is judged once it
        trains); in a ``model_copy``, the settings of its ``update``. The rest of a copy
        is its original's: the trainer's LP stage copies a full-mode config into frozen
        mode, and a bench copies one config per method (use_confidence 'on' is read by
        ours, not by mv); neither is the caller giving a setting its run ignores.

        Raises:
            ConfigError: naming each such setting and what it needs.
        """
        given = self.model_fields_set if self._given is None else self._given
        unread = unread_settings(self, given)
        if unread:
            shown = ", ".join(f"{u.setting} ({u.describe(self)})" for u in unread)
            raise ConfigError(
                f"TrainConfig settings this run would ignore: {shown}; leave them unset "
                "or give the run what they need"
            )
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """pydantic's copy, recording which settings ``update`` gives (``for_run``)."""
        out = super().model_copy(update=update, deep=deep)
        out._given = frozenset(update or ())
        return out

    def __eq__(self, other: object) -> bool:
        # The fields, as pydantic compares them, without _given: which settings a copy
        # was given is no part of the run (a copy equals a config built the same).
        if not isinstance(other, TrainConfig):
            return NotImplemented
        return self.__dict__ == other.__dict__


_NUMBERS = (int, float, int | None, float | None)
"""The annotations of TrainConfig's numeric fields (``_numbers_not_text``)."""
