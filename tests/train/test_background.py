"""Background-safe text in training: its items join each step with the safe class as a
hard target at their weight; the weight and amount are chosen by the stated rule; the
manifest records the choice and the held-out block rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from guardrail_dro.train.background import (
    RULE,
    BackgroundTerm,
    GridPoint,
    block_rate,
    choose,
    join,
    valid_threshold,
)
from guardrail_dro.train.modeldir import TrainedModel
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig


def _term(n: int, **kw) -> BackgroundTerm:
    """A background term on the CPU (``kw``: BackgroundTerm's keywords)."""
    return BackgroundTerm(n, device=torch.device("cpu"), **kw)


def test_join_is_the_weighted_mean_over_the_joined_batch() -> None:
    term = _term(
        10, train_items=100, batch_size=20, safe_mask=[False, False, True], weight=3.0, seed=0
    )
    assert term.per_step == 2  # one pass through the background per epoch of train
    logits = torch.randn(2, 3)
    got = join(torch.tensor(1.5), 20, [term], [logits])
    ce = -torch.log_softmax(logits, -1)[:, 2]
    assert torch.allclose(got, (20 * 1.5 + 3.0 * ce.sum()) / 22)
    one = _term(
        10, train_items=100, batch_size=20, safe_mask=[False, False, True], weight=1.0, seed=0
    )
    # weight 1: exactly the plain mean over the joined batch
    per_item = torch.tensor([0.5, 1.0, 2.0])
    joined = join(per_item.mean(), 3, [one], [logits])
    assert torch.allclose(joined, torch.cat([per_item, ce]).mean())


def test_every_background_item_is_served_once_per_pass() -> None:
    term = _term(9, train_items=30, batch_size=10, safe_mask=[True, False], weight=1.0, seed=4)
    assert term.per_step == 3
    first = torch.cat([term.next_index() for _ in range(3)]).tolist()
    assert sorted(first) == list(range(9))


def _point(w: float, f: float, worst: float, block: float) -> GridPoint:
    return GridPoint(
        weight=w,
        fraction=f,
        items=10,
        valid_worst_group_accuracy=worst,
        valid_accuracy=worst,
        heldout_block_rate=block,
    )


def test_rule_best_valid_among_low_block_rates_else_lowest_block_rate() -> None:
    points = [_point(1, 1, 0.60, 0.05), _point(2, 1, 0.55, 0.01), _point(4, 1, 0.50, 0.0)]
    assert choose(points, bound=0.02) == 1  # best valid of those under the bound
    assert choose(points, bound=0.10) == 0
    assert choose(points, bound=0.001) == 2  # the only one under a tight bound
    assert choose([_point(1, 1, 0.6, 0.3), _point(2, 1, 0.5, 0.2)], bound=0.02) == 1
    # ties on valid: the smaller weight
    assert choose([_point(2, 1, 0.6, 0.0), _point(1, 1, 0.6, 0.0)]) == 1


def test_valid_threshold_maximises_worst_group_binary_accuracy() -> None:
    toxic = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.35])
    is_toxic = np.array([False, False, True, True, True, False])
    groups = np.array([0, 0, 0, 1, 1, 1])
    thr = valid_threshold(toxic, is_toxic, groups)
    assert thr == pytest.approx(0.3)  # 0.3 and 0.8+ blocked, 0.35 too: group 1 at 2/3
    assert block_rate(np.array([0.1, 0.5, 0.7]), 0.5) == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def background_file(synthetic, tmp_path_factory) -> Path:
    # Texts the data itself calls toxic: without the background the head learns them as
    # toxic, so how safe it finds them shows how much the background item trained.
    toxic = [it.text for it in synthetic["test"] if it.gold != "safe"][:60]
    path = tmp_path_factory.mktemp("bg") / "background.txt"
    path.write_text("\n".join(toxic) + "\n")
    return path


def _fit(synthetic, backbone: Path, cache: Path, **kw):
    kw = {"epochs": 4, **kw}
    cfg = TrainConfig(method="mv", backbone=str(backbone), cache_dir=cache, progress=False, **kw)
    return BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])


def test_background_items_train_as_safe_at_their_weight(
    synthetic, tiny_backbone: Path, background_file: Path, tmp_path: Path
) -> None:
    from guardrail_dro.data.background import load_background

    texts = list(load_background([str(background_file)]).train)
    safe = synthetic["train"].schema.index("safe")
    p_safe = {}
    for w in (0.01, 50.0):
        r = _fit(
            synthetic,
            tiny_backbone,
            tmp_path / "c",
            background_safe=[str(background_file)],
            background_weight=w,
            background_fraction=1.0,
        )
        assert r.background is not None and r.background.weight == w
        assert r.background.items == len(texts) and r.background.chosen_by == "set"
        p_safe[w] = float(r.predict_proba(texts)[:, safe].mean())
    assert p_safe[50.0] > p_safe[0.01] + 0.2, p_safe


def test_the_manifest_records_the_choice_and_the_grid(
    synthetic, tiny_backbone: Path, background_file: Path, tmp_path: Path
) -> None:
    r = _fit(
        synthetic,
        tiny_backbone,
        tmp_path / "c",
        background_safe=[str(background_file)],
        background_fraction=1.0,
        epochs=1,
    )
    TrainedModel.from_result(r, {"train": "x", "valid": "y"}).save(tmp_path / "m")
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    bg = m["background"]
    assert bg["chosen_by"] == RULE and len(bg["grid"]) == 3  # the weights, one amount
    assert bg["weight"] in {p["weight"] for p in bg["grid"]}
    assert m["config"]["background_weight"] == bg["weight"]  # the config it trained with
    assert 0.0 <= bg["heldout_block_rate"] <= 1.0 and bg["heldout_items"] >= 1
    assert bg["sources"] == [str(background_file)]
    assert TrainedModel.load(tmp_path / "m").manifest.background is not None


def test_a_harmful_term_is_minus_log_of_the_unsafe_mass() -> None:
    term = _term(
        4,
        train_items=8,
        batch_size=4,
        safe_mask=[True, False, False],
        weight=2.0,
        seed=0,
        harmful=True,
    )
    logits = torch.randn(2, 3, requires_grad=True)
    p = torch.softmax(logits, -1)
    assert torch.allclose(term.losses(logits), -torch.log(1 - p[:, 0]))
    got = join(torch.tensor(0.7), 6, [term], [logits])
    assert torch.allclose(got, (6 * 0.7 + 2.0 * -torch.log(1 - p[:, 0]).sum()) / 8)
    got.backward()
    assert logits.grad is not None and (logits.grad[:, 0] > 0).all()  # the safe logit falls
    # the unsafe classes are not told apart: each one's gradient follows its own mass
    assert torch.allclose(logits.grad[:, 1] / logits.grad[:, 2], p[:, 1] / p[:, 2])


def test_harmful_text_needs_safe_background_beside_it() -> None:
    with pytest.raises(ValueError, match="background_harmful needs background_safe"):
        TrainConfig(background_harmful=["harmful-requests"])


@pytest.fixture(scope="module")
def harmful_file(synthetic, tmp_path_factory) -> Path:
    # Texts the data calls safe: how unsafe the head finds them shows the harmful term.
    safe = [it.text for it in synthetic["test"] if it.gold == "safe"][:60]
    path = tmp_path_factory.mktemp("bad") / "harmful.txt"
    path.write_text("\n".join(safe) + "\n")
    return path


def test_harmful_items_train_as_not_safe_at_their_weight(
    synthetic,
    tiny_backbone: Path,
    background_file: Path,
    harmful_file: Path,
    tmp_path: Path,
) -> None:
    from guardrail_dro.data.background import load_background

    bad = load_background([str(harmful_file)])
    safe = np.asarray(synthetic["train"].schema.safe_mask())
    p_safe = {}
    for w in (0.01, 50.0):
        r = _fit(
            synthetic,
            tiny_backbone,
            tmp_path / "c",
            background_safe=[str(background_file)],
            background_weight=1.0,
            background_fraction=1.0,
            background_harmful=[str(harmful_file)],
            harmful_weight=w,
        )
        b = r.background
        assert b is not None and b.harmful_weight == w and b.harmful_sources == [str(harmful_file)]
        assert b.harmful_items == len(bad.train) and b.harmful_heldout_items == len(bad.heldout)
        assert b.harmful_heldout_block_rate is not None and "harmful" in b.summary()
        p_safe[w] = float(r.predict_proba(list(bad.train))[:, safe].sum(1).mean())
    assert p_safe[0.01] > p_safe[50.0] + 0.2, p_safe
    TrainedModel.from_result(r, {"train": "x", "valid": "y"}).save(tmp_path / "m")
    card = " ".join((tmp_path / "m" / "README.md").read_text().split())
    assert f"harmful text (trained as not safe, weight 50): {harmful_file}" in card
    assert f"background-safe text (trained as safe, weight 1): {background_file}" in card


def test_a_safe_term_with_several_safe_classes_is_minus_log_of_their_mass() -> None:
    term = _term(3, train_items=6, batch_size=2, safe_mask=[True, True, False], weight=1.0, seed=0)
    logits = torch.randn(3, 3)
    p = torch.softmax(logits, -1)
    assert torch.allclose(term.losses(logits), -torch.log(p[:, 0] + p[:, 1]))
