"""Issue 12: train --out into an existing model folder (regression tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from guardrail_dro.errors import ArtifactError


def test_saving_over_a_model_keeps_no_stale_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    from guardrail_dro.train.modeldir import TrainedModel

    out = tmp_path / "model"
    shutil.copytree(tiny_model_dir, out)
    (out / "stray.txt").write_text("left by hand")
    assert (out / "estimator.safetensors").is_file()
    m = TrainedModel.load(tiny_model_dir)
    m.estimator = None  # a method without an estimator, trained into the same folder
    m.save(out)
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert "estimator.safetensors" not in files and "stray.txt" not in files
    assert not (out / "estimator.safetensors").exists() and not (out / "stray.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left
    TrainedModel.load(out)


def test_a_non_model_folder_is_never_replaced(tiny_model_dir: Path, tmp_path: Path) -> None:
    from guardrail_dro.train.modeldir import TrainedModel

    (tmp_path / "notes.md").write_text("mine")
    with pytest.raises(ArtifactError, match="not a model directory"):
        TrainedModel.load(tiny_model_dir).save(tmp_path)
    assert (tmp_path / "notes.md").read_text() == "mine"
