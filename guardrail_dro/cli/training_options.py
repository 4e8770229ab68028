"""The training options that ``train`` and ``bench`` share (``TrainingOptions``): what
trains, on what, with which background text and annotator signals.

Its own module so that cli/train.py stays the commands.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from guardrail_dro.cli.options import OptionGroup

if TYPE_CHECKING:
    from guardrail_dro.train.trainer import TrainConfig

__all__ = ["TRAINING_PANEL", "TrainingOptions"]

TRAINING_PANEL = "Training"
Signal = Literal["auto", "on", "off"]
"""Whether the estimator reads an annotator signal (confidence, rationale)."""
_T = TRAINING_PANEL
Mode = Annotated[
    str,
    typer.Option(
        "--mode",
        help="frozen: heads on cached embeddings (CPU, "
        "seconds); full: the frozen fit first, then fine-tune head + encoder from it, "
        "keeping whichever is best on valid (LP-FT; minutes per run on a CPU, faster on "
        "a GPU).",
        rich_help_panel=_T,
    ),
]
Backbone = Annotated[
    str | None,
    typer.Option(
        "--backbone",
        help="Hugging Face encoder folder or name (default: embedded all-MiniLM-L6-v2).",
        rich_help_panel=_T,
    ),
]
Epochs = Annotated[
    int | None, typer.Option("--epochs", help="Default 40 frozen / 3 full.", rich_help_panel=_T)
]
EncoderLr = Annotated[
    float | None,
    typer.Option(
        "--encoder-lr",
        help="Full mode: the encoder's learning rate (its own AdamW group; the head has "
        "1e-3). Default 3e-5, the usual rate for fine-tuning a pre-trained encoder; a "
        "longer --epochs may want more (README, Modes: what valid preferred).",
        rich_help_panel=_T,
    ),
]
TrainLayers = Annotated[
    int | None,
    typer.Option(
        "--train-layers",
        min=1,
        help="Full mode: fine-tune only the top N encoder layers (the rest stay "
        "pre-trained; a shorter backward pass). Default: every layer.",
        rich_help_panel=_T,
    ),
]
FtEstimator = Annotated[
    Literal["freeze", "learn"],
    typer.Option(
        "--ft-estimator",
        help="Full mode, learned methods (ours, ours-agree): freeze = the LP stage's soft "
        "labels are the fine-tuning's targets, so valid only selects the epoch; learn = "
        "the estimator keeps fitting valid while the encoder tunes (the bi-level upper "
        "step on the tuned features; valid's choice of epoch is then in-sample).",
        rich_help_panel=_T,
    ),
]
LpSelect = Annotated[
    Literal["tuned", "compete"],
    typer.Option(
        "--lp-select",
        help="Full mode: tuned = keep the best fine-tuned epoch on valid, the LP stage only "
        "if they collapsed (far below it on valid); compete = the LP stage competes on the "
        "same key, though its valid score is in-sample (its epoch was chosen on valid).",
        rich_help_panel=_T,
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Embedding cache folder (default $GUARDRAIL_DRO_CACHE or ~/.cache/guardrail-dro).",
        rich_help_panel=_T,
    ),
]
KeepOverlap = Annotated[
    bool,
    typer.Option(
        "--keep-overlap",
        help="Keep training items whose text also appears in valid/test (by default they "
        "are dropped: the upper level and model selection would see their own training "
        "items).",
        rich_help_panel=_T,
    ),
]
BackgroundSafe = Annotated[
    list[str] | None,
    typer.Option(
        "--background-safe",
        help="Ordinary text that is safe by construction, trained as the safe class: a "
        "bundled set (convabuse-background: non-abusive chat turns; everyday-requests: "
        "ordinary questions to an assistant; assistant-replies: ordinary assistant "
        "replies) or a file (.txt one text per line, .csv with "
        "a 'text' column, .jsonl). Repeatable. 1 text in 5 is held out to choose the "
        "weight and amount and to measure how much ordinary text the guard blocks.",
        rich_help_panel=_T,
    ),
]
BackgroundWeight = Annotated[
    float | None,
    typer.Option(
        "--background-weight",
        help="Loss weight of a background text (default: chosen on valid and held-out "
        "background among 1, 2, 4).",
        rich_help_panel=_T,
    ),
]
BackgroundFraction = Annotated[
    float | None,
    typer.Option(
        "--background-fraction",
        help="Share of the background used, in (0, 1] (default: chosen with the weight "
        "among 0.5, 1).",
        rich_help_panel=_T,
    ),
]
BackgroundHarmful = Annotated[
    list[str] | None,
    typer.Option(
        "--background-harmful",
        help="Text that is harmful by construction, trained as 'not safe' (its mass moved "
        "off the safe classes, no unsafe class claimed): the bundled harmful-requests "
        "(requests across a standard hazard taxonomy) or a file, read like "
        "--background-safe. Repeatable. Needs --background-safe too. 1 text in 5 is held "
        "out to measure how much of it the guard blocks.",
        rich_help_panel=_T,
    ),
]
HarmfulWeight = Annotated[
    float,
    typer.Option("--harmful-weight", help="Loss weight of a harmful text.", rich_help_panel=_T),
]
Device = Annotated[
    str | None,
    typer.Option(
        "--device", help="cpu, cuda, cuda:1 (default: best available).", rich_help_panel=_T
    ),
]


Confidence = Annotated[
    Signal,
    typer.Option(
        "--confidence",
        help="Whether the soft-label estimator reads the annotators' confidences (a "
        "'confidence' column, 0..1: LLM annotations from `annotate` carry one): auto = "
        "where 2-fold cross-validation inside valid says it helps; on; off.",
        rich_help_panel=_T,
    ),
]
Rationale = Annotated[
    Signal,
    typer.Option(
        "--rationale",
        help="Whether the soft-label estimator reads the annotators' rationales (a "
        "'rationale' column, embedded by the same encoder): auto = where 2-fold "
        "cross-validation inside valid says it helps; on; off.",
        rich_help_panel=_T,
    ),
]


_OPTION_NAMES = {
    "encoder_lr": "--encoder-lr",
    "ft_estimator": "--ft-estimator learn",
    "lp_select": "--lp-select compete",
    "background_weight": "--background-weight",
    "background_fraction": "--background-fraction",
    "harmful_weight": "--harmful-weight",
    "use_confidence": "--confidence on",
    "use_rationale": "--rationale on",
}
"""The option (and value) that sets each TrainConfig field ``check_read`` may refuse."""

_OPTION_NEEDS = {
    "full": "full mode's (frozen mode tunes no encoder)",
    "lp": "needs the LP stage (probe_epochs > 0)",
    "background_safe": "needs --background-safe",
    "background_harmful": "needs --background-harmful",
    "estimator": "the soft-label estimator's, and method {} learns none (ours and ours-agree do)",
}
"""``train.unread.NEEDS`` in option names."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingOptions(OptionGroup):
    """What train and bench share of a ``TrainConfig``: the ``Training`` options."""

    mode: Mode = "frozen"
    backbone: Backbone = None
    epochs: Epochs = None
    encoder_lr: EncoderLr = None
    train_layers: TrainLayers = None
    ft_estimator: FtEstimator = "freeze"
    lp_select: LpSelect = "tuned"
    cache_dir: CacheDir = None
    keep_overlap: KeepOverlap = False
    device: Device = None
    background_safe: BackgroundSafe = None
    background_weight: BackgroundWeight = None
    background_fraction: BackgroundFraction = None
    background_harmful: BackgroundHarmful = None
    harmful_weight: HarmfulWeight = 1.0
    confidence: Confidence = "auto"
    rationale: Rationale = "auto"

    def check_read(self, method: str | None = None, average_seeds: int = 1) -> None:
        """Refuse options the run would not read (frozen mode and full mode's options,
        background settings without that background, an estimator signal turned on for
        a method without an estimator): they were accepted, ignored, and recorded in the
        manifest as if they had trained. Which ones: ``train.unread.unread_settings``,
        as the Python API's ``TrainConfig.for_run`` asks it; worded here in option names.

        Raises:
            ConfigError: naming each such option and what it needs.
        """
        from guardrail_dro.errors import ConfigError
        from guardrail_dro.train.config import TrainConfig
        from guardrail_dro.train.unread import unread_settings

        if self.mode == "full" and average_seeds > 1:  # else refused once data was read
            raise ConfigError(
                f"--average-seeds {average_seeds} averages heads on one frozen encoder; in "
                "full mode every seed fine-tunes its own: use --average-seeds 1 with --mode full"
            )
        given: dict[str, Any] = {
            "mode": self.mode,
            "ft_estimator": self.ft_estimator,
            "lp_select": self.lp_select,
            "background_weight": self.background_weight,
            "background_fraction": self.background_fraction,
            "harmful_weight": self.harmful_weight,
            "use_confidence": self.confidence,
            "use_rationale": self.rationale,
        }
        if self.encoder_lr is not None:  # unset is None here, TrainConfig's default there
            given["encoder_lr"] = self.encoder_lr
        # model_construct: no validation, so a value out of range is still named by
        # TrainConfig itself, after this (as before).
        cfg = TrainConfig.model_construct(
            **given,
            method=method or "ours",
            background_safe=list(self.background_safe or []),
            background_harmful=list(self.background_harmful or []),
        )
        groups: dict[str, list[str]] = {}
        for u in unread_settings(cfg, given, per_method=method is not None):
            groups.setdefault(u.needs, []).append(_OPTION_NAMES[u.setting])
        if groups:
            needs = {**_OPTION_NEEDS, "estimator": _OPTION_NEEDS["estimator"].format(method)}
            shown = "; ".join(f"{', '.join(names)}: {needs[k]}" for k, names in groups.items())
            raise ConfigError(f"options the run would ignore: {shown}")

    def config(self, **run: Any) -> TrainConfig:
        """The ``TrainConfig`` of these options and the command's own fields (``run``:
        method, seed).

        Raises:
            pydantic.ValidationError: a value out of range (``main`` names the field).
            DataError: a --background-safe source that cannot be read (checked here,
                before any data is read or model loaded).
            ConfigError: a --device this machine does not have (checked here too), or an
                option the run would not read (``check_read``).
        """
        from guardrail_dro.data.background import load_background
        from guardrail_dro.train.devices import pick_device
        from guardrail_dro.train.trainer import TrainConfig

        self.check_read(run.get("method"), run.get("average_seeds", 1))
        if self.device is not None:
            pick_device(self.device)
        for sources, bad in ((self.background_safe, False), (self.background_harmful, True)):
            if sources:
                load_background(sources, harmful=bad)
        if self.encoder_lr is not None:  # unset: TrainConfig's default (one place for it)
            run = {"encoder_lr": self.encoder_lr, **run}
        return TrainConfig(
            background_harmful=list(self.background_harmful or []),
            harmful_weight=self.harmful_weight,
            background_safe=list(self.background_safe or []),
            background_weight=self.background_weight,
            background_fraction=self.background_fraction,
            mode=self.mode,
            backbone=self.backbone,
            epochs=self.epochs,
            train_layers=self.train_layers,
            ft_estimator=self.ft_estimator,
            lp_select=self.lp_select,
            cache_dir=self.cache_dir,
            device=self.device,
            drop_overlap=not self.keep_overlap,
            use_confidence=self.confidence,
            use_rationale=self.rationale,
            **run,
        )
