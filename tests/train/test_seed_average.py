"""Averaging seeds. ``train/seed_average.py``: the averaged head's logits are the seeds'
mean, for linear and hidden-layer heads; ``average_seeds`` in the trainer gives exactly
the average of the seeds it would train one by one, saves, loads and explains itself; full
mode is refused. ``benchmarks/bench_seed_average.py``: the geometric mean of linear heads'
probabilities is the one linear head with the averaged weights; the valid halves split
valid in two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.metrics import score_split
from guardrail_dro.train.model import ClassifierHead
from guardrail_dro.train.seed_average import average_heads
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig
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


@pytest.mark.parametrize("hidden", [0, 6])
def test_the_averaged_head_gives_the_mean_of_the_seeds_logits(hidden: int) -> None:
    torch.manual_seed(0)
    heads = [ClassifierHead(16, 5, hidden, dropout=0.1).eval() for _ in range(3)]
    for h in heads:  # not the initial weights only: biases too
        for p in h.parameters():
            torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(40, 16)
    merged = average_heads(heads).eval()
    assert merged.hidden == 3 * hidden
    with torch.no_grad():
        want = torch.stack([h(x) for h in heads]).mean(0)
        np.testing.assert_allclose(merged(x).numpy(), want.numpy(), atol=1e-5)


def test_heads_of_different_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match="different shapes"):
        average_heads([ClassifierHead(16, 5), ClassifierHead(16, 5, 4)])
    with pytest.raises(ConfigError, match="no heads"):
        average_heads([])


def _cfg(backbone: Path, cache: Path, **kw) -> TrainConfig:
    return TrainConfig(
        method="ours", backbone=str(backbone), epochs=3, cache_dir=cache, progress=False, **kw
    )


@pytest.fixture(scope="module")
def seed_fits(tiny_backbone, synthetic, tmp_path_factory):
    """Seeds 0 and 1 one by one and averaged, with a hidden-layer head."""
    cache = tmp_path_factory.mktemp("avg-cache")
    fit = {}
    for name, kw in {
        "seed0": {"seed": 0},
        "seed1": {"seed": 1},
        "averaged": {"average_seeds": 2},
    }.items():
        cfg = _cfg(tiny_backbone, cache, head_hidden=8, **kw)
        fit[name] = BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])
    return fit


def test_average_seeds_is_the_average_of_the_seeds_trained_one_by_one(seed_fits, synthetic) -> None:
    valid = synthetic["valid"]
    avg = seed_fits["averaged"]
    probas = [seed_fits[s].predict_proba(valid.texts) for s in ("seed0", "seed1")]
    logp = np.mean([np.log(p) for p in probas], 0)
    want = np.exp(logp) / np.exp(logp).sum(1, keepdims=True)
    got = avg.predict_proba(valid.texts)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert not np.allclose(probas[0], probas[1], atol=1e-3)  # the seeds differ
    assert avg.valid_metrics.model_copy(update={"toxic_roc_auc": None}) == score_split(
        valid, got.argmax(1)
    )
    assert avg.head.hidden == 16
    assert avg.config.seed == 0 and avg.config.average_seeds == 2
    assert [s.seed for s in avg.averaged_seeds or []] == [0, 1]
    assert [s.best_epoch for s in avg.averaged_seeds or []] == [
        seed_fits["seed0"].best_epoch,
        seed_fits["seed1"].best_epoch,
    ]
    assert avg.notes[0].startswith("averaged the heads of 2 seeds (0, 1)")
    # What the seeds learned about annotators and groups is reported as their mean.
    g, a = synthetic["valid"].groups[0], synthetic["train"].annotators[0]
    by_seed = [seed_fits[s].annotator_weight_by_group for s in ("seed0", "seed1")]
    want_a = np.mean([m[g][a] for m in by_seed if m is not None])
    assert avg.annotator_weight_by_group is not None
    assert avg.annotator_weight_by_group[g][a] == pytest.approx(want_a)
    assert avg.group_weights is not None and avg.group_weights[g] == pytest.approx(
        np.mean([seed_fits[s].group_weights[g] for s in ("seed0", "seed1")])
    )
    # The toxic score is chosen again, for the averaged head, from the averaged binary head.
    assert avg.toxic_score is not None and avg.toxic_binary is not None
    assert sum(n.startswith("toxic score:") for n in avg.notes) == 1
    binaries = [seed_fits[s].toxic_binary for s in ("seed0", "seed1")]
    want_w = torch.stack([b.weight for b in binaries if b is not None]).mean(0)
    torch.testing.assert_close(avg.toxic_binary.weight, want_w)


def test_an_averaged_model_saves_loads_and_says_so(seed_fits, synthetic, tmp_path) -> None:
    from guardrail_dro.train.modeldir import TrainedModel

    avg = seed_fits["averaged"]
    TrainedModel.from_result(avg, {"train": "x", "valid": "y"}).save(tmp_path / "m")
    loaded = TrainedModel.load(tmp_path / "m")
    man = loaded.manifest
    assert man.head_hidden == 16 and man.config["head_hidden"] == 8
    assert man.config["average_seeds"] == 2
    assert [s.seed for s in man.averaged_seeds or []] == [0, 1]
    card = (tmp_path / "m" / "README.md").read_text()
    assert "the average of 2 seeds' heads" in card
    texts = synthetic["test"].texts[:20]
    fresh = TrainedModel.from_result(avg, {"train": "x", "valid": "y"})
    np.testing.assert_allclose(loaded.predict_proba(texts), fresh.predict_proba(texts), atol=1e-5)
    # The result's guard=True probabilities are the saved model's (toxic score included).
    assert avg.toxic_mix is not None  # this tiny model keeps a binary head in its score
    np.testing.assert_allclose(
        avg.predict_proba(texts, guard=True), loaded.predict_proba(texts), atol=1e-5
    )
    assert not np.allclose(avg.predict_proba(texts), loaded.predict_proba(texts), atol=1e-3)
    # evaluate's toxic ROC AUC is the guard's score's (the saved model's), not the class
    # head's 1 - P(safe)
    from guardrail_dro.train.metrics import toxic_auc

    test = synthetic["test"]
    want = toxic_auc(test, loaded.predict_proba(test.texts))
    assert want is not None and avg.evaluate(test).toxic_roc_auc == pytest.approx(want, abs=1e-3)
    # valid's metrics carry the shipped score's valid AUC, the trainer's and the average's
    valid = synthetic["valid"]
    for fit in (avg, seed_fits["seed0"]):
        got = toxic_auc(valid, fit.predict_proba(valid.texts, guard=True))
        assert fit.valid_metrics.toxic_roc_auc == pytest.approx(got, abs=1e-3)


def test_full_mode_refuses_to_average_seeds(tiny_backbone, synthetic, tmp_path) -> None:
    cfg = _cfg(tiny_backbone, tmp_path, mode="full", average_seeds=2)
    with pytest.raises(ConfigError, match="frozen encoder"):
        BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])


def test_averaged_models_of_different_seeds_share_no_seed(synthetic, monkeypatch) -> None:
    """Seed s of a k-seed average trains seeds k*s .. k*s+k-1 (a bench's seeds 0, 1, 2
    are three disjoint triplets); the first seed's returned config (its choices) is the
    others' config."""
    import dataclasses

    from guardrail_dro.train import seed_average

    @dataclasses.dataclass
    class Fitted:
        config: TrainConfig

    seen: list[tuple[int, int, float | None]] = []

    def fit(cfg: TrainConfig) -> Fitted:
        seen.append((cfg.seed, cfg.average_seeds, cfg.background_weight))
        return Fitted(cfg.model_copy(update={"background_weight": 2.0}))  # "chosen"

    monkeypatch.setattr(seed_average, "average_results", lambda rs, valid: Fitted(rs[0].config))
    for seed in (0, 2):
        out = seed_average.fit_seeds(
            TrainConfig(seed=seed, average_seeds=3), fit, synthetic["valid"]
        )
        assert (out.config.seed, out.config.average_seeds) == (seed, 3)
    assert seen == [
        (0, 1, None), (1, 1, 2.0), (2, 1, 2.0), (6, 1, None), (7, 1, 2.0), (8, 1, 2.0)
    ]  # fmt: skip
