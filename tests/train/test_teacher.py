"""``teacher:<model dir>``: a trained model's probabilities as the training targets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.methods import lookup
from guardrail_dro.train.modeldir import TrainedModel
from guardrail_dro.train.teacher import AUGMENT, TeacherTargets, teacher_probabilities
from guardrail_dro.train.trainer import BiLevelTrainer


@pytest.fixture(scope="module")
def other_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny encoder (1 layer, 32 wide) with the same tokenizer: the student."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from guardrail_dro.train.model import default_backbone

    out = tmp_path_factory.mktemp("student-bert")
    tok = AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(1)
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
    )  # fmt: skip
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_the_method_names_its_folder() -> None:
    method, argument = lookup("teacher:runs/mpnet")
    targets, _ = method.build(argument)
    assert isinstance(targets, TeacherTargets) and targets.model_dir == "runs/mpnet"
    with pytest.raises(ConfigError, match="teacher:<model dir>"):
        method.build("")


def test_probabilities_are_the_teachers_own(tiny_model_dir: Path, synthetic, tmp_path) -> None:
    teacher = TrainedModel.load(tiny_model_dir)
    texts = synthetic["test"].texts[:40]
    got = teacher_probabilities(teacher, texts, cache_dir=tmp_path)
    assert got.shape == (40, teacher.schema.num_classes) and got.dtype == np.float32
    assert np.allclose(got, teacher.predict_proba(texts), atol=1e-5)
    assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    rows = _cache_rows(tmp_path)
    assert rows >= 40
    # The second call reads the cache (it writes nothing) and gives the same numbers.
    assert np.array_equal(got, teacher_probabilities(teacher, texts, cache_dir=tmp_path))
    assert _cache_rows(tmp_path) == rows


def _cache_rows(folder: Path) -> int:
    import sqlite3

    with sqlite3.connect(folder / "embeddings.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM emb").fetchone()[0])


def test_split_adds_copies_that_are_new_and_never_a_validation_text(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    train, valid = synthetic["train"], synthetic["valid"]
    cfg = TrainConfig(method=f"teacher:{tiny_model_dir}", cache_dir=tmp_path, progress=False)
    targets = TeacherTargets(str(tiny_model_dir))
    notes: list[str] = []
    grown, select = targets.split(train, valid, cfg, np.random.default_rng(0), notes)
    assert select is valid
    base, _ = train.without_overlap(valid)
    copies = grown.items[len(base) :]
    assert [it.item_id for it in grown.items[: len(base)]] == [it.item_id for it in base.items]
    assert 0 < len(copies) <= AUGMENT * len(base)
    texts = [it.text for it in copies]
    assert len(set(texts)) == len(texts)
    assert not set(texts) & (set(valid.texts) | set(base.texts))
    assert all(not it.annotations and it.gold is None for it in copies)
    assert any("word-noise copies" in n for n in notes)

    # compute() serves the teacher's probabilities of exactly those texts, in order.
    run = cast(Any, SimpleNamespace(train=grown, settings=cfg))
    got = targets.compute(run)
    teacher = TrainedModel.load(tiny_model_dir)
    assert np.allclose(got, teacher.predict_proba(grown.texts), atol=1e-5)


def test_a_student_on_another_encoder_trains_on_the_teacher(
    tiny_model_dir: Path, other_backbone: Path, synthetic, tmp_path: Path
) -> None:
    """The teacher's 64-wide encoder teaches a 32-wide one: the run uses the copies,
    needs no annotator labels and is selected on valid like every method."""
    train = synthetic["train"]
    bare = train.__class__(
        [it.model_copy(update={"annotations": ()}) for it in train.items], train.schema
    )
    cfg = TrainConfig(
        method=f"teacher:{tiny_model_dir}", backbone=str(other_backbone), epochs=3,
        cache_dir=tmp_path, progress=False,
    )  # fmt: skip
    result = BiLevelTrainer(cfg).fit(bare, synthetic["valid"])
    base, _ = train.without_overlap(synthetic["valid"])
    assert result.train_items_used > len(base)  # the copies were trained on
    assert any("word-noise copies" in n for n in result.notes)
    assert result.valid_metrics.n == len(synthetic["valid"])
    assert result.head.net[-1].in_features == 32  # the student's own width


def test_a_full_mode_student_trains_its_top_layer_on_the_teacher(
    tiny_model_dir: Path, other_backbone: Path, synthetic, tmp_path: Path
) -> None:
    cfg = TrainConfig(
        method=f"teacher:{tiny_model_dir}", backbone=str(other_backbone), mode="full",
        train_layers=1, epochs=1, probe_epochs=2, cache_dir=tmp_path, progress=False,
    )  # fmt: skip
    result = BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])
    base, _ = synthetic["train"].without_overlap(synthetic["valid"])
    assert result.train_items_used > len(base)
    assert result.valid_metrics.n == len(synthetic["valid"])


def test_bad_teachers_are_named(tiny_model_dir: Path, synthetic, tmp_path: Path) -> None:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.data.schema import LabelSchema

    cfg = TrainConfig(method=f"teacher:{tmp_path}", progress=False)
    with pytest.raises(ConfigError, match="no trained model there"):
        BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])
    (tmp_path / "guard.json").write_text("{}")  # export's output is not a model directory
    with pytest.raises(ConfigError, match="it is a guard artifact: name the model directory"):
        BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])

    schema = LabelSchema(classes=("a", "b"), safe=("a",))
    valid = synthetic["valid"]
    items = [it.model_copy(update={"gold": "a", "annotations": ()}) for it in valid.items]
    other = AnnotatedDataset(items, schema)
    cfg = TrainConfig(method=f"teacher:{tiny_model_dir}", progress=False)
    with pytest.raises(ConfigError, match="the teacher's classes"):
        BiLevelTrainer(cfg).fit(other, other)


def test_a_stored_bench_run_names_its_teacher(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Another model saved into the teacher's folder retrains the bench's stored runs;
    the other methods' keys are unchanged."""
    import shutil

    from guardrail_dro.train.bench_runs import method_key

    for other in ("ours", "mv", "best-single", "single:a"):
        version = lookup(other)[0].targets.version
        assert method_key("k", other) == ("k" if version == 1 else f"k:{other}.v{version}")
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, folder)
    first = method_key("k", f"teacher:{folder}")
    assert first.startswith("k:teacher=") and first == method_key("k", f"teacher:{folder}")
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"seed": 0', '"seed": 1'))
    assert method_key("k", f"teacher:{folder}") != first
    assert method_key("k", f"teacher:{tmp_path / 'none'}") == "k:teacher=missing"
