"""The teacher's embeddings and the shared embedding cache: distilling never writes a
vector under a key that means another encoder's output.

The trainer caches a frozen backbone's pooled embeddings under the backbone's
fingerprint (``train/features.py``); ``train`` in frozen mode reads them back as the
features its head learns on. A distilled student's manifest keeps its teacher's
``mode: frozen`` and ``backbone``, so a student used as a teacher must not have its
own (different) embeddings stored under that key.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from guardrail_dro.train.distill import DistillConfig, distill, teacher_embeddings
from guardrail_dro.train.embeddings import (
    EmbeddingCache,
    embed_texts,
    model_fingerprint,
)
from guardrail_dro.train.modeldir import TrainedModel


def _backbone_namespace(model: TrainedModel) -> str:
    """The key ``train --mode frozen`` reads its features under (train/features.py)."""
    man = model.manifest
    return f"{model_fingerprint(man.backbone)}|mean|norm={man.normalize}|len={man.max_length}"


@pytest.fixture(scope="module")
def student(tiny_model_dir: Path, synthetic, tmp_path_factory) -> TrainedModel:
    cfg = DistillConfig(
        layers=1, epochs=1, augment=0, progress=False,
        cache_dir=tmp_path_factory.mktemp("student-cache"),
    )  # fmt: skip
    return distill(tiny_model_dir, synthetic["train"].texts[:200], synthetic["valid"], cfg)


def test_a_student_as_teacher_leaves_the_backbones_cache_keys_alone(
    tiny_model_dir: Path, student: TrainedModel, synthetic, tmp_path: Path
) -> None:
    # A student distilled further (distill --model runs/student, export --model
    # runs/student --distill 1) with a cache that has not seen its texts: the probe
    # used to embed 8 texts with the student under the backbone's key, find them
    # "cached" and equal to the live student, and then store every text the same way,
    # so a later frozen `train` on that backbone learned on the student's vectors.
    assert student.manifest.config.get("mode", "frozen") == "frozen"  # the trap's premise
    texts = synthetic["test"].texts[:40]
    got = teacher_embeddings(student, texts, cache_dir=tmp_path, progress=False)
    live = embed_texts(student.model, student.tokenizer, texts, namespace="", progress=False)
    assert np.allclose(got, live, atol=1e-5)  # the student's own vectors come back

    backbone = TrainedModel.load(tiny_model_dir)
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    try:
        keys = [EmbeddingCache.key(_backbone_namespace(backbone), t) for t in texts]
        stored = cache.get_many(keys)
    finally:
        cache.close()
    want = embed_texts(backbone.model, backbone.tokenizer, texts, namespace="", progress=False)
    wrong = [t for t, k, w in zip(texts, keys, want, strict=True)
             if k in stored and not np.allclose(stored[k], w, atol=1e-4)]  # fmt: skip
    assert wrong == [], f"{len(wrong)} of {len(texts)} backbone cache entries hold other vectors"


def test_a_frozen_teacher_reuses_the_trainers_cached_embeddings(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    # The shortcut stays: vectors the trainer cached for the backbone serve the teacher,
    # so a distill after train does not embed the training texts again.
    teacher = TrainedModel.load(tiny_model_dir)
    texts = synthetic["test"].texts[:40]
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    try:
        ns = _backbone_namespace(teacher)
        embed_texts(
            teacher.model, teacher.tokenizer, texts, namespace=ns, cache=cache, progress=False
        )
    finally:
        cache.close()
    got = teacher_embeddings(teacher, texts, cache_dir=tmp_path, progress=False)
    live = embed_texts(teacher.model, teacher.tokenizer, texts, namespace="", progress=False)
    assert np.allclose(got, live, atol=1e-5)
    with closing(sqlite3.connect(tmp_path / "embeddings.sqlite")) as db:
        (n,) = db.execute("SELECT COUNT(*) FROM emb").fetchone()
    assert n == len(set(texts))  # nothing stored twice under a second key
