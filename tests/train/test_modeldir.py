from pathlib import Path

import numpy as np
import pytest

from guardrail_dro.errors import ArtifactError
from guardrail_dro.train.modeldir import TrainedModel


def test_round_trip_predicts_same_as_saved(tiny_model_dir: Path, synthetic) -> None:
    m = TrainedModel.load(tiny_model_dir)
    texts = synthetic["test"].texts[:16]
    p = m.predict_proba(texts)
    assert p.shape == (16, m.schema.num_classes)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert m.manifest.method == "ours"
    assert set(m.manifest.annotator_weight_by_group) == set(synthetic["valid"].groups)
    assert (tiny_model_dir / "estimator.safetensors").is_file()


def test_tampered_file_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    p = copy / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.safetensors"):
        TrainedModel.load(copy)


def test_not_a_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no manifest.json"):
        TrainedModel.load(tmp_path)


def test_the_estimator_is_loaded_back(tiny_model_dir: Path, synthetic) -> None:
    """save writes the soft-label weight estimator; load restores it, same weights."""
    import torch
    from safetensors.torch import load_file

    from guardrail_dro.train.model import WeightEstimator

    m = TrainedModel.load(tiny_model_dir)
    assert isinstance(m.estimator, WeightEstimator) and not m.estimator.training
    saved = load_file(tiny_model_dir / "estimator.safetensors")
    state = m.estimator.state_dict()
    assert state.keys() == saved.keys()
    for k, v in saved.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0, equal_nan=True)  # NaN centres
    assert m.estimator.annotators.shape[0] == len(m.manifest.annotators)
    labels = torch.zeros(2, len(m.manifest.annotators), dtype=torch.long)
    w = m.estimator(torch.zeros(2, m.model.encoder.config.hidden_size), labels)
    torch.testing.assert_close(w.sum(1), torch.ones(2))


def test_a_method_without_estimator_loads_none(
    tiny_backbone: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    cfg = TrainConfig(
        method="mv", backbone=str(tiny_backbone), epochs=1, progress=False, cache_dir=tmp_path
    )
    result = BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])
    out = TrainedModel.from_result(result, {}).save(tmp_path / "m")
    assert not (out / "estimator.safetensors").exists()
    assert TrainedModel.load(out).estimator is None


def test_a_saved_model_directory_gets_the_mode_mkdir_gives(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # save() built the folder with tempfile.mkdtemp (0700) and renamed it into place:
    # a model trained by one user was unreadable to every other (its files were 0644).
    import os

    old = os.umask(0o022)
    try:
        TrainedModel.load(tiny_model_dir).save(tmp_path / "m")
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_model_from_a_newer_format_says_to_upgrade(tiny_model_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    d = Path(shutil.copytree(tiny_model_dir, tmp_path / "m"))
    raw = json.loads((d / "manifest.json").read_text())
    raw["manifest_version"] = 3
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="version 3.*newer guardrail-dro: upgrade"):
        TrainedModel.load(d)
