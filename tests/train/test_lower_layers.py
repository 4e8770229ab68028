"""--train-layers N: the frozen lower layers run once per split, and the features the
top layers make from their cached output are the uncached model's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from guardrail_dro.train import lower_layers
from guardrail_dro.train.features import FullFeatures, build_features
from guardrail_dro.train.lower_layers import LowerStates, layer_range
from guardrail_dro.train.model import GuardClassifier
from guardrail_dro.train.trainer import TrainConfig


def _source(synthetic, backbone: Path, train_layers: int | None, n: int = 60) -> FullFeatures:
    cfg = TrainConfig(
        backbone=str(backbone),
        mode="full",
        device="cpu",
        progress=False,
        probe_epochs=0,
        train_layers=train_layers,
    )
    valid = synthetic["valid"].subset(range(n))
    src = build_features(
        cfg, {"train": synthetic["train"].subset(range(n)), "valid": valid, "select": valid}
    )
    assert isinstance(src, FullFeatures)
    return src


def test_cached_lower_layers_give_the_uncached_features(synthetic, tiny_backbone: Path) -> None:
    plain = _source(synthetic, tiny_backbone, None)
    cached = _source(synthetic, tiny_backbone, 1)
    assert plain._lower is None and cached._lower is not None
    assert any("run once per split" in n for n in cached.notes)
    for src in (plain, cached):
        src.eval()
    idx = torch.tensor([5, 0, 17, 3])  # any order, texts of different lengths
    with torch.no_grad():
        torch.testing.assert_close(
            cached.features("train", idx), plain.features("train", idx), atol=1e-5, rtol=1e-4
        )
    torch.testing.assert_close(
        cached.features("valid", None), plain.features("valid", None), atol=1e-5, rtol=1e-4
    )


def test_the_frozen_layer_runs_once_per_split_and_the_model_is_left_whole(
    synthetic, tiny_backbone: Path
) -> None:
    src = _source(synthetic, tiny_backbone, 1)
    enc = src.embedder.encoder
    keys = list(enc.state_dict())
    calls = {"lower": 0, "top": 0}
    enc.encoder.layer[0].register_forward_hook(
        lambda *a: calls.__setitem__("lower", calls["lower"] + 1)
    )
    enc.encoder.layer[1].register_forward_hook(
        lambda *a: calls.__setitem__("top", calls["top"] + 1)
    )
    src.train()
    for _ in range(3):  # three training steps on train, with gradient
        src.features("train", torch.arange(8)).sum().backward()
    lower_after_train = calls["lower"]
    assert lower_after_train >= 1 and calls["top"] >= 3
    src.eval()
    src.features("train", None)
    assert calls["lower"] == lower_after_train  # train's states were kept
    src.features("valid", None)
    assert calls["lower"] > lower_after_train  # valid's were built once
    before = calls["lower"]
    src.features("select", torch.arange(4))  # the same split object as valid
    assert calls["lower"] == before
    # The model is whole again: its state_dict and layer list are the original ones.
    assert list(enc.state_dict()) == keys and len(enc.encoder.layer) == 2
    assert "forward" not in vars(enc.embeddings)
    # Gradient reached the trained layer only.
    assert all(p.grad is None for p in enc.encoder.layer[0].parameters())
    assert any(p.grad is not None for p in enc.encoder.layer[1].parameters())


def test_layer_range_restores_the_model_after_an_error(tiny_backbone: Path) -> None:
    from transformers import AutoModel

    enc = AutoModel.from_pretrained(tiny_backbone)
    layers = enc.encoder.layer
    with pytest.raises(RuntimeError, match="boom"), layer_range(enc, 1, 2, torch.zeros(1, 3, 64)):
        assert len(enc.encoder.layer) == 1
        raise RuntimeError("boom")
    assert enc.encoder.layer is layers and "forward" not in vars(enc.embeddings)


def test_mpnet_relative_position_bias_survives_the_cache() -> None:
    """MPNet adds a relative position bias in its encoder, not in a layer: the cached
    path must still give the uncached features."""
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    enc = MPNetModel(
        MPNetConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).eval()
    embedder = GuardClassifier(enc, None, normalize=True)  # type: ignore[arg-type]
    ids = torch.randint(5, 100, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 2:] = 0
    states = LowerStates(enc, start=2)
    states.build("s", ids, mask, batch_size=2, device=torch.device("cpu"))
    with torch.no_grad():
        want = embedder.embed(ids, mask)
        got = states.embed(embedder, "s", torch.arange(4), ids, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_over_the_memory_limit_the_frozen_layers_run_every_step(
    synthetic, tiny_backbone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("guardrail_dro.train.features.MAX_BYTES", 1024)
    src = _source(synthetic, tiny_backbone, 1)
    assert src._lower is None
    assert any("over the" in n and "cache limit" in n for n in src.notes), src.notes
    assert lower_layers.MAX_BYTES == 4 * 1024**3  # the module's own limit is untouched
    assert src.features("train", torch.arange(4)).shape == (4, 64)
