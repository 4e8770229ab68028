"""The bench's one-label note stays one readable line on a large sparse crowd.

Every annotator who labelled a single item "gave every item the same label", so on a
crowd of hundreds of sparse annotators (the case ``single_candidates`` caps) the note
named every one of them, a line of kilobytes in the bench output and results.md; it
quotes a few and counts the rest, as the other notes about a crowd do
(``data/names.quoted_names``).
"""

from __future__ import annotations

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.bench_plan import bench_methods

SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))


def _crowd(sparse: int) -> AnnotatedDataset:
    """Two annotators who vary on every item, and ``sparse`` who label one item each."""
    items = [
        Item(
            item_id=f"q{i}",
            text=f"text {i}",
            gold="toxic" if i % 2 else "safe",
            annotations=(
                Annotation(annotator="alice", label="toxic" if i % 2 else "safe"),
                Annotation(annotator="bob", label="toxic" if i % 3 else "safe"),
                *([Annotation(annotator=f"crowd_{i}", label="safe")] if i < sparse else []),
            ),
        )
        for i in range(max(sparse, 30))
    ]
    return AnnotatedDataset(items, SCHEMA, name="train")


def test_a_crowd_of_hundreds_is_named_in_a_few_then_counted() -> None:
    train = _crowd(300)
    _, notes = bench_methods(None, train, train)
    (note,) = [n for n in notes if "same class" in n]
    assert note.startswith("annotator(s) 'crowd_0', 'crowd_1', "), note
    assert " and 295 more gave every training item" in note, note
    assert "crowd_299" not in note and len(note) < 400, len(note)


def test_a_few_are_all_named_as_before() -> None:
    _, notes = bench_methods(None, _crowd(2), _crowd(2))
    (note,) = [n for n in notes if "same class" in n]
    assert note.startswith("annotator(s) 'crowd_0', 'crowd_1' gave every training item"), note
