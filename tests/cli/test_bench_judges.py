"""The bench command's judge rows: who each annotator is and what 1,000 texts cost."""

from __future__ import annotations

from pathlib import Path

from guardrail_dro.cli.annotator_info import annotator_info
from guardrail_dro.data.bundled import load_bundled
from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item


def test_bundled_annotators_are_named_and_llms_priced() -> None:
    test = load_bundled("toxic-questions", ("test",))[0]["test"]
    info = annotator_info("toxic-questions:test", test)
    for human in ("label_1", "label_2", "label_3"):
        assert info[human].model is None and info[human].usd_per_1k is None
    assert [info[a].model for a in ("label_4", "label_5", "label_6")] == [
        "gpt-4",
        "gpt-4-turbo",
        "claude-2",
    ]
    gpt4, turbo, claude = (info[a].usd_per_1k for a in ("label_4", "label_5", "label_6"))
    assert gpt4 and turbo and claude
    assert gpt4 > turbo > claude > 0  # list prices 30/60, 10/30, 8/24 USD per M tokens


def test_other_data_takes_the_model_its_annotations_carry(tmp_path: Path) -> None:
    test = load_bundled("toxic-questions", ("test",))[0]["test"]
    items = [
        Item(
            item_id="1",
            text="hello",
            annotations=(
                Annotation(annotator="gpt", label="14", kind="llm", model="gpt-4o-mini"),
                Annotation(annotator="odd", label="14", kind="llm", model="my-own-model"),
                Annotation(annotator="pat", label="14"),
            ),
            gold="14",
        )
    ]
    info = annotator_info(tmp_path / "test.jsonl", AnnotatedDataset(items, test.schema))
    assert info["gpt"].model == "gpt-4o-mini" and (info["gpt"].usd_per_1k or 0) > 0
    assert info["odd"].model == "my-own-model" and info["odd"].usd_per_1k is None
    assert info["pat"].model is None and info["pat"].usd_per_1k is None
