"""A text's decision never depends on what else is in its batch: ``check`` and
``check_many`` agree on the real tiny export, fp32 and int8, batches in order and
shuffled. (int8 dynamic quantization scales activations over the whole batch, so the
int8 model runs one row at a time; ``guardrail_dro.serve.onnx_scorer`` says why.)"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy


@pytest.fixture(scope="module")
def texts(synthetic) -> list[str]:
    """~300 texts: short synthetic questions, runs of several (longer, more padding
    around the short ones), a few of many windows, and odd ones."""
    rng = random.Random(0)
    pool = [it.text for split in ("train", "valid", "test") for it in synthetic[split].items]
    out = rng.sample(pool, 240)
    out += [" ".join(rng.sample(pool, rng.randint(2, 8))) for _ in range(50)]
    out += [" ".join(rng.sample(pool, 40)) for _ in range(5)]  # several windows each
    out += ["", "   ", "ok", "🙂 \ud800", "a" * 2000]
    rng.shuffle(out)
    return out


def _guard(guard_dir: Path, precision: str, texts: list[str]) -> Guard:
    """The guard at ``precision``, its toxic threshold at the median toxic score, so
    about half the texts are blocked and a moved score can flip a decision."""
    guard = Guard.load(guard_dir, provider="cpu", precision=precision, batch_size=16)
    median = float(np.median([guard.check(t).toxic_score for t in texts if t.strip()]))
    return guard.with_policy(Policy(toxic_threshold=median))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_check_many_decides_as_check(guard_dir: Path, texts: list[str], precision: str) -> None:
    guard = _guard(guard_dir, precision, texts)
    assert guard.precision == precision
    alone = [guard.check(t) for t in texts]
    assert 0.2 < sum(r.allowed for r in alone) / len(texts) < 0.8
    order = list(range(len(texts)))
    random.Random(1).shuffle(order)
    shuffled = guard.check_many([texts[i] for i in order])
    batches = {
        "in order": guard.check_many(texts),
        "shuffled": [shuffled[order.index(i)] for i in range(len(texts))],
    }
    for name, many in batches.items():
        for t, one, r in zip(texts, alone, many, strict=True):
            where = f"{name}: {t[:40]!r}"
            assert (r.allowed, r.label, r.windows) == (one.allowed, one.label, one.windows), where
            if precision == "int8":  # one row at a time: the very same computation
                assert r == one, where
            for c in one.scores:
                assert r.scores[c] == pytest.approx(one.scores[c], abs=1e-4), where


def test_int8_runs_one_row_at_a_time_and_fp32_batches(guard_dir: Path) -> None:
    assert Guard.load(guard_dir, provider="cpu", precision="int8").scorer.per_row  # type: ignore[attr-defined]
    assert not Guard.load(guard_dir, provider="cpu", precision="fp32").scorer.per_row  # type: ignore[attr-defined]
