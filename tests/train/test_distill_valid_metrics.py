"""A student's recorded validation metrics include the number that chose its epoch.

``distill`` keeps the epoch with the best validation ROC AUC of the toxic score; the
student's manifest (and so its model card and ``distill``'s last line) must carry that
ROC AUC, as a trained teacher's does, so the two can be compared.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

from rich.console import Console

from guardrail_dro.cli.distill import distill_model_dir
from guardrail_dro.train.distill import DistillConfig
from guardrail_dro.train.modeldir import TrainedModel


def test_the_students_manifest_card_and_summary_carry_its_valid_roc_auc(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    # The manifest's valid_metrics used to have toxic_roc_auc None (scored from the
    # argmax only): the card showed the teacher's ROC AUC and not the student's.
    data = {}
    for split in ("train", "valid"):
        data[split] = tmp_path / f"{split}.jsonl"
        synthetic[split].save_jsonl(data[split])
    cfg = DistillConfig(layers=1, epochs=2, augment=0, progress=False, cache_dir=tmp_path / "cache")
    buf = io.StringIO()
    out = distill_model_dir(
        tiny_model_dir, tmp_path / "student", cfg, **data,
        console=Console(file=buf, width=400),
    )  # fmt: skip

    student = TrainedModel.load(out)
    rec = student.manifest.distilled_from
    assert rec is not None
    chosen = next(e for e in rec.epoch_valid if e["epoch"] == rec.best_epoch)
    auc = student.manifest.valid_metrics.toxic_roc_auc
    assert auc is not None and auc == pytest.approx(chosen["toxic_auc"], abs=1e-9)

    card = (out / "README.md").read_text()
    assert re.search(rf"\| valid \| toxic ROC AUC \| {auc:.3f} \|", card), card

    teacher_auc = TrainedModel.load(tiny_model_dir).manifest.valid_metrics.toxic_roc_auc
    assert teacher_auc is not None
    summary = buf.getvalue().replace("\n", " ")
    assert f"(best valid toxic ROC AUC {auc:.4f}; teacher {teacher_auc:.4f})" in summary, summary
