"""The parts of a model card (``model_card.py``) that describe a distilled student.

A student's manifest carries the original trained model's method, data and background,
copied down a chain of students (``train/distill.py``); its ``distilled_from`` record says
what the student itself learned from and, through ``teacher_distilled_from``, what each
teacher before it did. These parts attribute each to whom it belongs: the labelled data
and the method to the original model, the distillation texts to the student. (A
grand-student's card said its teacher, a student, was "trained on crowd labels" and
listed the original model's data as if the teacher had trained on it. Its training notes
repeated the original model's estimator notes, and its toxic score the original model's
choice, as the student's own.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardrail_dro.train.modeldir import DistillRecord, TrainManifest

__all__ = ["chain", "data_lines", "method_lines", "note_lines", "summary", "toxic_score_whose"]


def chain(rec: DistillRecord) -> list[DistillRecord]:
    """The student's record, then its teacher's, and on to the first student's (whose
    teacher was the trained model). Finite: a record read from JSON nests, never loops."""
    out = [rec]
    while (up := out[-1].teacher_distilled_from) is not None:
        out.append(up)
    return out


def summary(rec: DistillRecord) -> str:
    """The card's first sentence after the class count: what kind of student this is."""
    depth = len(chain(rec))
    teacher = (
        "a teacher trained on crowd and LLM annotator labels"
        if depth == 1
        else f"a teacher that was itself distilled ({depth} distillations back to a model "
        "trained on crowd and LLM annotator labels)"
    )
    return (
        f"a {len(rec.layers)}-of-{rec.teacher_layers}-layer student distilled by "
        f"guardrail-dro from {teacher}, its epoch selected on the ROC AUC of its toxic "
        "score on a gold-labelled validation split."
    )


def _train_data(man: TrainManifest) -> str:
    name, digest = man.data_names.get("train"), man.data_hashes.get("train")
    if name:
        return f"`{name}`"
    return f"data of sha256 `{digest[:16]}…`" if digest else "data not recorded"


def _lineage(man: TrainManifest, rec: DistillRecord, method_text: str) -> str:
    """Distilled from X (N layers), which was distilled from Y (M layers), which was
    trained with METHOD on DATA."""
    links = chain(rec)
    text = "- lineage: " + ", which was ".join(
        f"distilled from `{r.teacher_dir}` ({r.teacher_layers} layer(s))" for r in links
    )
    if links[-1].record_version < 2:  # written before the chain was kept: may be cut
        text += (
            ", whose own provenance this older record does not keep (its manifest "
            "does); the original model was"
        )
    else:
        text += ", which was"
    return text + f" trained with `{man.method}` on {_train_data(man)}: {method_text}"


def data_lines(man: TrainManifest, rec: DistillRecord) -> list[str]:
    """The head of a student's Training data: what it learned from, said apart from the
    original model's labelled data listed after it."""
    origin = chain(rec)[-1].teacher_dir
    lines = [
        "This student never saw a label: it learned its teacher's class probabilities and "
        "pooled embedding on the distillation texts. The labelled data listed below them is the "
        f"original model's (`{origin}`, trained with `{man.method}`).",
        "",
    ]
    texts = ", ".join(f"{name} {n}" for name, n in rec.texts.items())
    line = f"- distillation texts: {sum(rec.texts.values())} ({texts})"
    if rec.texts_sha256:
        line += f", sha256 `{rec.texts_sha256[:16]}…` (as JSON lines)"
    train, valid = rec.train_data_sha256, rec.valid_sha256
    if train is not None and train == man.data_hashes.get("train"):
        line += "; its train texts are those of the original model's training data (same sha256)"
    elif train is not None:
        line += f"; its train texts come from other data, sha256 `{train[:16]}…`"
    elif rec.record_version >= 2:
        line += "; its train texts were given as texts, not checked against the original's"
    lines.append(line)
    if valid is not None:
        same = valid == man.data_hashes.get("valid")
        lines.append(
            "- validation (chose the epoch, never distilled on): "
            + (
                "the original model's valid split"
                if same
                else f"{man.valid_metrics.n} items, sha256 `{valid[:16]}…` (not the original's)"
            )
        )
    return lines


def _epoch(man: TrainManifest, rec: DistillRecord) -> str:
    """How a student's epoch was chosen: by the valid ROC AUC of its toxic score, given
    beside the teacher's when its record has it (``distill``'s last line compares them)."""
    epochs, quant = rec.config.get("epochs"), rec.config.get("quant_aware_epochs") or 0
    text = f"epoch {rec.best_epoch}" + (f" of {epochs}" if epochs else "")
    text += " chosen on valid by the toxic score's ROC AUC"
    if quant:
        text += f", among the last {quant} (trained through int8 rounding)"
    auc = man.valid_metrics.toxic_roc_auc
    teacher_auc = rec.teacher_valid_metrics.get("toxic_roc_auc")
    if auc is not None:
        text += f": {auc:.3f}"
        if isinstance(teacher_auc, int | float):
            text += f" (the teacher's on valid: {teacher_auc:.3f})"
    return text


def method_lines(
    man: TrainManifest, rec: DistillRecord, method_text: str, backbone: str
) -> list[str]:
    """A student's Method bullets: what it was distilled from, the lineage back to the
    trained model (``method_text`` describes that model's method), its encoder (of
    ``backbone``), its epoch."""
    k, total = len(rec.layers), rec.teacher_layers
    texts = ", ".join(f"{name} {n}" for name, n in rec.texts.items())
    kept = ", word embeddings kept" if rec.config.get("freeze_embeddings", True) else ""
    return [
        f"- distilled: a {k}-of-{total}-layer student of the teacher `{rec.teacher_dir}` "
        f"(manifest sha256 `{rec.teacher_manifest_sha256[:16]}…`), started from the "
        f"teacher layers {rec.layers} and its head; it learned the teacher's scores "
        f"(loss {rec.config.get('loss', '?')}) on {sum(rec.texts.values())} texts ({texts})",
        _lineage(man, rec, method_text),
        # The teacher's layers, not the backbone's: a student's teacher may be a student
        # itself ("1 of the 1 layers of" a 2-layer backbone, it read).
        f"- encoder: {k} of the teacher's {total} layer(s) (backbone `{backbone}`), trained "
        f"by distillation{kept}, mean pooling"
        + (", L2-normalised" if man.normalize else "")
        + (f", a {man.head_hidden}-wide hidden layer" if man.head_hidden else ", linear head"),
        f"- max length: {man.max_length} tokens; " + _epoch(man, rec),
    ]


# ``distill`` appends one note per distillation, "distilled from DIR (N layers) into K
# layer(s) [...]", after the notes it copies from its teacher; no training note starts so.
_DISTILL_NOTE = "distilled from "


def note_lines(man: TrainManifest, rec: DistillRecord) -> list[str]:
    """A student's Limits "Training note" lines, each said as whose it is.

    Its manifest's notes are the original model's (the estimator's rank, shrinkage,
    confidence term: a student has no estimator), then each distillation's note, the
    student's own last. The distillation notes are the trailing run that starts as
    ``distill`` writes them, not a count from the chain: an older record's chain is cut
    (``record_version`` 1) while its manifest kept every note. A teacher's note names its
    teacher only where the run and the chain have the same length."""
    notes, links = man.notes, chain(rec)
    k = 0
    while k < len(notes) and notes[len(notes) - 1 - k].startswith(_DISTILL_NOTE):
        k += 1
    lines = [
        f"- Training note (the original model's, not this student's): {n}"
        for n in notes[: len(notes) - k]
    ]
    for j, n in enumerate(notes[len(notes) - k : len(notes) - 1]):
        if k == len(links):  # the j-th distillation made the student at this teacher_dir
            made = f"`{links[k - 2 - j].teacher_dir}`, a teacher up the chain"
        else:  # an older record: which teacher is not known
            made = "a teacher up the chain"
        lines.append(f"- Training note (the distillation that made {made}): {n}")
    return lines + [f"- Training note: {n}" for n in notes[len(notes) - k :][-1:]]


def toxic_score_whose(rec: DistillRecord) -> str:
    """Whose toxic-score choice a student's manifest carries: ``distill`` copies the
    original model's (kind and its valid ROC AUCs, measured on that model's valid) and
    chooses none."""
    later = " and the students before it" if len(chain(rec)) > 1 else ""
    return f"the original model's choice, kept by this student{later}: "
