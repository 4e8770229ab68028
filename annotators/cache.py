"""The persistent SQLite cache that makes annotation runs resumable and never pay twice.

A result is keyed by ``cache_key(provider, model, prompt_version, params, text)``: the
things that decide the answer, and nothing else (``key_for``, which the live and the
batch runner both use, puts the label schema in ``params``, since the prompt is built
from it, and the adapters put a non-default base URL there: ``llama3.1`` behind Ollama
and behind vLLM are not the same model). The API key and the item id are not in it (an
identical text asked again is the same question). Each result is committed as soon as
it is known, in WAL mode, so a ``kill -9`` loses at most the calls that were in flight.

Batch jobs are kept too (provider, job id, which cache keys they carry, the label
schema they were asked under), so an interrupted batch run polls the job it already
submitted instead of submitting again. Before a job is created, a *pending submit* row
is written (a submit id sent as metadata, the uploaded input file id, the keys): if the
create reply is lost (a timeout, ``kill -9``), the next run finds the job in the
provider's list by that row and adopts it instead of paying for a second one.

``AnnotationCache(path, readonly=True)`` reads an existing file without writing to it
(a dry run).

Only paid-for outcomes are stored (``AnnotationResult.cacheable``): an ``error`` is asked
again on the next run. A stored ``invalid`` or ``refused`` answer is reused like a label
unless a run asks for it again (``reask``, ``set_aside``): an invalid reply from a
one-off glitch could otherwise be asked again only by deleting the whole cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annotators.base import AnnotationResult, Annotator
from annotators.prompts import PROMPT_VERSION
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError

if TYPE_CHECKING:
    from annotators.templates import PromptTemplate

__all__ = ["REASKABLE", "AnnotationCache", "BatchJob", "PendingSubmit", "cache_key",
           "check_reask", "key_for", "open_cache", "server_params", "set_aside"]

REASKABLE = ("invalid", "refused")
"""Cached outcomes a run may ask again (``reask``): the paid-for ones that carry no label."""

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
CREATE TABLE IF NOT EXISTS batch_submits (
    submit_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    annotator TEXT NOT NULL,
    keys TEXT NOT NULL,
    input_file_id TEXT,
    schema TEXT,
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


def server_params(base_url: str | None, env_var: str, default: str) -> dict[str, str]:
    """``{"base_url": url}`` for an adapter's ``cache_params`` when it talks to a server
    other than the provider's own (``base_url``, else the SDK's ``env_var``), else ``{}``.

    Another server is another model, whatever its name: its answers get other keys.
    """
    url = (base_url or os.environ.get(env_var) or "").rstrip("/")
    return {"base_url": url} if url and url != default else {}


def key_for(annotator: Annotator, text: str, schema: LabelSchema,
            template: PromptTemplate | None = None) -> str:
    """The cache key of ``text`` asked of ``annotator`` with the current prompt version.

    The label schema (classes, safe classes, descriptions) is part of the prompt, so it
    is part of the parameters: change the classes and old answers are not reused (their
    labels might not even exist any more). So is a team's own prompt template: the hash
    of what it renders (wording, guidelines, few-shot examples) goes in as ``template``;
    the built-in template adds nothing, so its keys are those of caches made before
    templates existed.
    """
    params = {**annotator.cache_params(), "schema": schema.model_dump(mode="json")}
    tag = template.cache_tag(schema) if template is not None else None
    if tag is not None:
        params["template"] = tag
    return cache_key(annotator.provider, annotator.model, PROMPT_VERSION, params, text)


@dataclass(frozen=True)
class BatchJob:
    """A submitted batch job: which provider, which job, which cache keys it answers."""

    job_id: str
    provider: str
    model: str
    annotator: str
    keys: tuple[str, ...]
    status: str
    schema: str | None = None
    """The label schema (JSON) the requests were built from; None in older caches."""
    created: float = field(default_factory=time.time)
    """When the job was recorded: a cached answer stored before it is not its own."""


@dataclass(frozen=True)
class PendingSubmit:
    """A batch job about to be created (or created, with the reply lost).

    Attributes:
        submit_id: a random id, sent as job metadata where the provider keeps it.
        keys: the cache keys (``custom_id``) of its requests.
        input_file_id: the uploaded request file (OpenAI), once uploaded.
        created: ``time.time()`` before the create call: the provider's job is newer.
        schema: the label schema as JSON.
    """

    submit_id: str
    provider: str
    model: str
    annotator: str
    keys: tuple[str, ...]
    input_file_id: str | None = None
    created: float = field(default_factory=time.time)
    schema: str | None = None


class AnnotationCache:
    """Results and batch jobs in one SQLite file.

    Args:
        path: the database file (created with its folder); ``":memory:"`` for a
            throwaway cache.
        readonly: open an existing file for reading only (nothing is created or
            written; writes raise ``sqlite3.OperationalError``).

    Example:
        >>> with AnnotationCache(":memory:") as cache:
        ...     cache.get("nope") is None
        True
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        if readonly:
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                       check_same_thread=False)
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # One connection, used from the event loop thread only; autocommit per
            # statement.
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL survives a killed process (only a power cut can lose the WAL tail).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            if "schema" not in self._columns("batch_jobs"):  # a cache from before schemas
                self._db.execute("ALTER TABLE batch_jobs ADD COLUMN schema TEXT")
        self._tables = {r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}

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
        out: dict[str, AnnotationResult] = {}
        if "results" not in self._tables:  # a read-only look at a file of another kind
            return out
        for key, blob in self._select_keys("key, result", keys):
            out[key] = AnnotationResult.model_validate_json(blob)
        return out

    def _select_keys(self, columns: str, keys: Iterable[str], where: str = "",
                     args: tuple[object, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """``columns`` of the ``results`` rows among ``keys`` (and ``where``), queried in
        chunks of 500 keys for SQLite's variable limit."""
        keys = list(dict.fromkeys(keys))
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            yield from self._db.execute(
                f"SELECT {columns} FROM results WHERE key IN ({marks}){where}", [*chunk, *args]
            )

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
            "status, created, schema) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job.job_id, job.provider, job.model, job.annotator, json.dumps(list(job.keys)),
             job.status, job.created, job.schema),
        )

    def job_ids(self) -> set[str]:
        """Every job id this cache knows (open or collected)."""
        if "batch_jobs" not in self._tables:
            return set()
        return {r[0] for r in self._db.execute("SELECT job_id FROM batch_jobs")}

    # ---- pending submits ---------------------------------------------------------------
    def add_submit(self, sub: PendingSubmit) -> None:
        """Record a job about to be created (committed before the create call)."""
        self._db.execute(
            "INSERT OR REPLACE INTO batch_submits (submit_id, provider, model, annotator, "
            "keys, input_file_id, schema, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (sub.submit_id, sub.provider, sub.model, sub.annotator,
             json.dumps(list(sub.keys)), sub.input_file_id, sub.schema, sub.created),
        )

    def set_submit_file(self, submit_id: str, input_file_id: str) -> None:
        self._db.execute("UPDATE batch_submits SET input_file_id = ? WHERE submit_id = ?",
                         (input_file_id, submit_id))

    def open_submits(self, annotator: str) -> list[PendingSubmit]:
        """Submits of ``annotator`` whose job id was never recorded, oldest first."""
        if "batch_submits" not in self._tables:
            return []
        rows = self._db.execute(
            "SELECT submit_id, provider, model, annotator, keys, input_file_id, created, "
            "schema FROM batch_submits WHERE annotator = ? ORDER BY created", (annotator,)
        ).fetchall()
        return [PendingSubmit(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6], r[7])
                for r in rows]

    def resolve_submit(self, sub: PendingSubmit, job_id: str) -> BatchJob:
        """The submit became job ``job_id``: record the job and drop the submit, atomically."""
        job = BatchJob(job_id, sub.provider, sub.model, sub.annotator, sub.keys, "submitted",
                       sub.schema)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self.add_job(job)
            self._db.execute("DELETE FROM batch_submits WHERE submit_id = ?", (sub.submit_id,))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return job

    def drop_submit(self, submit_id: str) -> None:
        """Forget a submit that never became a job (its keys are asked again)."""
        self._db.execute("DELETE FROM batch_submits WHERE submit_id = ?", (submit_id,))

    def set_job_status(self, job_id: str, status: str) -> None:
        self._db.execute("UPDATE batch_jobs SET status = ? WHERE job_id = ?", (status, job_id))

    def open_jobs(self, annotator: str) -> list[BatchJob]:
        """Jobs of ``annotator`` submitted but not yet collected, oldest first."""
        if "batch_jobs" not in self._tables:
            return []
        schema_col = "schema" if "schema" in self._columns("batch_jobs") else "NULL"
        rows = self._db.execute(
            f"SELECT job_id, provider, model, annotator, keys, status, {schema_col}, created "
            "FROM batch_jobs WHERE annotator = ? AND status = 'submitted' ORDER BY created",
            (annotator,),
        ).fetchall()
        return [BatchJob(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6], r[7])
                for r in rows]

    def stored_before(self, keys: Iterable[str], when: float) -> set[str]:
        """The keys among ``keys`` whose cached answer was stored before ``when``."""
        return {r[0] for r in self._select_keys("key", keys, " AND created < ?", (when,))}


def check_reask(reask: Collection[str]) -> frozenset[str]:
    """``reask`` as a set, checked: each one of ``REASKABLE``.

    Raises:
        ConfigError: another outcome; ``error`` says why it needs no asking (an error is
            never cached, so every run asks it again already).
    """
    if isinstance(reask, str):  # reask="invalid" iterated as letters
        reask = (reask,)
    for what in reask:
        if what in ("error", "errors"):
            raise ConfigError(f"--reask {what}: errors (a failed call, a reply cut at its "
                              "token budget) are never cached, so every run asks them "
                              "again already; --reask takes invalid or refused")
        if what not in REASKABLE:
            raise ConfigError(f"--reask takes invalid or refused (cached answers to ask "
                              f"again), not {what!r}")
    return frozenset(reask)


def set_aside(cached: Mapping[str, AnnotationResult],
              reask: Collection[str]) -> tuple[dict[str, AnnotationResult], set[str]]:
    """(the cached answers to reuse, the keys whose answer is asked again): those whose
    outcome is in ``reask``. The cache itself is untouched: a new answer replaces the old
    one when it arrives, and a run stopped before that keeps it."""
    again = {k for k, r in cached.items() if r.outcome in reask}
    return {k: r for k, r in cached.items() if k not in again}, again


def open_cache(cache: AnnotationCache | str | Path | None, *,
               readonly: bool = False) -> tuple[AnnotationCache, bool]:
    """(cache, whether we opened it and must close it).

    ``readonly`` (a dry run): an existing file is opened for reading only and a missing
    one is not created (an empty in-memory cache stands in).
    """
    if isinstance(cache, AnnotationCache):
        return cache, False
    if cache is None or (readonly and not Path(cache).exists()):
        return AnnotationCache(":memory:"), True
    return AnnotationCache(cache, readonly=readonly), True
