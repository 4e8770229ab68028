"""The best-single baseline: one classifier per annotator, the best on valid kept.

``best-single`` (and any method whose table row names ``best_of``) is a meta-fit: it
runs the trainer once per candidate annotator as ``<base>:<annotator>`` and keeps the
classifier that does best on the validation split, the same selection every model
here gets (``select_key``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import DataError
from guardrail_dro.train.baselines import SINGLE_MIN_ITEMS, single_candidates
from guardrail_dro.train.metrics import Metrics
from guardrail_dro.train.result import TrainResult

if TYPE_CHECKING:
    from guardrail_dro.train.trainer import BiLevelTrainer

__all__ = ["best_of_annotators", "choice_note", "select_key"]


def select_key(m: Metrics) -> tuple[float, float]:
    """Model selection on valid: worst-group accuracy (accuracy without groups), then
    accuracy; rounded so that float noise cannot decide between equal models."""
    worst = m.worst_group_accuracy if m.worst_group_accuracy is not None else m.accuracy
    return (round(worst, 6), round(m.accuracy, 6))


def choice_note(method: str, name: str, scores: Mapping[str, float], *, grouped: bool) -> str:
    """The note saying which annotator ``method`` chose and by what: the trainer's fit
    and the bench's (``bench_runs``) say it alike. It names the score ``select_key``
    ranked by: accuracy when valid has no groups (it said "worst-group" there), and
    accuracy on a tie, so equal scores side by side read as no coin toss."""
    shown = ", ".join(f"{a} {v:.3f}" for a, v in scores.items())
    how = (
        "valid worst-group accuracy (ties: accuracy)"
        if grouped
        else "valid accuracy (valid has no groups)"
    )
    return f"{method} chose {name!r} by {how} ({shown})"


def best_of_annotators(
    trainer: BiLevelTrainer, train: AnnotatedDataset, valid: AnnotatedDataset, base: str
) -> TrainResult:
    """Train ``<base>:<a>`` on each candidate annotator alone; keep the classifier best
    on valid (worst group).

    Chosen like every other model here, by the classifier's validation worst-group
    accuracy, not by the annotator's raw label accuracy: a consistent annotator can
    teach a better classifier than a more accurate but noisier one. Memory stays flat
    in the number of annotators: only the best run so far is kept (a run holds its
    features and classifier), and a large crowd is cut to ``SINGLE_CANDIDATES``
    candidates first (``baselines.single_candidates``; the notes say who was skipped),
    and an annotator that gave one label only is no candidate.
    """
    t0 = time.perf_counter()
    names = train.annotators
    cols, skipped = single_candidates(
        train.label_matrix(), train.schema.num_classes, names=train.annotators
    )
    if not cols:
        raise DataError(
            f"{trainer.config.method}: no annotator of {train.name or 'train'} labels "
            f"{SINGLE_MIN_ITEMS} or more items; train single:<annotator> instead"
        )
    best: TrainResult | None = None
    best_name, scores = "", {}
    for a in (names[c] for c in cols):
        sub = trainer.config.model_copy(update={"method": f"{base}:{a}", "progress": False})
        run = type(trainer)(sub).fit(train, valid)
        m = run.valid_metrics
        scores[a] = m.worst_group_accuracy if m.worst_group_accuracy is not None else m.accuracy
        if best is None or select_key(m) > select_key(best.valid_metrics):
            best, best_name = run, a
        del run  # only the best run so far stays alive
    assert best is not None
    grouped = best.valid_metrics.worst_group_accuracy is not None
    note = choice_note(trainer.config.method, best_name, scores, grouped=grouped)
    notes = [*best.notes, *([f"{trainer.config.method} {skipped}"] if skipped else []), note]
    return dataclasses.replace(
        best, config=trainer.config, notes=notes, seconds=time.perf_counter() - t0
    )
