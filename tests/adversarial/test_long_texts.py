"""Issue 12: a text longer than the csv module's default field limit, and what training
does with a text longer than the encoder's window (regression tests)."""

from __future__ import annotations

from pathlib import Path

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.readers import read_dataset

LONG = "word " * 40_000  # 200,000 characters: over the csv module's 131,072 default


def test_a_csv_text_over_131072_characters_is_read(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    p.write_text(f'text,label_1\nshort,safe\n"{LONG}",toxic\n', encoding="utf-8")
    ds = read_dataset(p)
    assert ds.texts[1] == LONG


def test_training_says_when_it_truncates_texts(
    synthetic: dict[str, AnnotatedDataset], tiny_backbone: Path, tmp_path: Path
) -> None:
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    train = synthetic["train"]
    items = list(train.items)
    items[0] = items[0].model_copy(update={"text": LONG[:5000]})
    train = AnnotatedDataset(items, train.schema, name="train")
    cfg = TrainConfig(
        method="mv", backbone=str(tiny_backbone), cache_dir=tmp_path, progress=False, epochs=1
    )
    result = BiLevelTrainer(cfg).fit(train, synthetic["valid"])
    cut = [n for n in result.notes if "truncated to 128 tokens" in n]
    assert cut and "1 of" in cut[0] and "train" in cut[0], result.notes
