"""A distilled student's card says whose training notes and toxic-score choice it repeats.

Before: a student's (and a grand-student's) card listed the original model's estimator
notes ("Training note: estimator ... confidence term") as its own training notes, beside
its own distillation note, and gave the toxic score as "KIND, chosen on valid ROC AUC"
as if the student had chosen it: ``distill`` copies the original model's choice and its
valid AUCs down the chain, and a student has no estimator. A trained model's card keeps
its wording.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.metrics import Metrics
from guardrail_dro.train.model_card import model_card
from guardrail_dro.train.modeldir import DistillRecord, TrainedModel, TrainManifest
from guardrail_dro.train.toxic_score import ToxicScoreChoice

_SCHEMA = LabelSchema(classes=("ok", "bad"), safe=("ok",))
_ESTIMATOR_NOTES = [
    "estimator rank 8 with shrinkage 0.3 (chosen by cross-validation)",
    "estimator with its confidence term (use_confidence on)",
]
_CHOICE = ToxicScoreChoice(
    kind="mix", binary_weight=0.5, valid_auc={"class-head": 0.812, "mix": 0.845}
)


def _lines(card: str, start: str) -> list[str]:
    return [line for line in card.splitlines() if line.startswith(start)]


def _teacher(tiny_model_dir: Path, out: Path) -> Path:
    """The tiny trained model, with the estimator notes and toxic-score choice a
    trained model's manifest carries."""
    model = TrainedModel.load(tiny_model_dir)
    model.manifest.notes = list(_ESTIMATOR_NOTES)
    model.manifest.toxic_score = _CHOICE
    return model.save(out)


def test_a_grand_students_card_says_whose_notes_and_toxic_score_it_repeats(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.train.distill import DistillConfig, distill

    teacher = _teacher(tiny_model_dir, tmp_path / "teacher")
    cfg = DistillConfig(layers=1, epochs=1, augment=0, progress=False, cache_dir=tmp_path / "c")
    texts, valid = synthetic["train"].texts, synthetic["valid"]
    first = distill(teacher, texts, valid, cfg).save(tmp_path / "s1")
    second = distill(first, texts, valid, cfg).save(tmp_path / "s2")

    card = (first / "README.md").read_text(encoding="utf-8")
    notes = TrainedModel.load(first).manifest.notes
    assert _lines(card, "- Training note") == [
        *(f"- Training note (the original model's, not this student's): {n}" for n in notes[:2]),
        f"- Training note: {notes[2]}",  # the student's own
    ]
    assert notes[2].startswith(f"distilled from {teacher} (2 layers) into 1 layer(s)")
    assert _lines(card, "- toxic score") == [
        "- toxic score (what the guard blocks on): the original model's choice, kept by this "
        "student: mix, chosen on the original model's valid ROC AUC (class-head 0.812, "
        f"mix 0.845; rule: {_CHOICE.rule})"
    ]

    card = (second / "README.md").read_text(encoding="utf-8")
    notes = TrainedModel.load(second).manifest.notes
    assert _lines(card, "- Training note") == [
        *(f"- Training note (the original model's, not this student's): {n}" for n in notes[:2]),
        "- Training note (the distillation that made "
        f"`{first.resolve()}`, a teacher up the chain): {notes[2]}",
        f"- Training note: {notes[3]}",
    ]
    assert notes[3].startswith(f"distilled from {first} (1 layers) into 1 layer(s)")
    assert (
        "- toxic score (what the guard blocks on): the original model's choice, kept by this "
        "student and the students before it: mix, chosen on the original model's valid ROC AUC"
        in card
    )


def _manifest(**extra) -> TrainManifest:
    return TrainManifest(
        created="2026-01-01T00:00:00+00:00", method="ours", config={"mode": "frozen"},
        backbone="org/enc", normalize=True, max_length=64, num_classes=2, head_hidden=0,
        annotators=["a"], groups=["g"], data_hashes={"train": "0" * 64},
        valid_metrics=Metrics(n=100, accuracy=0.9, macro_f1=0.8), best_epoch=2,
        toxic_score=_CHOICE, **extra,
    )  # fmt: skip


def _record(teacher_dir: str = "/runs/s1", **extra) -> DistillRecord:
    return DistillRecord(
        teacher_dir=teacher_dir, teacher_manifest_sha256="ab" * 32, teacher_layers=2,
        teacher_valid_metrics={}, layers=[0], config={}, texts={"train": 9}, best_epoch=1,
        seconds=1.0, **extra,
    )  # fmt: skip


def test_an_older_records_cut_chain_still_separates_the_notes() -> None:
    """A record written before the chain was kept (version 1) has no teacher record,
    while its manifest has its teacher's distillation note: that note is a teacher's,
    named as such without a directory the card cannot know."""
    notes = [
        *_ESTIMATOR_NOTES,
        "distilled from /runs/model (6 layers) into 2 layer(s) [0, 5], loss both, 9 texts",
        "distilled from /runs/s1 (2 layers) into 1 layer(s) [0], loss both, 9 texts",
    ]
    card = model_card(_manifest(notes=notes, distilled_from=_record()), _SCHEMA)
    assert _lines(card, "- Training note") == [
        f"- Training note (the original model's, not this student's): {_ESTIMATOR_NOTES[0]}",
        f"- Training note (the original model's, not this student's): {_ESTIMATOR_NOTES[1]}",
        f"- Training note (the distillation that made a teacher up the chain): {notes[2]}",
        f"- Training note: {notes[3]}",
    ]
    # A hand-made student manifest with no distillation note: all the original model's.
    card = model_card(_manifest(notes=_ESTIMATOR_NOTES, distilled_from=_record()), _SCHEMA)
    assert _lines(card, "- Training note:") == []
    assert len(_lines(card, "- Training note (the original model's")) == 2


def test_a_students_toxic_score_is_said_to_be_the_original_models_choice() -> None:
    card = model_card(_manifest(distilled_from=_record()), _SCHEMA)
    assert _lines(card, "- toxic score") == [
        "- toxic score (what the guard blocks on): the original model's choice, kept by this "
        "student: mix, chosen on the original model's valid ROC AUC (class-head 0.812, "
        f"mix 0.845; rule: {_CHOICE.rule})"
    ]
    grand = _record(record_version=2, teacher_distilled_from=_record(teacher_dir="/runs/m"))
    card = model_card(_manifest(distilled_from=grand), _SCHEMA)
    assert "kept by this student and the students before it: mix, chosen on the" in card


def test_a_trained_models_notes_and_toxic_score_keep_their_wording() -> None:
    card = model_card(_manifest(notes=[*_ESTIMATOR_NOTES, "distilled from x"]), _SCHEMA)
    assert _lines(card, "- Training note") == [
        f"- Training note: {_ESTIMATOR_NOTES[0]}",
        f"- Training note: {_ESTIMATOR_NOTES[1]}",
        "- Training note: distilled from x",
    ]
    assert _lines(card, "- toxic score") == [
        "- toxic score (what the guard blocks on): mix, chosen on valid ROC AUC "
        f"(class-head 0.812, mix 0.845; rule: {_CHOICE.rule})"
    ]
    assert "original model" not in card and "student" not in card
