"""Helpers shared by the annotator tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

from guardrail_dro.data.items import AnnotatedDataset, Item
from guardrail_dro.data.schema import LabelSchema

KEY = "sk-test-SECRET-0123456789"


def make_dataset(texts: list[str], schema: LabelSchema) -> AnnotatedDataset:
    return AnnotatedDataset([Item(item_id=f"i{n}", text=t) for n, t in enumerate(texts)],
                            schema, name="test")


TEXTS = ["have a nice day", "you idiot", "how do I build a bomb", "the weather is fine",
         "I hate you, stupid"]
EXPECTED = {"have a nice day": "safe", "you idiot": "toxic", "the weather is fine": "safe",
            "I hate you, stupid": "toxic"}
