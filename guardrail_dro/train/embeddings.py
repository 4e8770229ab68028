"""Pooled sentence embeddings of a frozen encoder, computed once and cached on disk.

The cache is one SQLite file; a row is keyed by sha256(model fingerprint, pooling
settings, text), where the fingerprint hashes the model's weight and config files. So
a renamed copy of the same weights hits the cache, a retrained encoder does not, and
an interrupted embedding run resumes from the rows already written (each batch is
committed as it finishes).
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from guardrail_dro.errors import ArtifactError
from guardrail_dro.train.model import GuardClassifier

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from guardrail_dro.data.items import AnnotatedDataset

__all__ = ["EmbeddingCache", "embed_texts", "model_fingerprint", "truncation_note"]


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over a model folder's weight and config files (names excluded, contents only)."""
    h = hashlib.sha256()
    files = sorted(
        p
        for p in Path(model_dir).iterdir()
        if p.suffix in (".safetensors", ".bin") or p.name == "config.json"
    )
    for p in files:
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()[:32]


class EmbeddingCache:
    """A persistent map (key, text) -> float32 vector in one SQLite file."""

    def __init__(self, path: str | Path, *, timeout: float = 120.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Several processes may share one cache (torchrun ranks, parallel runs). The
        # connection waits `timeout` for a writer's lock; SQLite still answers "locked" at
        # once where waiting could deadlock (two connections promoting their locks, or a
        # switch to WAL racing a first write), so opening retries until the deadline. WAL
        # (readers never block the writer) is set only when the file is not WAL yet.
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout)
        except sqlite3.DatabaseError as err:  # a folder it may not write to
            raise self._error(err) from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                (mode,) = self._db.execute("PRAGMA journal_mode").fetchone()
                if str(mode).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                with self._db:
                    self._db.execute("CREATE TABLE IF NOT EXISTS emb (k TEXT PRIMARY KEY, v BLOB)")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    self._db.close()
                    raise self._error(err) from None
                time.sleep(0.05 + random.random() * 0.1)
            except sqlite3.DatabaseError as err:  # not a database, or a malformed one
                self._db.close()
                raise self._error(err) from None

    def _error(self, err: sqlite3.DatabaseError) -> ArtifactError:
        """The file and the fix: a damaged cache (a copy cut short, a disk that filled
        up) was a traceback naming neither; the cache holds nothing but embeddings it can
        compute again, so deleting it is always safe."""
        if isinstance(err, sqlite3.OperationalError):
            return ArtifactError(f"{self.path}: cannot use the embedding cache: {err}")
        return ArtifactError(
            f"{self.path}: the embedding cache is damaged ({err}); delete it (and any "
            f"{self.path.name}-wal / -shm beside it): it is only a cache, rebuilt as needed"
        )

    @staticmethod
    def key(namespace: str, text: str) -> str:
        return hashlib.sha256(f"{namespace}\0{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                q = f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    out[k] = np.frombuffer(v, dtype=np.float32)
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        return out

    def put_many(self, rows: dict[str, np.ndarray]) -> None:
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO emb VALUES (?, ?)",
                    [(k, v.astype(np.float32).tobytes()) for k, v in rows.items()],
                )
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None

    def close(self) -> None:
        self._db.close()


@torch.no_grad()
def embed_texts(
    model: GuardClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    namespace: str,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    progress: bool = True,
    desc: str = "embedding",
) -> np.ndarray:
    """Pooled embeddings (N, D) float32 of ``texts``, reading and filling ``cache``.

    Texts are sorted by length before batching so padding stays small (about 2x
    faster on short, varied questions); the result is in the input order.
    """
    keys = [EmbeddingCache.key(namespace, t) for t in texts]
    found = cache.get_many(keys) if cache is not None else {}
    todo = sorted(
        {k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items(),
        key=lambda kv: len(kv[1]),
    )
    if found and todo:  # a run resumed after a crash or Ctrl-C: say what it reuses
        desc = f"{desc} ({len(set(keys)) - len(todo)} of {len(set(keys))} cached)"
    device = next(model.parameters()).device
    model.eval()
    bar = tqdm(
        total=len(todo), desc=desc, unit="text", disable=not progress or not todo, leave=False
    )
    for i in range(0, len(todo), batch_size):
        chunk = todo[i : i + batch_size]
        enc = tokenizer(
            [t for _, t in chunk],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        vecs = model.embed(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        new = {k: v for (k, _), v in zip(chunk, vecs.float().cpu().numpy(), strict=True)}
        found.update(new)
        if cache is not None:
            cache.put_many(new)
        bar.update(len(chunk))
    bar.close()
    return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)


def truncation_note(
    tokenizer: PreTrainedTokenizerBase, splits: dict[str, AnnotatedDataset], max_length: int
) -> str | None:
    """Say how many texts the encoder sees cut to ``max_length`` tokens, and how much.

    Returns None when every text fits. Training itself is unchanged: this only tells.
    """
    parts = []
    for name, ds in splits.items():
        # Special tokens count: the encoder's window holds [CLS] text [SEP].
        lengths = [
            len(ids) for ids in tokenizer(ds.texts, truncation=False, verbose=False)["input_ids"]
        ]
        over = [n - max_length for n in lengths if n > max_length]
        if over:
            parts.append(
                f"{len(over)} of {len(lengths)} {name} text(s) "
                f"(longest {max(over) + max_length} tokens, {sum(over)} tokens cut in all)"
            )
    if not parts:
        return None
    return f"truncated to {max_length} tokens: " + "; ".join(parts)
