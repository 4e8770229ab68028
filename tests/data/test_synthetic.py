"""The synthetic generator's LLM confidences: constant by default, informative on request."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail_dro.data.synthetic import make_synthetic

SIZES = {"n_train": 300, "n_valid": 50, "n_test": 50}


def _right_wrong(ds, llm: str) -> tuple[float, float]:
    """Mean confidence of ``llm`` where its label is right, and where it is wrong."""
    right, wrong = [], []
    for it in ds:
        for a in it.annotations:
            if a.annotator == llm:
                (right if a.label == it.gold else wrong).append(a.confidence)
    return float(np.mean(right)), float(np.mean(wrong))


def test_informative_confidence_separates_right_from_wrong_labels_per_annotator() -> None:
    const = make_synthetic(**SIZES, seed=3)
    info = make_synthetic(**SIZES, seed=3, llm_confidence="informative")
    # Same items and labels: the confidences have their own random stream.
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(info[split].label_matrix(), const[split].label_matrix())
        assert info[split].texts == const[split].texts
    llms = ["llm_a", "llm_b", "llm_c"]
    assert np.all(const["train"].confidence_matrix(llms) == np.float32(0.9))
    gaps = {m: np.subtract(*_right_wrong(info["train"], m)) for m in llms}
    # llm_a separates well (0.8 vs 0.5), llm_b a little (0.8 vs 0.625), llm_c not at all.
    assert gaps["llm_a"] > 0.2 and 0.08 < gaps["llm_b"] < 0.3 and abs(gaps["llm_c"]) < 0.06, gaps
    again = make_synthetic(**SIZES, seed=3, llm_confidence="informative")
    np.testing.assert_array_equal(
        again["train"].confidence_matrix(), info["train"].confidence_matrix()
    )
    with pytest.raises(ValueError, match="llm_confidence"):
        make_synthetic(**SIZES, llm_confidence="loud")  # type: ignore[arg-type]
