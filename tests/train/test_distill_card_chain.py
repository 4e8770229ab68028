"""The card of a student distilled from a student names the layers it kept as its
teacher's, not the backbone's.

Before: distilling a 1-layer student of the 2-layer tiny backbone again gave a card
saying "encoder: 1 of the 1 layers of `<backbone>`", a backbone of 2 layers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from guardrail_dro.train.modeldir import TrainedModel


def test_a_student_of_a_students_card_counts_the_teachers_layers(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.train.distill import DistillConfig, distill

    cfg = DistillConfig(layers=1, epochs=1, augment=0, progress=False, cache_dir=tmp_path / "c")
    texts = synthetic["train"].texts
    first = distill(tiny_model_dir, texts, synthetic["valid"], cfg).save(tmp_path / "s1")
    second = distill(first, texts, synthetic["valid"], cfg).save(tmp_path / "s2")
    man = TrainedModel.load(second).manifest
    assert man.distilled_from is not None and man.distilled_from.teacher_layers == 1
    card = (second / "README.md").read_text()
    assert "of the 1 layers of `" not in card, card  # the backbone has 2
    assert "- encoder: 1 of the teacher's 1 layer(s) (backbone `" in card, card
