"""The method table: names, parsing, and that a new row is all a new method needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.estimator_targets import EstimatorTargets
from guardrail_dro.train.losses import GroupDROLoss, MeanLoss
from guardrail_dro.train.methods import METHODS, TABLE, WITH_ARGUMENT, Method, lookup
from guardrail_dro.train.targets import SingleAnnotator, UniformSoft
from guardrail_dro.train.trainer import BiLevelTrainer


def test_methods_are_the_table_in_benchmark_order() -> None:
    assert METHODS == ("ours", "ours-agree", "soft", "mv", "ds", "dro-mv", "best-single", "gold")
    assert tuple(TABLE) == METHODS


def test_the_table_in_the_docstring_is_the_table_in_code() -> None:
    """methods.py draws its table for readers; each row must name the row's classes."""
    from guardrail_dro.train import methods

    rows = {line.split()[0]: line for line in (methods.__doc__ or "").splitlines() if line}
    drawn = {**TABLE, **{f"{k}:<a>": m for k, m in WITH_ARGUMENT.items()}}
    for name, m in drawn.items():
        assert name in rows, name
        assert m.targets.__name__ in rows[name] and m.loss.__name__ in rows[name], rows[name]


@pytest.mark.parametrize("name", [m for m in METHODS if TABLE[m].best_of is None])
def test_every_single_run_method_builds_fresh_parts(name: str) -> None:
    method, argument = lookup(name)
    a, b = method.build(argument), method.build(argument)
    assert a[0] is not b[0] and a[1] is not b[1]  # one pair per run: no state shared
    assert isinstance(a[0], EstimatorTargets) == name.startswith("ours")
    assert isinstance(a[1], GroupDROLoss) == (name == "dro-mv")


def test_single_annotator_methods_carry_their_argument() -> None:
    method, argument = lookup("single:gpt-4:turbo")
    assert argument == "gpt-4:turbo"
    targets, loss = method.build(argument)
    assert isinstance(targets, SingleAnnotator) and targets.annotator == "gpt-4:turbo"
    assert isinstance(loss, MeanLoss)
    assert TrainConfig(method="single:x").uses_estimator is False
    assert TrainConfig(method="ours").uses_estimator is True


@pytest.mark.parametrize("name", ["magic", "single:", "single", "ours:x"])
def test_unknown_methods_list_the_known_ones(name: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown method '{name}': choose one of ours, "):
        lookup(name)


def test_a_new_method_is_one_table_row(
    monkeypatch: pytest.MonkeyPatch, synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """Uniform soft labels under a GroupDRO classifier loss: no method has it, and the
    trainer takes it from a row alone (group weights in the result)."""
    monkeypatch.setitem(TABLE, "soft-dro", Method(UniformSoft, GroupDROLoss))
    cfg = TrainConfig(
        method="soft-dro",
        backbone=str(tiny_backbone),
        cache_dir=tmp_path,
        epochs=2,
        progress=False,
    )
    res = BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])
    assert res.estimator is None and res.annotator_weight_by_group is None
    assert res.group_weights is not None
    assert set(res.group_weights) == set(synthetic["valid"].groups)
    assert sum(res.group_weights.values()) == pytest.approx(1.0)
