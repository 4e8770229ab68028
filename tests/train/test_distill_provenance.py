"""A distilled model's provenance: the chain of teachers and the data each one used.

Before: a student of a student (a grand-student) replaced its teacher's
``distilled_from`` with its own record, so the chain back to the trained model was lost,
and its card said its teacher (a student) was "trained on crowd and LLM annotator labels"
with the original model's method and data as the teacher's. The student's manifest also
listed the original model's data hashes (its test data too, with the test numbers
dropped) as if the student had trained on them, and nothing said which texts it learned
from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.metrics import Metrics
from guardrail_dro.train.model_card import model_card
from guardrail_dro.train.modeldir import DistillRecord, TrainedModel, TrainManifest

_NEW_FIELDS = (
    "record_version",
    "teacher_distilled_from",
    "texts_sha256",
    "train_data_sha256",
    "valid_sha256",
)


def _teacher(tiny_model_dir: Path, synthetic, out: Path) -> Path:
    """The tiny trained model with real data hashes and names (the session fixture's are
    placeholders), and test data recorded as ``evaluate --record`` does."""
    model = TrainedModel.load(tiny_model_dir)
    man = model.manifest
    man.data_hashes = {
        "train": synthetic["train"].content_hash(),
        "valid": synthetic["valid"].content_hash(),
        "test": synthetic["test"].content_hash(),
    }
    man.data_names = {"train": "synth:train", "valid": "synth:valid", "test": "synth:test"}
    man.data_sizes = {s: len(synthetic[s]) for s in ("train", "valid", "test")}
    man.test_metrics = Metrics(n=len(synthetic["test"]), accuracy=0.5, macro_f1=0.5)
    return model.save(out)


def _config(tmp_path: Path):
    from guardrail_dro.train.distill import DistillConfig

    return DistillConfig(layers=1, epochs=1, augment=0, progress=False, cache_dir=tmp_path / "c")


def _sha_jsonl(texts: list[str]) -> str:
    body = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts)
    return hashlib.sha256(body.encode()).hexdigest()


def test_a_grand_students_manifest_and_card_keep_the_chain(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.train.distill import distill

    teacher = _teacher(tiny_model_dir, synthetic, tmp_path / "teacher")
    cfg, texts, valid = _config(tmp_path), synthetic["train"].texts, synthetic["valid"]
    first = distill(teacher, texts, valid, cfg).save(tmp_path / "s1")
    second = distill(first, texts, valid, cfg).save(tmp_path / "s2")

    card = " ".join((second / "README.md").read_text().split())
    assert (
        f"- lineage: distilled from `{first.resolve()}` (1 layer(s)), which was distilled "
        f"from `{teacher.resolve()}` (2 layer(s)), which was trained with `ours` on "
        "`synth:train`: bi-level soft-label GroupDRO" in card
    ), card
    assert "a teacher that was itself distilled (2 distillations back to a model trained" in card
    assert "from a teacher trained on crowd" not in card
    assert "the teacher's method" not in card and "the teacher's GroupDRO" not in card
    assert f"original model's (`{teacher.resolve()}`, trained with `ours`)" in card
    assert "- the original model's train split: `synth:train`" in card
    assert "its train texts were given as texts, not checked against the original's" in card

    rec = TrainedModel.load(second).manifest.distilled_from
    assert rec is not None and rec.record_version == 2
    assert rec.teacher_dir == str(first.resolve()) and rec.teacher_layers == 1
    up = rec.teacher_distilled_from
    assert up is not None, "the grand-student's record lost its teacher's"
    assert up.teacher_dir == str(teacher.resolve()) and up.teacher_layers == 2
    assert up.teacher_distilled_from is None  # its teacher was trained, not distilled
    assert up == TrainedModel.load(first).manifest.distilled_from  # the teacher's, whole


def test_a_student_records_the_texts_it_learned_from_not_the_teachers_test_data(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.train.distill import distill

    teacher = _teacher(tiny_model_dir, synthetic, tmp_path / "teacher")
    train, valid = synthetic["train"], synthetic["valid"]
    out = distill(teacher, train, valid, _config(tmp_path)).save(tmp_path / "s1")
    man = TrainedModel.load(out).manifest
    rec = man.distilled_from
    assert rec is not None
    held = set(valid.texts)
    learned = [t for t in dict.fromkeys(train.texts) if t and t not in held]
    assert rec.texts == {"train": len(learned)}
    assert rec.texts_sha256 == _sha_jsonl(learned)
    assert rec.train_data_sha256 == train.content_hash() == man.data_hashes["train"]
    assert rec.valid_sha256 == valid.content_hash()
    # The original model's test data and numbers are not the student's.
    assert "test" not in man.data_hashes and "test" not in man.data_names
    assert "test" not in man.data_sizes and man.test_metrics is None
    card = " ".join((out / "README.md").read_text().split())
    assert "- test" not in card and "synth:test" not in card
    assert f"- distillation texts: {len(learned)} (train {len(learned)}), sha256 " in card
    assert "its train texts are those of the original model's training data (same sha256)" in card
    assert "- validation (chose the epoch, never distilled on): the original model's" in card
    # The grand-student's manifest keeps the original model's data: `distill` reads
    # the train split again by the name its teacher's manifest gives.
    assert man.data_names == {"train": "synth:train", "valid": "synth:valid"}


def test_an_older_students_manifest_still_loads_and_makes_a_card(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.train.distill import distill

    cfg = _config(tmp_path)
    out = distill(tiny_model_dir, synthetic["train"].texts, synthetic["valid"], cfg).save(
        tmp_path / "s1"
    )
    path = out / "manifest.json"
    raw = json.loads(path.read_text())
    for key in _NEW_FIELDS:  # as written before the chain was kept
        raw["distilled_from"].pop(key)
    path.write_text(json.dumps(raw, indent=2) + "\n")  # not in its own file list
    old = TrainedModel.load(out)
    rec = old.manifest.distilled_from
    assert rec is not None and rec.record_version == 1 and rec.teacher_distilled_from is None
    card = " ".join(model_card(old.manifest, old.schema).split())
    assert "whose own provenance this older record does not keep (its manifest does)" in card
    assert "not checked against" not in card  # an older record says nothing it lacks
    # ... and a student of it carries it, as it is, in its chain.
    second = distill(out, synthetic["train"].texts, synthetic["valid"], cfg)
    assert second.manifest.distilled_from is not None
    assert second.manifest.distilled_from.teacher_distilled_from == rec


def test_a_students_card_names_other_train_and_valid_data() -> None:
    schema = LabelSchema(classes=("ok", "bad"), safe=("ok",))
    rec = DistillRecord(
        teacher_dir="/runs/model", teacher_manifest_sha256="ab" * 32, teacher_layers=6,
        teacher_valid_metrics={}, layers=[0, 5], config={"loss": "both"},
        texts={"train": 900, "chats.txt": 50}, best_epoch=1, seconds=1.0, record_version=2,
        texts_sha256="c" * 64, train_data_sha256="d" * 64, valid_sha256="e" * 64,
    )  # fmt: skip
    man = TrainManifest(
        created="2026-01-01T00:00:00+00:00", method="mv", config={}, backbone="org/enc",
        normalize=True, max_length=64, num_classes=2, head_hidden=0, annotators=["a"],
        groups=["g"], data_hashes={"train": "0" * 64, "valid": "1" * 64},
        valid_metrics=Metrics(n=80, accuracy=0.9, macro_f1=0.8), best_epoch=1,
        distilled_from=rec,
    )  # fmt: skip
    card = " ".join(model_card(man, schema).split())
    assert (
        f"- distillation texts: 950 (train 900, chats.txt 50), sha256 `{'c' * 16}…` (as "
        f"JSON lines); its train texts come from other data, sha256 `{'d' * 16}…`" in card
    )
    assert f"80 items, sha256 `{'e' * 16}…` (not the original's)" in card
    assert (
        "- lineage: distilled from `/runs/model` (6 layer(s)), which was trained with "
        f"`mv` on data of sha256 `{'0' * 16}…`: majority vote" in card
    )
