"""Which settings a training run reads: ``unread_settings``, the one place that knows.

A setting the run does not read (full mode's encoder LR in frozen mode, a background
weight without background text, an estimator switch for a method without an estimator)
trained a model identical, weight for weight, to one without it, and the manifest
recorded it as if it had trained. The Python API refuses them when a ``TrainConfig``
becomes a run (``TrainConfig.for_run``), the CLI when it reads its options
(``TrainingOptions.check_read``), both through this function; each words the message
in its own names (fields here, options there).

Its own module so that config.py stays the fields and their validation; it reads the
config through its attributes only, so it needs no import of config.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from guardrail_dro.train.config import TrainConfig

__all__ = ["ESTIMATOR_SWITCHES", "FULL_MODE_ONLY", "NEEDS", "Unread", "unread_settings"]

FULL_MODE_ONLY = (
    "encoder_lr",
    "warmup",
    "probe_epochs",
    "max_grad_norm",
    "lp_select",
    "ft_estimator",
)
"""Settings only full mode reads: the encoder's optimiser and schedule, the LP stage,
the estimator while the encoder tunes (``train_layers`` has its own validator)."""

ESTIMATOR_SWITCHES = {"use_confidence": "on", "use_rationale": "on", "ft_estimator": "learn"}
"""Settings of the soft-label estimator and the value a method without one ignores. Only
that value: 'off' is what such a method does anyway, and a comparison that sets it for
every method (benchmarks/bench_annotation_signals.py) means nothing wrong."""

NEEDS = {
    "full": "full mode only; mode={mode!r}",
    "lp": "full mode's LP stage only; probe_epochs=0",
    "background_safe": "needs background_safe",
    "background_harmful": "needs background_harmful",
    "estimator": "the soft-label estimator's; method {method!r} learns none "
    "(ours and ours-agree do)",
}
"""What each kind of unread setting needs, in TrainConfig's terms (the CLI words its
own with option names: ``TrainingOptions.check_read``)."""


class Unread(NamedTuple):
    """A setting a run would not read and what it needs (a key of ``NEEDS``)."""

    setting: str
    needs: str

    def describe(self, config: TrainConfig) -> str:
        """What it needs, in TrainConfig's terms, for a run of ``config``."""
        return NEEDS[self.needs].format(mode=config.mode, method=config.method)


def unread_settings(
    config: TrainConfig, explicitly_set: Iterable[str], *, per_method: bool = True
) -> list[Unread]:
    """The settings of ``explicitly_set`` that a run of ``config`` would not read: the one
    place that knows (the Python API's ``TrainConfig.for_run`` and the CLI's
    ``TrainingOptions.check_read`` both ask it).

    A setting at its default is never one: whoever spelt out a default changed nothing
    (the CLI passes every option; ``harmful_weight=1.0`` without harmful text is the
    run it would be anyway).

    Args:
        explicitly_set: the settings the caller gave (``config.model_fields_set``).
        per_method: also judge what ``config.method`` reads (its estimator); False for a
            bench's config, whose methods differ in that.
    """
    given = {
        name
        for name in explicitly_set
        if getattr(config, name) != type(config).model_fields[name].default
    }
    out: list[Unread] = []

    def judge(names: Iterable[str], needs: str) -> None:
        out.extend(Unread(n, needs) for n in names if n in given)

    if config.mode != "full":
        judge(FULL_MODE_ONLY, "full")
    elif not config.probe_epochs:
        judge(["lp_select"], "lp")
    if not config.background_safe:
        judge(["background_weight", "background_fraction"], "background_safe")
    if not config.background_harmful:
        judge(["harmful_weight"], "background_harmful")
    if per_method and not config.uses_estimator:
        seen = {u.setting for u in out}
        judge(
            [
                n
                for n, value in ESTIMATOR_SWITCHES.items()
                if getattr(config, n) == value and n not in seen
            ],
            "estimator",
        )
    return out
