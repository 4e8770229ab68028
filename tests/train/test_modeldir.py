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
