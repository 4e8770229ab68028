"""The guard's side of an escalation band: the guard as a band applies it
(``band_guard``), its safe classes, the schema its judge is asked with, and which guard
a band was chosen for (``GuardIdentity``), with the note when it is applied to another.

A band's edges are toxic scores of one exported model at one precision: the int8 model's
scores are not the fp32 model's, and a retrained export's are another model's. So a band
records the guard's identity (its ``guard.json`` digest and the precision it ran), and
``EscalatingGuard`` warns (``BandMismatchWarning``) when it is applied to another; it
does not refuse, as the band may still be the best one at hand.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError

if TYPE_CHECKING:
    from guardrail_dro.serve.guard import Guard

__all__ = [
    "BandMismatchWarning",
    "GuardIdentity",
    "band_guard",
    "guard_safe_classes",
    "judge_schema",
    "other_guard_note",
    "warn_other_guard",
]


class GuardIdentity(BaseModel):
    """Which guard a band's scores came from (None: not known, e.g. ``from_scorer``)."""

    model_config = ConfigDict(frozen=True)

    manifest_sha256: str | None = Field(
        None, description="The exported guard's guard.json digest (``export`` prints it)."
    )
    precision: str | None = Field(None, description="The model variant run: fp32, int8, fp16.")

    @classmethod
    def of(cls, guard: Guard) -> GuardIdentity | None:
        """``guard``'s identity; None for a guard not loaded from an artifact."""
        digest = guard.artifact.manifest.manifest_sha256 if guard.artifact else None
        if digest is None and guard.precision is None:
            return None
        return cls(manifest_sha256=digest, precision=guard.precision)


class BandMismatchWarning(UserWarning):
    """A band applied to another guard than the one it was chosen for."""


def other_guard_note(chosen: GuardIdentity | None, guard: Guard) -> str | None:
    """What to say when a band chosen for ``chosen`` is applied to ``guard`` (None: the
    same guard, or either side not known: a band file written before bands recorded
    their guard, a guard not loaded from an artifact)."""
    now = GuardIdentity.of(guard)
    if chosen is None or now is None:
        return None
    problems = []
    if chosen.precision and now.precision and chosen.precision != now.precision:
        problems.append(f"chosen for the {chosen.precision} model; this guard runs {now.precision}")
    sha, now_sha = chosen.manifest_sha256, now.manifest_sha256
    if sha and now_sha and sha != now_sha:
        problems.append(
            f"chosen for another export (guard.json sha256 {sha[:12]}; this one {now_sha[:12]})"
        )
    if not problems:
        return None
    where = guard.artifact.path if guard.artifact else "GUARD"
    return (
        f"the band was {' and '.join(problems)}: its scores differ, so the band's edges may "
        "not send the texts it was chosen to send to the judge (choose a band for this "
        f"guard: guardrail-dro escalation --guard {where} --precision {now.precision} ...)"
    )


def warn_other_guard(chosen: GuardIdentity | None, guard: Guard) -> None:
    """``other_guard_note`` as a ``BandMismatchWarning``, if there is one."""
    note = other_guard_note(chosen, guard)
    if note is not None:
        warnings.warn(note, BandMismatchWarning, stacklevel=3)


def band_guard(guard: Guard, threshold: float) -> Guard:
    """``guard`` deciding on its toxic score alone, at ``threshold``: per-class thresholds
    of the harmful classes off (1.0), no operating-point target, no raising. With the
    per-class triggers off, a long text's deciding window is its most toxic one, so the
    score a band is chosen on (``calibration_arrays``) is the score it is applied to
    (``EscalatingGuard``)."""
    safe = set(guard_safe_classes(guard))
    off = {c: 1.0 for c in guard.labels if c not in safe}
    policy = dataclasses.replace(
        guard.policy,
        thresholds=off,
        toxic_threshold=threshold,
        target_recall=None,
        target_fpr=None,
        raise_on_violation=False,
    )
    return guard.with_policy(policy)


def guard_safe_classes(guard: Guard) -> tuple[str, ...]:
    """The guard's safe classes (from its decision rule).

    Raises:
        ConfigError: the guard has none: its toxic score is always 0, nothing to escalate.
    """
    safe = tuple(c for c, f in zip(guard.labels, guard.rule.safe, strict=True) if f)
    if not safe:
        raise ConfigError("the guard has no safe class: it has no toxic score to escalate on")
    return safe


def judge_schema(guard: Guard) -> LabelSchema:
    """The label schema a judge is asked with: the guard's classes, its safe classes and
    their readable names (from the decision rule in force).

    Raises:
        ConfigError: the guard has no safe class.
    """
    names = {c: n for c, n in zip(guard.labels, guard.rule.names, strict=True) if n != c}
    return LabelSchema(
        classes=tuple(guard.labels), safe=guard_safe_classes(guard), descriptions=names
    )
