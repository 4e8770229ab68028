"""The persistent SQLite cache that makes annotation runs resumable and never pay twice.

A result is keyed by ``cache_key(provider, model, prompt_version, params, text)``: the
things that decide the answer, and nothing else (the runner puts the label schema in
``params``, since the prompt is built from it). The API key, the base URL and the
item id are not in it (an identical text asked again is the same question). Each result
is committed as soon as it is known, in WAL mode, so a ``kill -9`` loses at most the
calls that were in flight.

Batch jobs are kept too (provider, job id, which cache keys they carry), so an
interrupted batch run polls the job it already submitted instead of submitting again.

Only paid-for outcomes are stored (``AnnotationResult.cacheable``): an ``error`` is asked
again on the next run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotators.base import AnnotationResult

__all__ = ["AnnotationCache", "BatchJob", "cache_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    job_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    annotator TEXT NOT NULL,
    keys TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def cache_key(provider: str, model: str, prompt_version: str, params: dict[str, Any],
              text: str) -> str:
    """sha256 over the canonical JSON of what decides an answer.

    Example:
        >>> len(cache_key("openai", "gpt-4o", "1", {"temperature": 0}, "hello"))
        64
    """
    blob = json.dumps(
        {"provider": provider, "model": model, "prompt": prompt_version,
         "params": params, "text": text},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BatchJob:
    """A submitted batch job: which provider, which job, which cache keys it answers."""

    job_id: str
    provider: str
    model: str
    annotator: str
    keys: tuple[str, ...]
    status: str


class AnnotationCache:
    """Results and batch jobs in one SQLite file.

    Args:
        path: the database file (created with its folder); ``":memory:"`` for a
            throwaway cache.

    Example:
        >>> with AnnotationCache(":memory:") as cache:
        ...     cache.get("nope") is None
        True
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from the event loop thread only; autocommit per statement.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (only a power cut can lose the WAL tail).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> AnnotationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"AnnotationCache({self.path!r})"

    # ---- results ----------------------------------------------------------------------
    def get(self, key: str) -> AnnotationResult | None:
        row = self._db.execute("SELECT result FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else AnnotationResult.model_validate_json(row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, AnnotationResult]:
        """The cached results among ``keys`` (in chunks, for SQLite's variable limit)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, AnnotationResult] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(
                f"SELECT key, result FROM results WHERE key IN ({marks})", chunk
            ):
                out[key] = AnnotationResult.model_validate_json(blob)
        return out

    def put(self, key: str, provider: str, model: str, result: AnnotationResult) -> bool:
        """Store a paid-for result at once (committed); returns False for an ``error``."""
        if not result.cacheable:
            return False
        self._db.execute(
            "INSERT OR REPLACE INTO results (key, provider, model, outcome, result, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key, provider, model, result.outcome, result.model_dump_json(), time.time()),
        )
        return True

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    # ---- batch jobs -------------------------------------------------------------------
    def add_job(self, job: BatchJob) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO batch_jobs (job_id, provider, model, annotator, keys, "
            "status, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job.job_id, job.provider, job.model, job.annotator, json.dumps(list(job.keys)),
             job.status, time.time()),
        )

    def set_job_status(self, job_id: str, status: str) -> None:
        self._db.execute("UPDATE batch_jobs SET status = ? WHERE job_id = ?", (status, job_id))

    def open_jobs(self, annotator: str) -> list[BatchJob]:
        """Jobs of ``annotator`` submitted but not yet collected, oldest first."""
        rows = self._db.execute(
            "SELECT job_id, provider, model, annotator, keys, status FROM batch_jobs "
            "WHERE annotator = ? AND status = 'submitted' ORDER BY created", (annotator,)
        ).fetchall()
        return [BatchJob(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5]) for r in rows]
