"""The bench's finished runs on disk: what makes ``bench`` resumable per run.

Each finished (method, seed) run is written to ``<out>/runs/<method>.seed<k>.json``
(``run_file``) as it ends; a bench restarted with ``resume`` reuses the ones whose key
(config + data) and method match and trains only the rest. A full-mode run takes
minutes on a CPU, so a crash or an interrupted session must not cost the runs already
done.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import DataError
from guardrail_dro.outputs import replace_file
from guardrail_dro.train.baselines import SINGLE_MIN_ITEMS, single_candidates
from guardrail_dro.train.best_single import choice_note, select_key
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.embeddings import model_fingerprint
from guardrail_dro.train.methods import lookup
from guardrail_dro.train.metrics import Metrics, score_split
from guardrail_dro.train.result import TrainResult
from guardrail_dro.train.trainer import BiLevelTrainer

__all__ = [
    "FinishedRun",
    "RunStore",
    "legacy_run_file",
    "load_run",
    "method_key",
    "run_file",
    "run_key",
    "save_run",
]


RUNS_VERSION = 4
"""Part of every run key: raised when the code changed what a stored run means, so that
no bench reuses those runs. 2 (2026-12-04): full-mode test scores read the fine-tuned
encoder (before, the pre-trained one's cached embeddings) and full mode starts from the
method's frozen fit. 3 (2026-12-06): a run keeps its test predictions (``test_pred``),
which the report's paired intervals need; a run stored before has none to give. 4
(2026-12-06): a run's test metrics carry the guard's toxic ROC AUC, which a run stored
before lacks (a mean over some seeds' AUC would pass for all of them)."""


ADDED_FIELDS: dict[str, object] = {
    "ft_estimator": "freeze",
    "lp_select": "compete",
    "average_seeds": 1,
}
"""Config fields added after runs were stored, with the default they enter no key at:
a stored run of a method the field does not touch stays valid (a method it does touch
raised its target source's version instead)."""


FULL_MODE_ONLY = ("encoder_lr", "warmup", "probe_epochs", "max_grad_norm", "ft_estimator")
"""Config fields only full mode reads (the encoder's optimiser and schedule, the LP stage
and the estimator during fine-tuning)."""


def method_key(key: str, method: str) -> str:
    """A stored run's key: the bench's shared key, plus the version of the method's
    target source where it was raised (``TargetSource.version``) and what else decides
    its targets (``TargetSource.key_part``: a teacher's manifest)."""
    row, argument = lookup(method)
    version = row.targets.version
    key = key if version == 1 else f"{key}:{method}.v{version}"
    part = row.targets.from_argument(argument).key_part() if row.argument else None
    return key if part is None else f"{key}:{part}"


class FinishedRun(BaseModel):
    """One finished (method, seed) run as the bench keeps it on disk (``runs/`` under
    the output folder), so that a restarted bench skips it: a crash loses at most the
    run in progress, which matters when one full-mode run takes minutes."""

    key: str
    """sha256 of what decides the run (the shared config and the three splits' contents),
    plus ``:<method>.v<n>`` where its target source's version was raised and
    ``:teacher=<sha256>`` for a teacher's manifest. A stored run whose key differs (other
    data, other settings, changed targets) is trained again."""
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
    test_pred: list[int] | None = None
    """The predicted class of every test item, in the split's order: what the paired
    intervals between methods are computed from (``train/paired.py``)."""


def run_key(cfg: TrainConfig, *splits: AnnotatedDataset) -> str:
    """What a stored run must match to be reused: the shared config (but method and
    seed, which vary per run, and progress and cache_dir, which change no number) and
    the splits' contents."""
    shared = cfg.model_dump(mode="json", exclude={"method", "seed", "progress", "cache_dir"})
    # Settings a run never reads sit at their defaults in the key, so a bench re-run with
    # one of them changed reuses its runs (it trained every one again): full mode's in
    # frozen mode, and the harmful text's weight without harmful text.
    unread = [*FULL_MODE_ONLY] if shared.get("mode") != "full" else []
    if not shared.get("background_harmful"):
        unread.append("harmful_weight")
    for name in unread:
        shared[name] = TrainConfig.model_fields[name].default
    for name, default in ADDED_FIELDS.items():
        if shared.get(name) == default:
            del shared[name]  # a run stored before the field existed ran as its default
    if shared.get("mode") != "full":
        shared.pop("lp_select", None)  # no LP stage: frozen runs stored before stay valid
    if cfg.backbone is not None and Path(cfg.backbone).is_dir():
        # The folder's weights, not its path: new weights saved at the same path reused
        # the runs of the old ones (and the same folder named another way did not).
        shared["backbone"] = f"weights sha256 {model_fingerprint(cfg.backbone)}"
    if shared.get("train_layers") is not None:
        # Since 2026-12-04 the embeddings and the frozen layers below them run in eval
        # mode (no dropout), once per split where they can (train/lower_layers.py): a
        # run stored before ran them in train mode. The value is a fixed key part.
        shared["frozen_layers"] = "cached, eval mode"
    blob = json.dumps(
        {"config": shared, "data": [d.content_hash() for d in splits], "runs": RUNS_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def run_file(method: str, seed: int) -> str:
    """``<method>.seed<k>.json``, the method name made safe for a file name. A name that
    had to change (``single:gpt-4`` -> ``single_gpt-4-<hash>``) also gets a short hash of
    itself: the slug alone maps every non-ASCII character to ``_``, so ``single:label_张三``
    and ``single:label_李四`` would share one file."""
    safe = _slug(method)
    if safe != method:
        safe += "-" + hashlib.sha256(method.encode()).hexdigest()[:8]
    return f"{safe}.seed{seed}.json"


def _slug(method: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", method)


def legacy_run_file(method: str, seed: int) -> str:
    """The file name before the hash was added: where runs stored until 2026-12 are,
    still read (``load_run`` checks their method, so a name it mapped twice is safe)."""
    return f"{_slug(method)}.seed{seed}.json"


def load_run(path: Path, key: str, method: str) -> FinishedRun | None:
    """The stored run at ``path`` if it exists, parses and is ``method``'s with ``key``;
    else None (a run cut off while being written, one from other settings, or another
    method's that shares the file name, is trained again)."""
    try:
        run = FinishedRun.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    return run if run.key == key and run.method == method else None


def save_run(path: Path, run: FinishedRun) -> None:
    """Write whole or not at all (``replace_file``): a crash mid-write leaves no half
    file that a restart could mistake for a finished run."""
    text = run.model_dump_json(indent=2) + "\n"
    replace_file(path, lambda tmp: tmp.write_text(text))  # the locale's, as load_run reads


class RunStore:
    """Where the bench gets each (method, seed) run: this bench's own finished runs (in
    memory), a previous bench's (``runs/``, with ``resume``), or a fresh fit, written to
    ``runs/`` as it ends.

    ``best-single`` is derived, not retrained, when its choice would be the same: it is
    the ``single:<a>`` run best on valid (``select_key``), so its candidates are fetched
    like any run and a ``single:<a>`` the same bench also asks for is trained once. In
    the full-mode bench of 2026-12-04 that retraining was 3 annotators x 2 seeds x about
    3 minutes. Not derived when the fit would first choose a background setting (there
    the choice runs over whole best-single fits, not per annotator).
    """

    def __init__(
        self,
        base: TrainConfig,
        key: str,
        splits: tuple[AnnotatedDataset, AnnotatedDataset, AnnotatedDataset],
        unseen: np.ndarray,
        runs_dir: Path | None,
        *,
        resume: bool,
        on_fit: Callable[[str, int, TrainResult, FinishedRun], None] | None = None,
    ) -> None:
        self.base, self.key, self.splits, self.unseen = base, key, splits, unseen
        self.runs_dir, self.resume, self.on_fit = runs_dir, resume, on_fit
        self._done: dict[tuple[str, int], FinishedRun] = {}

    def get(self, method: str, seed: int) -> FinishedRun:
        """The finished run of ``method`` at ``seed``, trained only if no store has it."""
        if (method, seed) in self._done:
            return self._done[(method, seed)]
        path = self.runs_dir / run_file(method, seed) if self.runs_dir is not None else None
        key = method_key(self.key, method)
        done = None
        if self.resume and self.runs_dir is not None and path is not None:
            done = load_run(path, key, method)
            legacy = self.runs_dir / legacy_run_file(method, seed)
            if done is None and legacy != path:
                done = load_run(legacy, key, method)
        if done is None:
            best_of = lookup(method)[0].best_of
            derive = best_of is not None and not (
                self.base.background_safe
                and (self.base.background_weight is None or self.base.background_fraction is None)
            )
            done = self._best_of(method, best_of, seed) if derive else self._fit(method, seed)
            if path is not None:
                save_run(path, done)
        self._done[(method, seed)] = done
        return done

    def _fit(self, method: str, seed: int) -> FinishedRun:
        train, valid, test = self.splits
        cfg = self.base.model_copy(update={"method": method, "seed": seed, "progress": False})
        t0 = time.perf_counter()
        res = BiLevelTrainer(cfg).fit(train, valid)
        seconds = time.perf_counter() - t0
        proba, guard = res.probabilities(test.texts)  # once, scored twice
        pred = proba.argmax(1)
        bg = res.background
        done = FinishedRun(
            key=method_key(self.key, method),
            method=method,
            seed=seed,
            seconds=seconds,
            test=score_split(test, pred, proba=guard),
            valid=res.valid_metrics,
            unseen=score_split(
                test.subset(np.nonzero(self.unseen)[0]),
                pred[self.unseen],
                proba=guard[self.unseen],
            ),
            notes=res.notes,
            group_weights=res.group_weights,
            annotator_weight_by_group=res.annotator_weight_by_group,
            background_block_rate=bg.heldout_block_rate if bg else None,
            background_block_rate_valid_threshold=bg.heldout_block_rate_at_valid_threshold
            if bg
            else None,
            harmful_block_rate=bg.harmful_heldout_block_rate if bg else None,
            test_pred=[int(p) for p in pred],
        )
        if self.on_fit:
            self.on_fit(method, seed, res, done)
        return done

    def _best_of(self, method: str, base: str | None, seed: int) -> FinishedRun:
        """``best_of_annotators``'s choice from the candidates' finished runs: the same
        candidates, the same key, the same note; its seconds are the candidates' sum
        (what the method costs on its own)."""
        train = self.splits[0]
        cols, skipped = single_candidates(
            train.label_matrix(), train.schema.num_classes, names=train.annotators
        )
        if not cols:
            raise DataError(
                f"{method}: no annotator of {train.name or 'train'} labels "
                f"{SINGLE_MIN_ITEMS} or more items; train single:<annotator> instead"
            )
        runs = {a: self.get(f"{base}:{a}", seed) for a in (train.annotators[c] for c in cols)}
        name = max(runs, key=lambda a: select_key(runs[a].valid))  # first of equals
        scores = {a: select_key(r.valid)[0] for a, r in runs.items()}
        best = runs[name]
        grouped = best.valid.worst_group_accuracy is not None
        notes = [
            *best.notes,
            *([f"{method} {skipped}"] if skipped else []),
            choice_note(method, name, scores, grouped=grouped),
        ]
        return best.model_copy(
            update={
                "key": method_key(self.key, method),
                "method": method,
                "notes": notes,
                "seconds": float(sum(r.seconds for r in runs.values())),
            }
        )
