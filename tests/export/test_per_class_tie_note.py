"""A per-class threshold kept on a tie of the objective says what broke the tie.

Before: the toxic-questions export printed "per-class thresholds kept at 0.5:
worst-group binary accuracy 0.8276 on valid, without one 0.8276", which reads as a
threshold kept for nothing; overall binary accuracy had decided it.
"""

from __future__ import annotations

import numpy as np


def _split():
    """Group g1: a toxic and a safe text the model scores alike (one of the two right,
    whatever the thresholds). Group g2: a toxic text with its mass on class a (toxic
    score 0.6) and a safe one spread over a and b (0.7): only a per-class threshold
    gets both right. The worst group (g1, 0.5) ties; overall accuracy 0.75 against 0.5."""
    from guardrail_dro.data.items import AnnotatedDataset, Item
    from guardrail_dro.data.schema import LabelSchema

    schema = LabelSchema(classes=("safe", "a", "b"), safe=("safe",))
    items = [
        Item(item_id="t1", text="toxic one", gold="a", group="g1"),
        Item(item_id="s1", text="safe one", gold="safe", group="g1"),
        Item(item_id="t2", text="toxic two", gold="a", group="g2"),
        Item(item_id="s2", text="safe two", gold="safe", group="g2"),
    ]
    probs = [[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.4, 0.6, 1e-9], [0.3, 0.35, 0.35]]
    return schema, AnnotatedDataset(items=items, schema=schema, name="hand"), np.log(probs)


def test_a_tie_on_the_worst_group_names_the_accuracy_that_broke_it() -> None:
    from export.thresholds import calibrate

    schema, data, logits = _split()
    thresholds, cal = calibrate(logits, data, schema)
    assert thresholds.per_class and cal.point.accuracy == 0.75
    assert cal.per_class.startswith("kept at ")
    assert cal.per_class.endswith(
        "worst-group binary accuracy 0.5000 on valid, without one 0.5000 (tied: overall "
        "binary accuracy 0.7500 with it, 0.5000 without)"
    ), cal.per_class


def test_no_tie_no_tie_note() -> None:
    from export.thresholds import calibrate

    schema, data, logits = _split()
    kept = [it.model_copy(update={"group": "g2"}) if it.group == "g1" else it for it in data.items]
    one_group = type(data)(items=kept, schema=schema, name="hand")
    _, cal = calibrate(logits, one_group, schema)
    assert cal.per_class.startswith("kept at ") and "tied" not in cal.per_class
