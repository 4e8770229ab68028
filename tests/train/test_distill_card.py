"""A distilled student's model card says it is one.

The card of a student said "epoch N chosen on valid (worst-group accuracy)" (its epoch
is chosen by the valid toxic ROC AUC), "backbone ... (frozen mode)" (its encoder is K of
the teacher's layers, trained by distillation) and named the teacher only in a training
note. A trained model's card must not change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from guardrail_dro.checksums import file_sha256
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.metrics import Metrics
from guardrail_dro.train.model_card import model_card
from guardrail_dro.train.modeldir import DistillRecord, TrainedModel, TrainManifest

_SCHEMA = LabelSchema(classes=("ok", "bad"), safe=("ok",))


def _manifest(**extra) -> TrainManifest:
    return TrainManifest(
        created="2026-01-01T00:00:00+00:00", method="ours", config={"mode": "frozen"},
        backbone="org/enc", normalize=True, max_length=64, num_classes=2, head_hidden=0,
        annotators=["a"], groups=["g"], data_hashes={"train": "0" * 64},
        valid_metrics=Metrics(n=100, accuracy=0.9, macro_f1=0.8, toxic_roc_auc=0.8125),
        best_epoch=2, **extra,
    )  # fmt: skip


def _record(teacher_metrics: dict) -> DistillRecord:
    return DistillRecord(
        teacher_dir="/runs/guard-model", teacher_manifest_sha256="ab" * 32, teacher_layers=6,
        teacher_valid_metrics=teacher_metrics, layers=[0, 5],
        config={"epochs": 3, "quant_aware_epochs": 0, "loss": "both"},
        texts={"train": 900, "word-noise": 2700}, best_epoch=2, seconds=60.0,
    )  # fmt: skip


def test_a_students_card_says_what_it_is_and_how_its_epoch_was_chosen() -> None:
    rec = _record({"n": 100, "accuracy": 0.95, "toxic_roc_auc": 0.8304})
    text = model_card(_manifest(distilled_from=rec), _SCHEMA)
    assert "worst-group accuracy)" not in text and "frozen mode" not in text
    assert "2-of-6-layer student" in text
    assert "/runs/guard-model" in text and f"`{'ab' * 8}…`" in text  # the teacher
    assert "epoch 2 of 3 chosen on valid by the toxic score's ROC AUC: 0.812 " in text
    assert "(the teacher's on valid: 0.830)" in text
    assert "teacher layers [0, 5]" in text


def test_a_students_card_without_the_teachers_roc_auc_gives_its_own() -> None:
    text = model_card(_manifest(distilled_from=_record({"n": 100, "accuracy": 0.95})), _SCHEMA)
    assert "chosen on valid by the toxic score's ROC AUC: 0.812" in text
    assert "the teacher's on valid" not in text


def test_a_trained_models_card_keeps_its_wording() -> None:
    text = model_card(_manifest(), _SCHEMA)
    assert "# guardrail-dro trained model: `ours`" in text
    assert "- backbone: `org/enc` (frozen mode), mean pooling" in text
    assert "epoch 2 chosen on valid (worst-group accuracy)" in text
    assert "student" not in text and "distil" not in text


def test_a_distilled_students_saved_card(tiny_model_dir: Path, synthetic, tmp_path: Path) -> None:
    from guardrail_dro.train.distill import DistillConfig, distill

    cfg = DistillConfig(layers=1, epochs=2, augment=0, progress=False, cache_dir=tmp_path / "c")
    student = distill(tiny_model_dir, synthetic["train"].texts, synthetic["valid"], cfg)
    out = student.save(tmp_path / "student")
    card = (out / "README.md").read_text()
    rec = TrainedModel.load(out).manifest.distilled_from
    assert rec is not None
    assert "1-of-2-layer student" in card
    assert str(tiny_model_dir.resolve()) in card
    assert file_sha256(tiny_model_dir / "manifest.json")[:16] in card
    assert f"epoch {rec.best_epoch} of 2 chosen on valid by the toxic score's ROC AUC" in card
    assert "worst-group accuracy)" not in card
