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
    p = copy / "head.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="head.safetensors"):
        TrainedModel.load(copy)


def test_not_a_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no manifest.json"):
        TrainedModel.load(tmp_path)
