"""The bench's finished runs on disk: what makes ``bench`` resumable per run.

Each finished (method, seed) run is written to ``<out>/runs/<method>.seed<k>.json`` as
it ends; a bench restarted with ``resume`` reuses the ones whose key (config + data)
matches and trains only the rest. A full-mode run takes minutes on a CPU, so a crash
or an interrupted session must not cost the runs already done.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.metrics import Metrics

__all__ = ["FinishedRun", "load_run", "run_file", "run_key", "save_run"]


class FinishedRun(BaseModel):
    """One finished (method, seed) run as the bench keeps it on disk (``runs/`` under
    the output folder), so that a restarted bench skips it: a crash loses at most the
    run in progress, which matters when one full-mode run takes minutes."""

    key: str
    """sha256 of what decides the run: the shared config and the three splits' contents.
    A stored run whose key differs (other data, other settings) is trained again."""
    method: str
    seed: int
    seconds: float
    test: Metrics
    valid: Metrics
    unseen: Metrics
    notes: list[str] = []
    group_weights: dict[str, float] | None = None
    annotator_weight_by_group: dict[str, dict[str, float]] | None = None
    background_block_rate: float | None = None
    background_block_rate_valid_threshold: float | None = None
    harmful_block_rate: float | None = None


def run_key(cfg: TrainConfig, *splits: AnnotatedDataset) -> str:
    """What a stored run must match to be reused: the shared config (but method and
    seed, which vary per run, and progress and cache_dir, which change no number) and
    the splits' contents."""
    shared = cfg.model_dump(mode="json", exclude={"method", "seed", "progress", "cache_dir"})
    blob = json.dumps(
        {"config": shared, "data": [d.content_hash() for d in splits]}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def run_file(method: str, seed: int) -> str:
    """``<method>.seed<k>.json``, the method name made safe for a file name
    (``single:gpt-4`` -> ``single_gpt-4``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", method)
    return f"{safe}.seed{seed}.json"


def load_run(path: Path, key: str) -> FinishedRun | None:
    """The stored run at ``path`` if it exists, parses and has ``key``; else None (a
    run cut off while being written, or one from other settings, is trained again)."""
    try:
        run = FinishedRun.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    return run if run.key == key else None


def save_run(path: Path, run: FinishedRun) -> None:
    """Write atomically (temporary file, then rename): a crash mid-write leaves no half
    file that a restart could mistake for a finished run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(run.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
