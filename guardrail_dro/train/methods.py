"""The method table: every method = a target source x a classifier loss.

The trainer looks a method up here once, when it is built, and its loop only
sequences the two parts; adding a method is adding a row (and, for a new kind of
target or loss, one small class in targets.py, upper_risks.py or losses.py).
The drawing below is for readers; TABLE is the table (tests/train/test_methods.py
checks that each drawn row names its row's classes).

=============  ==============================================  ====================
method         target source (targets of a training item)      classifier loss
=============  ==============================================  ====================
ours           UnrolledRisk: s_phi(x); upper risk = classifier  MeanLoss
               CE on valid after a one-step unrolled update
ours-agree     AgreementRisk: s_phi(x); upper risk = -log       MeanLoss
               s(x)[y] on valid
soft           UniformSoft: uniform over the annotators        MeanLoss
mv             MajorityVote (plurality, ties shared)            MeanLoss
ds             DawidSkene posteriors (crowd-kit)                MeanLoss
dro-mv         MajorityVote                                     GroupDROLoss
best-single    SingleAnnotator, once per annotator; keeps the   MeanLoss
               classifier best on valid (worst group)
gold           ValidGold: 80 % of valid, selected on the rest   MeanLoss
single:<a>     SingleAnnotator: annotator <a>'s labels          MeanLoss
teacher:<a>    TeacherTargets: the probabilities of the trained  MeanLoss
               model in folder <a> on train and on word-noise
               copies of it (teacher.py)
=============  ==============================================  ====================

``ours`` is the classifier-risk variant because it won on the validation split of
toxic-questions (worst-group 0.615 vs 0.578 for the agreement risk, 2026-11-23); the
estimator's capacity is chosen by cross-validation inside valid (rank_selection.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.losses import ClassifierLoss, GroupDROLoss, MeanLoss
from guardrail_dro.train.targets import (
    DawidSkene,
    MajorityVote,
    SingleAnnotator,
    TargetSource,
    UniformSoft,
    ValidGold,
)
from guardrail_dro.train.teacher import TeacherTargets
from guardrail_dro.train.upper_risks import AgreementRisk, UnrolledRisk

__all__ = ["METHODS", "TABLE", "WITH_ARGUMENT", "Method", "lookup"]


@dataclass(frozen=True)
class Method:
    """A row of the method table."""

    targets: type[TargetSource]
    loss: type[ClassifierLoss]
    argument: str | None = None
    """For a method written ``name:<argument>``, what the argument names."""
    best_of: str | None = None
    """Orchestration instead of one run: train ``<best_of>:<a>`` for every annotator a
    and keep the classifier best on valid (``best-single`` over ``single:<a>``)."""

    def build(self, argument: str | None = None) -> tuple[TargetSource, ClassifierLoss]:
        """Fresh parts for one training run."""
        return self.targets.from_argument(argument), self.loss()


TABLE: dict[str, Method] = {
    "ours": Method(UnrolledRisk, MeanLoss),
    "ours-agree": Method(AgreementRisk, MeanLoss),
    "soft": Method(UniformSoft, MeanLoss),
    "mv": Method(MajorityVote, MeanLoss),
    "ds": Method(DawidSkene, MeanLoss),
    "dro-mv": Method(MajorityVote, GroupDROLoss),
    "best-single": Method(SingleAnnotator, MeanLoss, best_of="single"),
    "gold": Method(ValidGold, MeanLoss),
}
"""The built-in methods, in the order the benchmark runs them."""

WITH_ARGUMENT: dict[str, Method] = {
    "single": Method(SingleAnnotator, MeanLoss, argument="annotator"),
    "teacher": Method(TeacherTargets, MeanLoss, argument="model dir"),
}
"""Methods written ``name:<argument>``, e.g. ``single:gpt-4``."""

METHODS: tuple[str, ...] = tuple(TABLE)
"""Built-in methods; ``single:<annotator>`` trains on one annotator's labels."""


def lookup(name: str) -> tuple[Method, str | None]:
    """The table row of a method name and its argument (the part after ``:``, if any).

    Raises:
        ConfigError: an unknown method (the message lists the known ones).
    """
    if name in TABLE:
        return TABLE[name], None
    base, colon, argument = name.partition(":")
    if colon and argument and base in WITH_ARGUMENT:
        return WITH_ARGUMENT[base], argument
    written = " or ".join(f"{k}:<{m.argument}>" for k, m in WITH_ARGUMENT.items())
    raise ConfigError(f"unknown method {name!r}: choose one of {', '.join(METHODS)} or {written}")
