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
    assert calls["lower"] == 1 and calls["top"] == 3  # built once (60 texts, one chunk)
    # The frozen part stays in eval mode while the top layer trains.
    assert not enc.embeddings.training and not enc.encoder.layer[0].training
    assert enc.encoder.layer[1].training and src.embedder.training
    src.eval()
    src.features("train", None)
    assert calls["lower"] == 1  # train's states were kept
    src.features("valid", None)
    assert calls["lower"] == 2  # valid's were built once
    src.features("select", torch.arange(4))  # the same split object as valid
    assert calls["lower"] == 2
    # The model is whole again: its state_dict and layer list are the original ones.
    assert list(enc.state_dict()) == keys and len(enc.encoder.layer) == 2
    assert "forward" not in vars(enc.embeddings)
    assert any(p.grad is not None for p in enc.encoder.layer[1].parameters())
    src.release()
    assert not src._lower.has("train")


def test_states_are_built_without_dropout_whatever_the_mode(synthetic, tiny_backbone: Path) -> None:
    """Built during a training step (train mode, dropout 0.1 in the tiny BERT), the
    states are still the frozen layer's eval-mode output, and every module gets its own
    mode back."""
    src = _source(synthetic, tiny_backbone, 1)
    src.embedder.train()  # every module, the frozen ones too (src.train() keeps those in eval)
    modes = [m.training for m in src.embedder.modules()]
    idx = torch.tensor([3, 1, 4])
    src.features("train", idx)
    assert [m.training for m in src.embedder.modules()] == modes
    enc = src.embedder.encoder
    tok = src._tok["train"]
    width = int(tok["attention_mask"][idx].sum(1).max())
    ids, mask = tok["input_ids"][idx, :width], tok["attention_mask"][idx, :width]
    enc.eval()
    with torch.no_grad(), layer_range(enc, 0, 1):
        want = enc(input_ids=ids, attention_mask=mask).last_hidden_state
    got = src._lower.batch("train", idx, torch.device("cpu"))
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-4)


def test_several_processes_run_the_frozen_layers_every_step_in_eval_mode(
    synthetic, tiny_backbone: Path
) -> None:
    from types import SimpleNamespace

    src = _source(synthetic, tiny_backbone, 1)
    src.accelerator = SimpleNamespace(num_processes=2)  # type: ignore[assignment]
    src.notes.clear()
    src._lower = src._lower_states(1)
    assert src._lower is None
    assert any("several processes" in n and "eval mode" in n for n in src.notes), src.notes
    src.train()
    enc = src.embedder.encoder
    assert not enc.embeddings.training and not enc.encoder.layer[0].training
    assert enc.encoder.layer[1].training


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


def test_an_encoder_that_does_more_than_its_layers_falls_back(synthetic, tmp_path: Path) -> None:
    """ELECTRA with a smaller embedding size projects the embeddings before layer 0;
    XLM-RoBERTa-XL ends its encoder with a LayerNorm: neither can run its top layers
    alone on cached states, so full mode runs the plain model (and says so)."""
    from transformers import (
        AutoTokenizer,
        ElectraConfig,
        ElectraModel,
        XLMRobertaXLConfig,
        XLMRobertaXLModel,
    )

    from guardrail_dro.train.model import default_backbone

    tok = AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(0)
    small = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ElectraModel(
        ElectraConfig(vocab_size=tok.vocab_size, embedding_size=32, hidden_size=64, **small)
    ).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    src = _source(synthetic, tmp_path, 1)
    assert src._lower is None
    assert any("ElectraModel does not run its top layers" in n for n in src.notes), src.notes
    assert src.features("train", torch.arange(4)).shape == (4, 64)

    xl = XLMRobertaXLModel(XLMRobertaXLConfig(vocab_size=100, hidden_size=32, **small)).eval()
    embedder = GuardClassifier(xl, None, normalize=True)  # type: ignore[arg-type]
    ids = torch.randint(5, 100, (3, 7))
    mask = torch.ones_like(ids)
    assert not LowerStates(xl, 1).agrees(embedder, ids, mask, torch.device("cpu"))
    assert "forward" not in vars(xl.embeddings) and len(xl.encoder.layer) == 2
