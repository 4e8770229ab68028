"""Splits that are legal but cannot support the run: a clear error or a truthful note
(train/data_checks.py and where the parts of a method read the splits)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError
from guardrail_dro.train.data_checks import class_notes, ungrouped_note, valid_size_notes
from guardrail_dro.train.losses import GroupDROLoss
from guardrail_dro.train.metrics import compute_metrics
from guardrail_dro.train.rank_selection import unusable_fold
from guardrail_dro.train.run import Run
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig


def _fit(method: str, train, valid, backbone: Path, cache: Path, **kw):
    cfg = TrainConfig(
        method=method, backbone=str(backbone), cache_dir=cache, progress=False, epochs=1, **kw
    )
    return BiLevelTrainer(cfg).fit(train, valid)


def _edit(ds: AnnotatedDataset, n: int | None = None, **update) -> AnnotatedDataset:
    """The first ``n`` items of ``ds`` with ``update`` applied to each (a function of
    the item and its position, or a value)."""
    items = ds.items[:n] if n is not None else ds.items
    out = []
    for i, it in enumerate(items):
        new = {k: (v(it, i) if callable(v) else v) for k, v in update.items()}
        out.append(it.model_copy(update=new))
    return AnnotatedDataset(out, ds.schema, name=ds.name)


@pytest.fixture(scope="module")
def small(synthetic):
    return synthetic["train"].subset(range(80), name="train"), synthetic["valid"]


def test_every_train_item_also_in_valid_names_the_option_that_keeps_them(
    small, tiny_backbone, tmp_path
) -> None:
    """Before: the overlap left no train item and the tokenizer failed (IndexError)."""
    valid = small[1].subset(range(20), name="valid")
    with pytest.raises(
        DataError, match=r"no training items left after dropping the 20 .*keep-overlap"
    ):
        _fit("soft", valid, valid, tiny_backbone, tmp_path)


def test_gold_on_a_one_item_valid_says_how_many_it_needs(small, tiny_backbone, tmp_path) -> None:
    """Before: the empty 20% reached the head as a 0x0 matrix (RuntimeError)."""
    one = small[1].subset(range(1), name="valid")
    with pytest.raises(DataError, match="at least 5 valid items.*valid has 1"):
        _fit("gold", small[0], one, tiny_backbone, tmp_path)


def test_tiny_valid_is_noted_and_its_capacity_cv_falls_back(small, tiny_backbone, tmp_path):
    """A 1-item valid: the run notes it, and the estimator's CV, which scored NaN for
    every candidate and "chose" among them, keeps its defaults and says why."""
    train, valid = small
    res = _fit("ours", train, valid.subset(range(1), name="valid"), tiny_backbone, tmp_path)
    assert any(n.startswith("valid has 1 gold item(s)") for n in res.notes), res.notes
    assert any("group of 1 item is noise" in n for n in res.notes), res.notes
    cv = [n for n in res.notes if n.startswith("estimator rank")]
    assert cv and "not cross-validated" in cv[0] and "nan" not in cv[0], cv


def test_valid_size_notes_name_the_smallest_groups() -> None:
    schema = LabelSchema(classes=("safe", "hate"), safe=("safe",))
    from guardrail_dro.data.items import Item

    groups = ["a"] * 30 + ["b"] * 3 + ["c"] * 1 + ["d"] * 12
    valid = AnnotatedDataset(
        [Item(item_id=str(i), text=f"t{i}", gold="safe", group=g) for i, g in enumerate(groups)],
        schema,
    )
    notes = valid_size_notes(valid)
    assert notes[0].startswith("valid has 46 gold item(s)")
    assert "'c' (1), 'b' (3)" in notes[1] and "'a'" not in notes[1] and "'d'" not in notes[1]
    assert "a group of 1 item is noise" in notes[1]
    big = AnnotatedDataset(
        [Item(item_id=str(i), text=f"t{i}", gold="safe", group=f"g{i % 4}") for i in range(120)],
        schema,
    )
    assert valid_size_notes(big) == []


def test_a_fold_without_usable_items_is_named() -> None:
    gold = torch.tensor([1])
    assert unusable_fold(torch.tensor([[1, 1]]), gold, seed=0) is not None
    labels = torch.tensor([[0, 0], [1, -1], [1, 1], [0, 1]])
    assert unusable_fold(labels, torch.tensor([0, 1, 1, 0]), seed=0) is None


def test_valid_items_without_a_group_are_noted(small, tiny_backbone, tmp_path) -> None:
    train, valid = small
    blank = _edit(valid, group=lambda it, i: None if i < 7 else it.group)
    res = _fit("mv", train, blank, tiny_backbone, tmp_path)
    want = f"valid: 7 of {len(valid)} items have no group: they count in accuracy and in no group"
    assert any(n.startswith(want) for n in res.notes), res.notes
    full = _fit("mv", train, valid, tiny_backbone, tmp_path)
    assert not any("have no group" in n for n in full.notes)


def test_a_valid_split_without_any_group_is_noted(small, tiny_backbone, tmp_path) -> None:
    """Before: only a valid with some blank groups got a note; one with none at all
    (no group column) got nothing, and its worst-group columns showed '-' unexplained."""
    train, valid = small
    flat = _edit(valid, group=None)
    assert ungrouped_note(flat) == (
        f"valid has no groups (--group-col): none of its {len(valid)} items has a group, "
        "so there is no group or worst-group accuracy, and the epoch and checkpoint are "
        "chosen by accuracy, not by the worst group"
    )
    assert ungrouped_note(valid) is None
    res = _fit("mv", train, flat, tiny_backbone, tmp_path)
    assert ungrouped_note(flat) in res.notes, res.notes


class _Features:
    """Features where item i of a split sits at (its value, 0): valid's groups have
    centroids at 0 ('g1') and 10 ('g2')."""

    device = torch.device("cpu")
    dim = 2

    def __init__(self, values: dict[str, list[float]]) -> None:
        self.values = values

    def features(self, split: str, idx: torch.Tensor | None) -> torch.Tensor:
        x = torch.tensor(self.values[split])
        return torch.stack([x, torch.zeros_like(x)], 1)


def test_dro_groups_keep_the_train_groups_valid_knows() -> None:
    """Before: one train group unknown to valid turned every item into a pseudo-group
    with a note saying train had no groups."""
    from guardrail_dro.data.items import Item

    schema = LabelSchema(classes=("safe", "hate"), safe=("safe",))

    def ds(groups: list[str | None], name: str) -> AnnotatedDataset:
        items = [
            Item(item_id=f"{name}{i}", text=f"{name} {i}", gold="safe", group=g)
            for i, g in enumerate(groups)
        ]
        return AnnotatedDataset(items, schema, name=name)

    valid = ds(["g1", "g1", "g2", "g2"], "valid")
    # Train item 0 says g2 but sits near g1's centroid: a known group is kept, not guessed.
    train = ds(["g2", "g1", "g9", "g9", None], "train")
    src = _Features({"valid": [0.0, 0.0, 10.0, 10.0], "train": [0.0, 9.0, 1.0, 9.0, 8.0]})
    notes: list[str] = []
    run = Run(SimpleNamespace(method="dro-mv"), train, valid, valid, src, (), notes)  # type: ignore[arg-type]
    groups = GroupDROLoss._train_groups(run)
    assert groups.tolist() == [1, 0, 0, 1, 1]
    assert len(notes) == 1 and "train has no groups" not in notes[0], notes
    assert notes[0].startswith("dro-mv: 3 of 5 train items (1 without a group; 2 in group(s)")
    assert "'g9'" in notes[0] and "the other 2 keep their own group" in notes[0]


def test_valid_only_annotators_are_noted(small, tiny_backbone, tmp_path) -> None:
    train, valid = small
    extra = _edit(
        valid,
        annotations=lambda it, i: (
            *it.annotations,
            it.annotations[0].model_copy(update={"annotator": "vonly"}),
        ),
    )
    res = _fit("ours", train, extra, tiny_backbone, tmp_path, estimator_rank=0)
    assert any(n.startswith("valid: annotator(s) 'vonly' label no train item") for n in res.notes)


def test_disjoint_valid_annotators_are_not_called_absent(small, tiny_backbone, tmp_path) -> None:
    """Before: 'valid has no annotator labels to cross-validate on' (it has some)."""
    train, valid = small
    renamed = _edit(
        valid,
        annotations=lambda it, i: tuple(
            a.model_copy(update={"annotator": f"x_{a.annotator}"}) for a in it.annotations
        ),
    )
    res = _fit("ours", train, renamed, tiny_backbone, tmp_path)
    assert not any("valid has no annotator labels" in n for n in res.notes), res.notes
    cv = [n for n in res.notes if n.startswith("estimator rank")]
    assert cv and "valid's annotators label no train item" in cv[0], cv


def test_classes_train_never_labels_or_valid_never_has_are_noted(
    small, tiny_backbone, tmp_path
) -> None:
    train, valid = small
    wide = LabelSchema(classes=(*valid.schema.classes, "sexual"), safe=valid.schema.safe)
    train = AnnotatedDataset(train.items, wide, name="train")
    last = valid.schema.classes[-1]
    valid = AnnotatedDataset(
        # valid's last class becomes the new one: train never labels it, valid lacks `last`
        [it.model_copy(update={"gold": "sexual" if it.gold == last else it.gold}) for it in valid],
        wide,
        name="valid",
    )
    n = sum(it.gold == "sexual" for it in valid)
    res = _fit("mv", train, valid, tiny_backbone, tmp_path)
    want = f"class 'sexual' has no training label: the classifier cannot learn it ({n} valid"
    assert any(note.startswith(want) for note in res.notes), res.notes
    assert any(f"'{last}' have no valid gold item" in note for note in res.notes), res.notes


def test_class_notes_without_training_labels_only_check_valid() -> None:
    """A teacher's targets are probabilities, not labels: nothing to count on train."""
    notes = class_notes(("a", "b", "c"), None, np.array([0, 0, 1]))
    assert notes == [
        "class(es) 'c' have no valid gold item: valid cannot score them (no recall for "
        "them, and selection never rewards learning them)"
    ]
    assert class_notes(("a", "b"), np.array([[0, -1], [1, 1]]), np.array([0, 1])) == []


def test_progress_shows_no_worst_group_without_groups(small, tiny_backbone, tmp_path, capsys):
    """Before: worst=0.000 on every step of a valid without groups."""
    m = compute_metrics(np.array([0, 1]), np.array([0, 0]), num_classes=2)
    assert m.progress() == {"acc": "0.500"}
    grouped = compute_metrics(
        np.array([0, 1]), np.array([0, 0]), num_classes=2, groups=np.array([0, 1])
    )
    assert grouped.progress() == {"acc": "0.500", "worst": "0.000"}
    train, valid = small
    flat = _edit(valid, group=None)
    cfg = TrainConfig(method="mv", backbone=str(tiny_backbone), cache_dir=tmp_path, epochs=1)
    BiLevelTrainer(cfg).fit(train, flat)
    err = capsys.readouterr().err
    assert "acc=" in err and "worst=" not in err


def test_a_train_file_without_annotator_columns_names_itself_and_its_columns(
    small, tmp_path
) -> None:
    """Before: "train has no annotator labels to learn from", naming neither the file
    nor its columns (``rater_*`` matches no name rule) nor --annotator-cols."""
    from guardrail_dro.data.readers import read_dataset
    from guardrail_dro.train.data_checks import check_train_annotators

    p = tmp_path / "raters.csv"
    p.write_text("text,rater_1,rater_2\na,safe,hate\nb,hate,hate\n")
    train = read_dataset(p, schema=small[0].schema)
    assert train.annotators == ()
    with pytest.raises(DataError, match=r"raters.csv: no annotator labels to learn from: no "
                       r"column was read as an annotator's \(its columns are \['text', "
                       r"'rater_1', 'rater_2'\]\).*--annotator-cols"):  # fmt: skip
        check_train_annotators(train, ["mv"], p)
    check_train_annotators(train, ["gold"], p)  # gold learns from valid's gold
    check_train_annotators(small[0], ["mv"], p)
    # The trainer's own check (no file to name) says where annotators come from too.
    with pytest.raises(DataError, match=r"raters: no annotator labels.*--annotator-cols"):
        BiLevelTrainer(TrainConfig(method="mv", progress=False)).fit(train, small[1])
