"""The model card: generated from the manifest, Hugging Face card format, test metrics
recorded later without breaking the directory's checksums."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from guardrail_dro.train.modeldir import TrainedModel

pytest.importorskip("torch")


def _card(d: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(d / "README.md")


def test_the_card_says_data_method_metrics_and_limits(tiny_model_dir: Path) -> None:
    m = TrainedModel.load(tiny_model_dir)
    card = _card(tiny_model_dir)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "text-classification"
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["accuracy"].metric_value == round(m.manifest.valid_metrics.accuracy, 4)
    assert results["accuracy"].dataset_split == "validation"
    text = card.text
    for c in m.schema.classes:
        assert f"| {c} |" in text
    assert m.manifest.data_hashes["train"][:16] in text
    assert "`ours`" in text and "GroupDRO" in text
    assert f"{m.manifest.valid_metrics.accuracy:.3f}" in text
    assert "Test metrics: not measured yet" in text
    assert "## Operating point" in text and "Not set yet" in text
    assert f"longer than {m.manifest.max_length} tokens are truncated" in text
    assert "README.md" in m.manifest.files  # checksummed like every file


def test_recorded_test_metrics_reach_manifest_and_card(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from guardrail_dro.train.metrics import score_split

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    test = synthetic["test"]
    metrics = score_split(test, TrainedModel.load(d).predict_proba(test.texts).argmax(1))
    TrainedModel.record_test_metrics(
        d, metrics, data_name="test.jsonl", data_hash=test.content_hash()
    )
    again = TrainedModel.load(d)  # every sha256 still matches, the card's included
    assert again.manifest.test_metrics == metrics
    assert again.manifest.data_hashes["test"] == test.content_hash()
    card = _card(d)
    splits = {(r.dataset_split, r.metric_type) for r in card.data.eval_results}
    assert ("test", "worst_group_accuracy") in splits and ("validation", "accuracy") in splits
    assert f"| test | acc | {metrics.accuracy:.3f} |" in card.text
    assert "not measured yet" not in card.text
    assert not list(d.glob(".*.new"))


def test_a_guard_card_states_the_operating_point() -> None:
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.train.metrics import Metrics
    from guardrail_dro.train.model_card import model_card
    from guardrail_dro.train.modeldir import TrainManifest

    schema = LabelSchema(classes=("ok", "hate", "self-harm"), safe=("ok",))
    man = TrainManifest(
        created="2026-01-01T00:00:00+00:00",
        method="single:gpt-4",
        config={"mode": "frozen"},
        backbone="org/encoder",
        normalize=True,
        max_length=64,
        num_classes=3,
        head_hidden=0,
        annotators=["gpt-4"],
        groups=["a"],
        data_hashes={"train": "0" * 64},
        valid_metrics=Metrics(n=10, accuracy=0.9, macro_f1=0.8),
        best_epoch=3,
    )
    text = model_card(
        man,
        schema,
        operating_point={"toxic": 0.35, "per_class": {"hate": 0.5, "self-harm": 0.2}},
        guard={"variants": {"int8": {"file": "model.int8.onnx", "parity": {"agreement": 0.99}}}},
    )
    assert "library_name: onnx" in text and "base_model: org/encoder" in text
    assert "reaches **0.35**" in text and "hate: 0.5, self-harm: 0.2" in text
    assert "| int8 | `model.int8.onnx` | agreement 0.99 |" in text
    assert "annotator 'gpt-4' alone" in text


def test_a_pipe_or_line_break_in_a_class_keeps_the_labels_table_whole(
    tiny_model_dir: Path,
) -> None:
    """A schema's "hate | harassment" ended the cell: the row had five cells, the safe
    column read "harassment"; a description's line break split the row in two."""
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.train.model_card import model_card

    schema = LabelSchema(
        classes=("ok", "hate|harass", "spam"),
        safe=("ok",),
        descriptions={"hate|harass": "hate | harassment", "spam": "ads\nand scams"},
    )
    text = model_card(TrainedModel.load(tiny_model_dir).manifest, schema)
    rows = text.split("| --- | --- | --- | --- |\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert rows == [
        "| 0 | ok |  | yes |",
        "| 1 | hate\\|harass | hate \\| harassment | no |",
        "| 2 | spam | ads and scams | no |",
    ]


def test_the_card_states_how_many_items_the_model_trained_on() -> None:
    """It gave the train file's size (6941) while 670 of them, also in valid, were left
    out: the model trained on 6271, which the card did not say."""
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.train.metrics import Metrics
    from guardrail_dro.train.model_card import model_card
    from guardrail_dro.train.modeldir import TrainManifest

    fields: dict = dict(
        created="2026-01-01T00:00:00+00:00", method="ours", config={}, backbone="org/enc",
        normalize=True, max_length=64, num_classes=2, head_hidden=0, annotators=["a"],
        groups=["g"], data_hashes={"train": "0" * 64, "valid": "1" * 64},
        data_names={"train": "train.csv"}, data_sizes={"train": 6941, "valid": 1000},
        valid_metrics=Metrics(n=1000, accuracy=0.9, macro_f1=0.8), best_epoch=1,
        notes=["670 train item(s) also in valid were left out (drop_overlap)"],
    )  # fmt: skip
    schema = LabelSchema(classes=("ok", "bad"), safe=("ok",))
    text = model_card(TrainManifest(**fields, train_items=6271), schema)
    assert "- train: `train.csv`, trained on 6271 items (6941 in the file), sha256" in text
    assert "- valid: 1000 items, sha256" in text
    same = model_card(TrainManifest(**fields, train_items=6941), schema)
    assert "- train: `train.csv`, 6941 items, sha256" in same
    old = model_card(TrainManifest(**fields), schema)  # a manifest from before: not known
    assert "- train: `train.csv`, 6941 items, sha256" in old


def test_from_result_records_the_items_trained_on(tiny_model_dir: Path) -> None:
    m = TrainedModel.load(tiny_model_dir)
    assert m.manifest.train_items == 1500  # synthetic train, none also in valid
