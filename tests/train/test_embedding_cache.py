"""The embedding cache shared by several processes at once (torchrun ranks, parallel runs)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np

from guardrail_dro.train.embeddings import EmbeddingCache


def _open_and_write(path: Path, i: int, start: Barrier) -> None:
    start.wait()
    cache = EmbeddingCache(path)
    for j in range(0, 100, 10):
        cache.put_many({f"{i}-{k}": np.full(4, i * 1000 + k, np.float32) for k in range(j, j + 10)})
    cache.close()


def test_processes_opening_one_new_cache_at_once_all_land(tmp_path: Path) -> None:
    # torchrun's ranks open the same fresh cache file at the same moment. A switch to WAL
    # racing another process's first write made SQLite answer "database is locked" at
    # once, without waiting: before the cache retried, about 1 process in 15 here failed.
    ctx = mp.get_context("fork")
    n = 6
    for round_ in range(20):
        path = tmp_path / f"shared{round_}.sqlite"
        start = ctx.Barrier(n)
        procs = [ctx.Process(target=_open_and_write, args=(path, i, start)) for i in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * n, f"round {round_}"
        cache = EmbeddingCache(path)
        got = cache.get_many([f"{i}-{k}" for i in range(n) for k in range(100)])
        cache.close()
        assert len(got) == n * 100
        assert got["5-99"].tolist() == [5099.0] * 4


def test_a_cache_another_connection_is_writing_to_waits_instead_of_failing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.sqlite"
    EmbeddingCache(path).close()
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    released = threading.Timer(0.5, holder.rollback)
    released.start()
    cache = EmbeddingCache(path, timeout=10)  # waits the 0.5 s out
    cache.put_many({"k": np.ones(3, np.float32)})
    assert cache.get_many(["k"])["k"].tolist() == [1.0, 1.0, 1.0]
    cache.close()
    released.join()
    holder.close()


def test_a_damaged_cache_file_is_named_with_the_fix(tmp_path: Path) -> None:
    # A cache cut short (a copy, a full disk) or overwritten was a bare
    # ``sqlite3.DatabaseError: file is not a database`` traceback from `train`, naming
    # neither the file nor what to do.
    import pytest

    from guardrail_dro.errors import ArtifactError

    path = tmp_path / "embeddings.sqlite"
    cache = EmbeddingCache(path)
    cache.put_many({f"k{i}": np.ones(384, np.float32) for i in range(3000)})
    cache.close()
    for side in tmp_path.glob("embeddings.sqlite-*"):
        side.unlink()
    whole = path.read_bytes()
    for damaged in (b"not a database" * 100, whole[: len(whole) // 3]):
        path.write_bytes(damaged)
        with pytest.raises(ArtifactError, match=r"embeddings\.sqlite.*damaged.*delete it"):
            opened = EmbeddingCache(path)
            opened.get_many([f"k{i}" for i in range(3000)])


def test_a_resumed_embedding_says_what_the_cache_held(
    tiny_backbone: Path, tmp_path: Path, capfd
) -> None:
    """After a crash or Ctrl-C mid-embedding, the rerun's bar counted only the texts left
    and never said the rest came from the cache."""
    from transformers import AutoTokenizer, BertModel

    from guardrail_dro.train.embeddings import embed_texts
    from guardrail_dro.train.model import GuardClassifier

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    model = GuardClassifier(BertModel.from_pretrained(tiny_backbone), None)
    texts = [f"text number {i}" for i in range(10)]
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    embed_texts(model, tok, texts[:4], namespace="ns", cache=cache, progress=False)
    capfd.readouterr()
    embed_texts(model, tok, texts, namespace="ns", cache=cache, desc="embed train")
    assert "embed train (4 of 10 cached)" in capfd.readouterr().err
    cache.close()
