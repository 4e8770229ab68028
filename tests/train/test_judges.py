"""Annotators as judges: each annotator's labels scored on test, no training."""

from __future__ import annotations

import pytest

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.judges import JudgeInfo, judge_table, score_judge, score_judges

SCHEMA = LabelSchema(classes=("hate", "fraud", "safe"), safe=("safe",))


def _item(i: int, gold: str, group: str, **labels: str) -> Item:
    anns = tuple(Annotation(annotator=a, label=lab) for a, lab in labels.items())
    return Item(item_id=str(i), text=f"t{i}", annotations=anns, gold=gold, group=group)


@pytest.fixture()
def tiny() -> AnnotatedDataset:
    return AnnotatedDataset(
        [
            _item(0, "hate", "g1", a="hate", b="safe"),
            _item(1, "fraud", "g1", a="hate", b="fraud"),
            _item(2, "safe", "g2", a="fraud"),
            _item(3, "safe", "g2", a="safe", b="safe"),
        ],
        SCHEMA,
    )


def test_scores_by_hand(tiny: AnnotatedDataset) -> None:
    a = score_judge(tiny, "a", JudgeInfo(who="LLM A", model="m", usd_per_1k=1.5))
    # a: hate ok, fraud->hate (wrong class, still toxic), safe->fraud (false positive), ok
    assert (a.items, a.of_items, a.accuracy, a.binary_accuracy) == (4, 4, 0.5, 0.75)
    assert (a.toxic_precision, a.toxic_recall, a.toxic_fpr) == (2 / 3, 1.0, 0.5)
    assert (a.worst_group, a.worst_group_binary_accuracy) == ("g2", 0.5)
    assert (a.who, a.model, a.usd_per_1k) == ("LLM A", "m", 1.5)
    b = score_judge(tiny, "b")  # scored on the 3 items it labelled only
    assert (b.items, b.accuracy, b.binary_accuracy, b.toxic_recall, b.toxic_fpr) == (
        3,
        2 / 3,
        2 / 3,
        0.5,
        0.0,
    )


def test_no_safe_class_no_binary_metrics(tiny: AnnotatedDataset) -> None:
    plain = AnnotatedDataset(tiny.items, LabelSchema(classes=SCHEMA.classes))
    a = score_judge(plain, "a")
    assert a.accuracy == 0.5 and a.binary_accuracy is None and a.toxic_fpr is None


def test_table_says_n_a_for_people_and_names_unpriced_models(tiny: AnnotatedDataset) -> None:
    judges = score_judges(tiny, {"a": JudgeInfo(model="gpt-x"), "b": JudgeInfo(who="human")})
    table = judge_table(judges)
    assert "no price for gpt-x" in table and "| `b` (human) | 3 / 4 |" in table
    (b_row,) = [line for line in table.splitlines() if line.startswith("| `b`")]
    assert b_row.endswith("| n/a |")


def test_toxic_questions_judges_match_the_dataset_readme() -> None:
    from guardrail_dro.data.bundled import load_bundled

    test = load_bundled("toxic-questions", ("test",))[0]["test"]
    judges = score_judges(test)
    # The dataset README's accuracy vs gold on test.csv, per annotator column.
    readme = {"label_1": 0.623, "label_2": 0.559, "label_3": 0.532, "label_4": 0.771,
              "label_5": 0.837, "label_6": 0.353}
    for a, acc in readme.items():
        assert judges[a].items == 1710
        assert judges[a].accuracy == pytest.approx(acc, abs=5e-4), a
    assert judges["label_3"].toxic_fpr == 1.0  # label_3 never uses the safe class 14
