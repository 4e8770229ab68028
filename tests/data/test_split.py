"""``split_dataset``: gold items to valid (and a seeded, stratified share to test), the
rest to train, no text in two splits; its refusals."""

from __future__ import annotations

from collections import Counter

import pytest

from guardrail_dro.data import DatasetSplits, split_dataset
from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item, find_leakage
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, DataError

SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))


def _item(i: int, text: str, gold: str | None = None, group: str | None = None) -> Item:
    vote = Annotation(annotator="ann", label="toxic" if i % 3 else "safe")
    return Item(item_id=f"q{i}", text=text, annotations=(vote,), gold=gold, group=group)


def _dataset(gold_groups: dict[str, int], n_train: int = 10) -> AnnotatedDataset:
    """``n_train`` items without gold, then for each group that many gold items."""
    items = [_item(i, f"train text {i}") for i in range(n_train)]
    for g, n in gold_groups.items():
        for j in range(n):
            i = len(items)
            items.append(_item(i, f"gold text {i}", "toxic" if j % 2 else "safe", g))
    return AnnotatedDataset(items, SCHEMA, name="labels")


def _ids(ds: AnnotatedDataset | None) -> list[str]:
    assert ds is not None
    return [it.item_id for it in ds]


def test_gold_items_go_to_valid_the_rest_to_train_in_order() -> None:
    items = [
        _item(0, "a", "safe", "x"),
        _item(1, "b"),
        _item(2, "c", "toxic", "y"),
        _item(3, "d"),
    ]
    parts = split_dataset(AnnotatedDataset(items, SCHEMA, name="labels"))
    assert isinstance(parts, DatasetSplits)
    assert _ids(parts.train) == ["q1", "q3"] and _ids(parts.valid) == ["q0", "q2"]
    assert parts.test is None and list(parts.splits()) == ["train", "valid"]
    assert parts.valid.has_gold and parts.valid.schema == SCHEMA and parts.notes == ()
    assert parts.train.items[0] == items[1]  # annotations kept as they were


def test_test_share_is_stratified_by_group_and_valid_keeps_every_group() -> None:
    data = _dataset({"a": 20, "b": 10, "c": 1})
    parts = split_dataset(data, test_fraction=0.2, seed=3)
    assert parts.test is not None
    assert Counter(it.group for it in parts.test) == {"a": 4, "b": 2}
    assert Counter(it.group for it in parts.valid) == {"a": 16, "b": 8, "c": 1}
    assert len(parts.train) == 10 and list(parts.splits()) == ["train", "valid", "test"]
    assert parts.notes == (
        "group(s) 'c' in valid only: too few gold texts to spare one for test (each keeps "
        "one in valid)",
    )
    all_ids = _ids(parts.train) + _ids(parts.valid) + _ids(parts.test)
    assert sorted(all_ids) == sorted(_ids(data))  # every item in exactly one split


def test_the_total_test_share_is_rounded_once_not_per_group() -> None:
    # 3 groups of 5 at 0.3: 1.5 each; per-group rounding would give 6 (or 3), not 4.5 -> 5
    parts = split_dataset(_dataset({"a": 5, "b": 5, "c": 5}), test_fraction=0.3)
    assert len(_ids(parts.test)) == 5


def test_without_groups_test_is_stratified_by_gold_label() -> None:
    items = [_item(i, f"t{i}") for i in range(5)]
    items += [_item(i, f"g{i}", "toxic" if i < 17 else "safe") for i in range(5, 25)]
    parts = split_dataset(AnnotatedDataset(items, SCHEMA), test_fraction=0.5, seed=1)
    assert parts.test is not None
    assert Counter(it.gold for it in parts.test) == {"toxic": 6, "safe": 4}
    assert Counter(it.gold for it in parts.valid) == {"toxic": 6, "safe": 4}


def test_the_draw_depends_on_the_seed_alone() -> None:
    data = _dataset({"a": 30, "b": 30})
    draws = [_ids(split_dataset(data, test_fraction=0.3, seed=s).test) for s in range(4)]
    assert draws[0] == _ids(split_dataset(data, test_fraction=0.3, seed=0).test)
    assert len({tuple(d) for d in draws}) == 4  # another seed, another draw
    assert all(len(d) == 18 for d in draws)


def test_no_text_is_in_two_splits() -> None:
    """Repeated texts, spelt differently: a gold text twice, a gold text also without
    gold, a train text twice."""
    items = [
        _item(0, "Same gold", "safe", "x"),
        _item(1, "same   GOLD", "safe", "x"),
        _item(2, "gold and crowd", "toxic", "x"),
        _item(3, "Gold and crowd "),
        _item(4, "crowd only"),
        _item(5, "CROWD only"),
    ]
    items += [_item(i, f"gold {i}", "safe", "x") for i in range(6, 12)]
    data = AnnotatedDataset(items, SCHEMA, name="labels")
    for seed in range(6):
        parts = split_dataset(data, test_fraction=0.5, seed=seed)
        assert not find_leakage(parts.splits()).any
        placed = [i for ds in parts.splits().values() for i in _ids(ds)]
        assert sorted(placed) == sorted(f"q{i}" for i in range(12) if i != 3)
        assert _ids(parts.train) == ["q4", "q5"]
    notes = " ".join(parts.notes)
    assert "1 item(s) without gold share their text with a gold item" in notes
    assert "e.g. 'q3'" in notes
    assert "1 text(s) have gold on more than one item" in notes


def test_a_non_gold_copy_of_a_gold_text_is_noted_without_a_test_split() -> None:
    items = [_item(0, "hi", "safe"), _item(1, "Hi"), _item(2, "bye")]
    parts = split_dataset(AnnotatedDataset(items, SCHEMA, name="labels"))
    assert _ids(parts.train) == ["q2"] and _ids(parts.valid) == ["q0"]
    assert len(parts.notes) == 1 and parts.notes[0].startswith("1 item(s) without gold")


def test_no_gold_item_is_refused_with_what_to_do() -> None:
    data = AnnotatedDataset([_item(i, f"t{i}") for i in range(3)], SCHEMA, name="labels")
    with pytest.raises(DataError, match=r"labels: no item has a gold label.*--gold-col.*merge"):
        split_dataset(data)


def test_all_gold_is_refused_as_an_empty_train() -> None:
    data = AnnotatedDataset([_item(i, f"t{i}", "safe") for i in range(3)], SCHEMA, name="x")
    with pytest.raises(DataError, match="x: every item has a gold label, so train would be empty"):
        split_dataset(data)


def test_train_emptied_by_copies_of_gold_texts_is_refused() -> None:
    data = AnnotatedDataset([_item(0, "a", "safe"), _item(1, "A")], SCHEMA, name="x")
    with pytest.raises(DataError, match=r"the 1 item\(s\) without gold share their texts"):
        split_dataset(data)


@pytest.mark.parametrize("fraction", [-0.1, 0.95, 1.0, float("nan")], ids=str)
def test_a_fraction_outside_0_to_0_9_is_refused(fraction: float) -> None:
    with pytest.raises(ConfigError, match=r"test_fraction \(--test-fraction\) must be between"):
        split_dataset(_dataset({"a": 4}), test_fraction=fraction)


def test_a_fraction_that_puts_nothing_in_test_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"0.1 of 3 gold text\(s\) puts none in test"):
        split_dataset(_dataset({"a": 3}), test_fraction=0.1)
    with pytest.raises(ConfigError, match="each group keeps at least one in valid"):
        split_dataset(_dataset({"a": 1, "b": 1}), test_fraction=0.9)


def test_arguments_of_the_wrong_type_are_named() -> None:
    data = _dataset({"a": 4})
    with pytest.raises(TypeError, match="dataset must be an AnnotatedDataset, not list"):
        split_dataset([])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int, not bool"):
        split_dataset(data, seed=True)
    with pytest.raises(TypeError, match="test_fraction must be a number, not str"):
        split_dataset(data, test_fraction="0.2")  # type: ignore[arg-type]
