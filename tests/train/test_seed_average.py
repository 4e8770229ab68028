"""``benchmarks/bench_seed_average.py``'s average of seeds is what its docstring says: for
linear heads on one encoder, the geometric mean of the seeds' probabilities is the one
linear head with the averaged weights; the valid halves split valid in two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import load_script

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_seed_average.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(SCRIPT)


def test_the_geometric_mean_of_linear_heads_is_the_averaged_head(bench) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 16, generator=gen)
    heads = [torch.nn.Linear(16, 5) for _ in range(4)]
    for h in heads:
        torch.nn.init.normal_(h.weight, std=0.5, generator=gen)
        torch.nn.init.normal_(h.bias, std=0.5, generator=gen)
    with torch.no_grad():
        probas = [torch.softmax(h(x), -1).numpy() for h in heads]
        w = torch.stack([h.weight for h in heads]).mean(0)
        b = torch.stack([h.bias for h in heads]).mean(0)
        merged = torch.softmax(x @ w.T + b, -1).numpy()
    np.testing.assert_allclose(bench.geometric_mean(probas), merged, atol=1e-5)
    # Not the arithmetic mean of the probabilities, which no single head gives.
    assert not np.allclose(np.mean(probas, axis=0), merged, atol=1e-3)


def test_the_halves_split_valid_in_two(bench) -> None:
    a, b = bench.halves(1001)
    assert sorted(a + b) == list(range(1001))
    assert abs(len(a) - len(b)) <= 1
    assert bench.halves(1001) == (a, b)
