"""Knowledge distillation: a trained guard (the teacher) taught to a smaller encoder.

Why: ``guard.check`` runs on every chat turn and its cost is nearly all the encoder
(issue 15: tokenization 0.2 ms of a 4.2 ms int8 MiniLM check). A student with K of the
teacher's L transformer layers costs about K / L of the session, and the guard's job
(one decision per text) needs far less than a general sentence encoder knows.

The student:

- **architecture**: the teacher's encoder config with ``num_hidden_layers = K``; its
  embeddings and K of the teacher's layers copied in (``first``: layers 0..K-1;
  ``spread``: evenly spaced, first and last included, as DistilBERT's every-other
  layer), and a copy of the teacher's head, so training starts near the teacher;
- **targets** (no labels needed): the teacher's class probabilities (KL divergence) and
  its pooled, normalised embedding (squared distance, ``embed``), computed once by the
  teacher and cached with the trainer's embedding cache. ``loss`` picks ``kl``,
  ``embed`` or ``both`` (the default); ``toxic_weight`` adds a binary KL on the toxic
  score, the one number the guard thresholds (README "Distilled student" has the runs
  behind the defaults);
- **texts**: the teacher's training texts minus those in the validation split (which
  selects the epoch), ``augment`` word-noise copies of each (``train/augment.py``: a few
  words dropped, two neighbours swapped), plus any unlabelled texts (e.g. the teacher's
  background-safe text): every text the guard will see teaches it something, label or
  not; the copies fill the space between the training texts, where test texts fall;
- **selection**: the epoch with the best validation ROC AUC of the toxic score (ties:
  the later; accuracy without safe classes): what the guard's decisions follow. With
  ``quant_aware_epochs`` the last epochs train through the fast int8's rounding
  (``student.fake_int8``) and the choice is made among them.

``distill(teacher_dir, train, valid, config)`` returns a ``TrainedModel`` in the usual
format (manifest version 2, same schema), whose manifest records the teacher in
``distilled_from``; ``export`` then calibrates and gates it like any model.

**Provenance**: the student's manifest keeps the original trained model's method, data
hashes and background (copied down a chain of students: the data a model was trained on
with labels), and ``distilled_from`` says what this student learned from: its teacher,
the teacher's own record when the teacher was itself distilled (so a grand-student's
card still reaches the trained model), the sha256 of its distillation texts, and the
content hashes of the train split they came from (when given as a dataset) and of the
valid split. The original's test numbers and test data are not the student's: dropped.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn
from tqdm.auto import tqdm

from guardrail_dro.checksums import file_sha256
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError
from guardrail_dro.train.augment import word_noise
from guardrail_dro.train.embeddings import EmbeddingCache, embed_texts, model_fingerprint
from guardrail_dro.train.features import default_cache_dir
from guardrail_dro.train.metrics import score_split, toxic_auc
from guardrail_dro.train.model import GuardClassifier
from guardrail_dro.train.modeldir import (
    DistillRecord,
    TrainedModel,
    TrainManifest,
    package_versions,
)
from guardrail_dro.train.student import (
    DistillLoss,
    LayerChoice,
    distill_loss,
    fake_int8,
    model_outputs,
    pick_layers,
    student_from_teacher,
)

__all__ = [
    "DistillConfig",
    "DistillRecord",
    "distill",
    "distill_loss",
    "pick_layers",
    "student_from_teacher",
    "teacher_embeddings",
]


class DistillConfig(BaseModel):
    """How to distil a student (the CLI's options, same names)."""

    layers: int = Field(2, ge=1, description="Transformer layers of the student.")
    layer_choice: LayerChoice = Field(
        "spread", description="Which teacher layers initialise it: first K or spread out."
    )
    loss: DistillLoss = Field("both", description="kl, embed (pooled embedding) or both.")
    embed_weight: float = Field(1.0, ge=0, description="Weight of the embedding term (both).")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the KL term.")
    toxic_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of a binary KL on the toxic score (what the guard "
        "thresholds), added to the loss.",
    )
    augment: int = Field(
        3,
        ge=0,
        description="Word-noise copies of each training text added to the "
        "distillation texts (train/augment.py); the teacher labels them.",
    )
    epochs: int = Field(3, ge=1, description="Passes over the texts.")
    quant_aware_epochs: int = Field(
        0,
        ge=0,
        description="The last N epochs train through int8 rounding (train/"
        "student.py fake_int8); the epoch is then chosen among them only.",
    )
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-4, gt=0, description="AdamW learning rate (linear decay).")
    freeze_embeddings: bool = Field(
        True, description="Keep the teacher's word embeddings (a third of MiniLM's weights)."
    )
    threads: int | None = Field(
        1,
        ge=1,
        description="torch threads while distilling (None: torch's default). One thread "
        "trained 36 texts/s on the shared 2-core machine, two 6.4 (they wait on each other).",
    )
    seed: int = 0
    cache_dir: Path | None = Field(None, description="Embedding cache folder (default shared).")
    progress: bool = True


def teacher_embeddings(
    teacher: TrainedModel,
    texts: Sequence[str],
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The teacher's pooled embeddings, through the trainer's embedding cache.

    A frozen-mode teacher's encoder is its backbone, so the trainer's own cache keys
    (backbone fingerprint) are reused, after checking on a few texts that the trainer
    has cached them and they are this encoder's vectors; otherwise (a student, whose
    manifest keeps its teacher's mode and backbone, or texts not cached yet) the key is
    the encoder's own weights, and the backbone's key is never written."""
    man = teacher.manifest
    model, tok = teacher.model, teacher.tokenizer
    suffix = f"|mean|norm={man.normalize}|len={man.max_length}"
    namespace = None
    folder = Path(man.backbone)
    if man.config.get("mode", "frozen") == "frozen" and folder.is_dir():
        namespace = model_fingerprint(folder) + suffix
    cache = EmbeddingCache((cache_dir or default_cache_dir()) / "embeddings.sqlite")
    try:
        if namespace is not None:
            # Read-only: the probe used to go through the cache, so texts not cached yet
            # were embedded by this model and stored under the backbone's key, then
            # "found" equal to it. A distilled student keeps its teacher's mode and
            # backbone in its manifest, so distilling it further filled the backbone's
            # key with the student's vectors, which a later frozen `train` learned on.
            probe = list(dict.fromkeys(texts[:8]))
            keys = [EmbeddingCache.key(namespace, t) for t in probe]
            found = cache.get_many(keys)
            live = embed_texts(model, tok, probe, namespace="", max_length=man.max_length,
                               progress=False)  # fmt: skip
            if not probe or any(
                k not in found or not np.allclose(found[k], v, atol=1e-4)
                for k, v in zip(keys, live, strict=True)
            ):
                namespace = None
        if namespace is None:
            h = torch.cat([p.detach().flatten()[:4096] for p in model.encoder.parameters()])
            digest = hashlib.sha256(h.numpy().tobytes()).hexdigest()[:32]
            namespace = f"distill-teacher|{digest}" + suffix
        return embed_texts(
            model, tok, list(texts), namespace=namespace, cache=cache,
            max_length=man.max_length, progress=progress, desc="teacher",
        )  # fmt: skip
    finally:
        cache.close()


def _batches(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (sorted inside chunks of 50 batches): far
    less padding than random batches, still a different mix each epoch."""
    order = rng.permutation(len(lengths))
    out = []
    chunk = batch * 50
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[j : j + batch] for j in range(0, len(part), batch)]
    rng.shuffle(out)
    return out


def _encode(tok, texts: Sequence[str], max_length: int) -> list[list[int]]:
    enc = tok(list(texts), truncation=True, max_length=max_length)
    return [list(r) for r in enc["input_ids"]]


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


@torch.no_grad()
def _probs(model: GuardClassifier, rows: list[list[int]], pad_id: int, classes: int) -> np.ndarray:
    model.eval()
    order = np.argsort([len(r) for r in rows], kind="stable")
    out = np.zeros((len(rows), classes), dtype=np.float32)
    for i in range(0, len(order), 128):
        idx = order[i : i + 128]
        ids, mask = _pad([rows[j] for j in idx], pad_id)
        out[idx] = torch.softmax(model(ids, mask), -1).numpy()
    return out


def _texts_sha256(texts: Sequence[str]) -> str:
    """sha256 of ``texts`` as JSON lines (one JSON string a line, UTF-8): the same
    digest ``sha256sum`` gives for the texts written out that way."""
    h = hashlib.sha256()
    for t in texts:
        h.update((json.dumps(t, ensure_ascii=False) + "\n").encode())
    return h.hexdigest()


def distill(
    teacher_dir: str | Path,
    train_texts: Sequence[str] | AnnotatedDataset,
    valid: AnnotatedDataset,
    config: DistillConfig | None = None,
    *,
    extra_texts: Mapping[str, Sequence[str]] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainedModel:
    """Distil the model in ``teacher_dir`` into a ``config.layers``-layer student.

    Args:
        teacher_dir: a trained model directory (any manifest version).
        train_texts: the teacher's training texts (labels are not used), or the
            labelled split itself: then its content hash is recorded, and the card says
            whether it is the data the original model was trained on.
        valid: the validation split (gold labels, groups): selects the epoch; its texts
            are removed from the distillation texts.
        extra_texts: unlabelled texts by source name (e.g. background-safe text).
        on_epoch: called with each epoch's validation summary (the CLI prints it).

    Returns:
        The student as a ``TrainedModel`` (save it with ``.save(dir)``).

    Raises:
        ConfigError: a student with more layers than the teacher, a non-BERT encoder,
            a validation split with other classes, no texts.
    """
    cfg = config or DistillConfig()
    t0 = time.perf_counter()
    train_hash = None
    if isinstance(train_texts, AnnotatedDataset):
        train_hash, train_texts = train_texts.content_hash(), train_texts.texts
    teacher = TrainedModel.load(teacher_dir)
    if tuple(valid.schema.classes) != tuple(teacher.schema.classes):
        raise ConfigError(
            f"the validation data's classes {list(valid.schema.classes)} are not the "
            f"teacher's {list(teacher.schema.classes)}"
        )
    total = int(teacher.model.encoder.config.num_hidden_layers)
    layers = pick_layers(total, cfg.layers, cfg.layer_choice)
    held = set(valid.texts)
    sources = {"train": list(train_texts), **{k: list(v) for k, v in (extra_texts or {}).items()}}
    if cfg.augment:
        base = [t for t in dict.fromkeys(train_texts) if t and t not in held]
        sources["word-noise"] = word_noise(base, cfg.augment, seed=cfg.seed)
    texts: list[str] = []
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for name, part in sources.items():
        new = [t for t in part if t and t not in held and t not in seen]
        seen.update(new)
        texts += new
        counts[name] = len(new)
    if not texts:
        raise ConfigError("no texts to distil on (train and extra texts are empty or all in valid)")

    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _distill(teacher_dir, teacher, texts, counts, layers, valid, cfg, on_epoch, t0,
                        train_hash)  # fmt: skip
    finally:
        torch.set_num_threads(threads)


def _distill(
    teacher_dir: str | Path,
    teacher: TrainedModel,
    texts: list[str],
    counts: dict[str, int],
    layers: list[int],
    valid: AnnotatedDataset,
    cfg: DistillConfig,
    on_epoch: Callable[[dict], None] | None,
    t0: float,
    train_hash: str | None,
) -> TrainedModel:
    """The loop (``distill`` checks the inputs and sets the threads)."""
    tman = teacher.manifest
    total = int(teacher.model.encoder.config.num_hidden_layers)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pooled = teacher_embeddings(teacher, texts, cache_dir=cfg.cache_dir, progress=cfg.progress)
    t_emb = torch.from_numpy(pooled)
    with torch.no_grad():
        t_probs = torch.softmax(model_outputs(teacher.model.eval(), t_emb), -1)
    tok, max_len = teacher.tokenizer, tman.max_length
    pad_id = int(tok.pad_token_id or 0)
    rows = _encode(tok, texts, max_len)
    lengths = np.array([len(r) for r in rows])
    v_rows = _encode(tok, valid.texts, max_len)
    safe = torch.tensor(valid.schema.safe_mask(), dtype=torch.bool)

    student = student_from_teacher(teacher.model, layers)
    if hasattr(student.encoder, "set_attn_implementation"):
        student.encoder.set_attn_implementation("sdpa")
    if cfg.freeze_embeddings:
        student.encoder.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    steps = cfg.epochs * math.ceil(len(texts) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    history: list[dict] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    bar = tqdm(total=steps, desc=f"distil L{cfg.layers}", unit="batch", disable=not cfg.progress)
    for epoch in range(1, cfg.epochs + 1):
        student.train()
        total_loss = 0.0
        batches = _batches(lengths, cfg.batch_size, rng)
        quant = epoch > cfg.epochs - cfg.quant_aware_epochs
        with fake_int8(student) if quant else contextlib.nullcontext():
            for idx in batches:
                ids, mask = _pad([rows[i] for i in idx], pad_id)
                emb = student.embed(ids, mask)
                loss = distill_loss(
                    model_outputs(student, emb), emb, t_probs[idx], t_emb[idx],
                    loss=cfg.loss, embed_weight=cfg.embed_weight,
                    temperature=cfg.temperature, toxic_weight=cfg.toxic_weight, safe=safe,
                )  # fmt: skip
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                total_loss += float(loss.detach())
                bar.update(1)
        probs = _probs(student, v_rows, pad_id, valid.schema.num_classes)
        m = score_split(valid, probs.argmax(1))
        row = {
            "epoch": epoch,
            "loss": total_loss / len(batches),
            "worst_group_accuracy": m.worst_group_accuracy,
            "accuracy": m.accuracy,
            "toxic_auc": toxic_auc(valid, probs),
        }
        history.append(row)
        if on_epoch is not None:
            # The bar's line is cleared first and drawn again after: a line printed while
            # it is drawn (the CLI's epoch summary) came out on the end of the bar's line.
            bar.clear()
            on_epoch(row)
            bar.refresh()
        # The guard's decisions follow its toxic score, so the epoch is chosen by the
        # score's validation ROC AUC (all 1,000 toxic-questions valid texts); the
        # 15-class worst-group accuracy swung by one text of a 31-text group between
        # epochs (0.600 at epoch 1, 0.581 at epoch 3, when the AUC rose 0.876 -> 0.885).
        score = row["toxic_auc"] if row["toxic_auc"] is not None else m.accuracy
        # Quantisation-aware epochs are there to make the fast int8 pass: choose among them.
        if quant != bool(cfg.quant_aware_epochs):
            continue
        if best is None or score >= best[0]:
            best = (score, epoch, copy.deepcopy(student.state_dict()))
    bar.close()
    assert best is not None  # epochs >= 1
    student.load_state_dict(best[2])
    student.eval()
    best_probs = _probs(student, v_rows, pad_id, valid.schema.num_classes)
    # With its ROC AUC: the number that chose the epoch, and the one the teacher's
    # manifest and model card show beside it (it was left out, so the student's card had
    # no ROC AUC to compare with the teacher's).
    metrics = score_split(valid, best_probs.argmax(1), proba=best_probs)
    record = DistillRecord(
        teacher_dir=str(Path(teacher_dir).resolve()),
        teacher_manifest_sha256=file_sha256(Path(teacher_dir) / "manifest.json"),
        teacher_layers=total,
        teacher_valid_metrics=tman.valid_metrics.model_dump(mode="json"),
        layers=layers,
        config=cfg.model_dump(mode="json"),
        texts=counts,
        epoch_valid=history,
        best_epoch=best[1],
        seconds=round(time.perf_counter() - t0, 1),
        record_version=2,
        texts_sha256=_texts_sha256(texts),
        train_data_sha256=train_hash,
        valid_sha256=valid.content_hash(),
        # The chain back to the trained model: a grand-student's record used to replace
        # its teacher's, and its card called a student "trained on crowd labels".
        teacher_distilled_from=tman.distilled_from,
    )
    # The original model's data stays (what the chain was trained on with labels, and
    # what `distill` reads again by name); its test data and numbers are not the
    # student's (`evaluate --record` measures the student's own).
    data = {k: {s: v for s, v in getattr(tman, k).items() if s != "test"}
            for k in ("data_hashes", "data_names", "data_sizes")}  # fmt: skip
    manifest = TrainManifest(
        **{
            **tman.model_dump(exclude={"files", "manifest_version", "test_metrics"}),
            **data,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "valid_metrics": metrics,
            "best_epoch": best[1],
            "distilled_from": record,
            "notes": [
                *tman.notes,
                f"distilled from {teacher_dir} ({total} layers) into {len(layers)} "
                f"layer(s) {layers}, loss {cfg.loss}, {len(texts)} texts",
            ],
            "versions": package_versions(),
        }
    )
    return TrainedModel(student.eval(), tok, teacher.schema, manifest)
