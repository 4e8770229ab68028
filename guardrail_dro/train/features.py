"""Where the classifier's input features come from: the seam between the two modes.

``FrozenFeatures`` serves pooled embeddings computed once (and cached on disk) by a
frozen encoder; ``FullFeatures`` runs the encoder on every batch so it fine-tunes with
the head. The trainer's loop calls only ``features(split, idx)`` and never knows which
one it has, which is what keeps one loop for both modes.
"""

from __future__ import annotations

import copy
import json
import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import nn

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.devices import pick_device
from guardrail_dro.train.embeddings import (
    EmbeddingCache,
    embed_texts,
    model_fingerprint,
    truncation_note,
)
from guardrail_dro.train.lower_layers import MAX_BYTES, LowerStates, eval_mode, freeze_below
from guardrail_dro.train.model import GuardClassifier, default_backbone, load_backbone

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

_M = TypeVar("_M", bound=nn.Module)

__all__ = [
    "FeatureSource",
    "FrozenFeatures",
    "FullFeatures",
    "build_features",
    "default_cache_dir",
    "freeze_below",
    "truncation_note",
    "unwrap",
]


def unwrap(module: _M) -> _M:
    """The module inside a DDP wrapper (what accelerate's prepare returns), or itself.

    Typed as the module's declared type: a wrapped module stands where its declared
    type says the plain one is (``embedder.encoder`` during a distributed run).
    """
    inner: _M = getattr(module, "module", module)
    return inner


def default_cache_dir() -> Path:
    """``$GUARDRAIL_DRO_CACHE`` or ``~/.cache/guardrail-dro``."""
    env = os.environ.get("GUARDRAIL_DRO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "guardrail-dro"


def uses_normalize(folder: Path) -> bool:
    """Whether a sentence-transformers folder L2-normalises its pooled output."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return False
    return any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))


class FeatureSource:
    """Features per split for the trainer; see the module docstring.

    Args:
        embedder: encoder + pooling (its head is unused here).
        tokenizer: the encoder's tokenizer.
        device: where the features live.
        dim: feature size.
        backbone: the encoder's folder or name, for the manifest.
        namespace: the embedding cache's key prefix for this encoder and pooling.
        accelerator: accelerate's Accelerator in full mode, else None.
        cache_path: the embedding cache file ``embed_other`` reads and fills (None: no
            cache).
        max_length: token limit of ``embed_other``.
    """

    def __init__(
        self,
        *,
        embedder: GuardClassifier,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
        dim: int,
        backbone: str,
        namespace: str,
        accelerator: Accelerator | None = None,
        cache_path: Path | None = None,
        max_length: int = 128,
    ) -> None:
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.device = device
        self.dim = dim
        self.backbone = backbone
        self.namespace = namespace
        self.accelerator = accelerator
        self.cache_path = cache_path
        self.max_length = max_length
        self.notes: list[str] = []
        """What the user should know about how features are made (the trainer reports
        them with the run's notes)."""

    def features(self, split: str, idx: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def embed_other(self, texts: list[str]) -> np.ndarray:
        """(M, D) pooled embeddings of texts that are not items (the annotators'
        rationales) by this encoder, through the embedding cache, in the encoder's
        current weights: called before training, that is the pre-trained encoder in
        either mode. Every module's train/eval mode is left as it was."""
        # The cache keys say "pre-trained encoder" (``namespace``): call this before any
        # training step, never after fine-tuning has moved the weights.
        embedder = self.embedder
        first = self.accelerator.main_process_first() if self.accelerator else nullcontext()
        # eval_mode gives each module its own mode back (the frozen part under
        # train_layers stays in eval mode).
        with first, eval_mode(embedder):  # the main process fills the cache first
            cache = EmbeddingCache(self.cache_path) if self.cache_path is not None else None
            try:
                return embed_texts(
                    embedder,
                    self.tokenizer,
                    texts,
                    namespace=self.namespace,
                    cache=cache,
                    max_length=self.max_length,
                    progress=False,
                )
            finally:
                if cache is not None:
                    cache.close()

    def batches(
        self, split: str, order: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> list[torch.Tensor]:
        """One epoch's batches of ``split`` items, from a shuffled ``order``: plain
        consecutive chunks (cached features cost the same whatever their text length)."""
        return list(order.split(batch_size))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return []

    def train(self) -> None: ...

    def eval(self) -> None: ...

    def snapshot(self) -> dict[str, torch.Tensor] | None:
        return None

    def restore(self, state: dict[str, torch.Tensor] | None) -> None: ...

    def release(self) -> None:
        """Free what only training needed (a result keeps its source for predictions)."""


class FrozenFeatures(FeatureSource):
    def __init__(self, splits: dict[str, np.ndarray], **kw: Any) -> None:
        super().__init__(**kw)
        self._x = {k: torch.as_tensor(v, device=self.device) for k, v in splits.items()}

    def features(self, split: str, idx: torch.Tensor | None) -> torch.Tensor:
        x = self._x[split]
        return x if idx is None else x[idx]


class FullFeatures(FeatureSource):
    """Runs the encoder per batch.

    What makes it affordable on a CPU (measured on toxic-questions, 2 loaded cores):
    the encoder's cost grows with the padded width of a batch, and texts are short
    (median 15 tokens, longest 165), so a random batch of 32 pads to its one long text.
    ``batches`` groups texts of similar length (shuffled within buckets of
    ``BUCKET_BATCHES`` batches, buckets and batches in random order), and whole-split
    features are encoded in length order. Whole-split features (the estimator's valid
    step, evaluation) are computed in eval mode (no dropout) without gradient, once per
    split object (``valid`` and ``select`` are often the same one), and kept until the
    next ``eval()``: the upper level of an epoch sees the encoder as of the epoch start,
    which is what the previous epoch's evaluation just encoded.

    With ``train_layers`` the frozen layers below the trained ones run once per split
    (``lower_layers.LowerStates``), not on every step, unless several processes train
    (DDP wraps the encoder) or the states would not fit ``lower_layers.MAX_BYTES``.
    """

    BUCKET_BATCHES = 50
    """Batches per length bucket: large enough that a bucket's texts are of similar
    length, small enough that an epoch still mixes every part of the split."""

    def __init__(
        self,
        splits: dict[str, AnnotatedDataset],
        max_length: int,
        batch_size: int,
        train_layers: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(max_length=max_length, **kw)
        if train_layers is not None:
            freeze_below(self.embedder.encoder, train_layers)
        first: dict[int, str] = {}
        self._alias = {k: first.setdefault(id(ds), k) for k, ds in splits.items()}
        self._tok = {
            k: self.tokenizer(
                ds.texts,
                padding="max_length",
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            for k, ds in splits.items()
            if self._alias[k] == k
        }
        self._len = {k: enc["attention_mask"].sum(1) for k, enc in self._tok.items()}
        self._batch = max(batch_size, 64)  # no gradient: a larger batch costs no memory
        self._whole: dict[str, torch.Tensor] = {}
        self._frozen_below: int | None = None
        self._lower = self._lower_states(train_layers)

    def _lower_states(self, train_layers: int | None) -> LowerStates | None:
        """The cache of the frozen layers' output, or None (and a note saying why)."""
        if train_layers is None:
            return None
        encoder = self.embedder.encoder
        start = len(encoder.encoder.layer) - train_layers  # type: ignore[union-attr,arg-type]
        self._frozen_below = start
        below = f"the embeddings and the {start} frozen layer(s) below the trained ones"
        every_step = f"train_layers: {below} run on every step, in eval mode (no dropout)"
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            self.notes.append(
                f"{every_step}: several processes train, and their output is cached in a "
                "single process only"
            )
            return None
        need = LowerStates.nbytes(list(self._len.values()), self.dim)
        if need > MAX_BYTES:
            self.notes.append(
                f"{every_step}: their output for these splits would take "
                f"{need / 1024**3:.1f} GiB, over the {MAX_BYTES / 1024**3:.0f} GiB cache limit"
            )
            return None
        states = LowerStates(encoder, start)
        first = next(iter(self._tok.values()))
        if not states.agrees(
            self.embedder, first["input_ids"][:8], first["attention_mask"][:8], self.device
        ):
            self.notes.append(
                f"{every_step}: this {type(encoder).__name__} does not run its top layers "
                "alone on cached states the way BERT-style encoders do"
            )
            return None
        self.notes.append(
            f"train_layers: {below} run once per split, in eval mode (no dropout); each "
            "step runs only the trained layers"
        )
        return states

    def _run(self, split: str, idx: torch.Tensor) -> torch.Tensor:
        enc = self._tok[self._alias[split]]
        idx = idx.cpu()
        ids = enc["input_ids"][idx]
        mask = enc["attention_mask"][idx]
        width = int(mask.sum(1).max())  # trim padding beyond the longest text of the batch
        ids, mask = ids[:, :width].to(self.device), mask[:, :width].to(self.device)
        if self._lower is None:
            return self.embedder.embed(ids, mask)
        key = self._alias[split]
        if not self._lower.has(key):
            self._lower.build(
                key, enc["input_ids"], enc["attention_mask"], self._batch, self.device
            )
        return self._lower.embed(self.embedder, key, idx, ids, mask)

    def batches(
        self, split: str, order: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> list[torch.Tensor]:
        lengths = self._len[self._alias[split]]
        out: list[torch.Tensor] = []
        for bucket in order.split(batch_size * self.BUCKET_BATCHES):
            by_length = bucket[torch.argsort(lengths[bucket.cpu()], stable=True)]
            out.extend(by_length.split(batch_size))
        return [out[i] for i in torch.randperm(len(out), generator=generator).tolist()]

    def features(self, split: str, idx: torch.Tensor | None) -> torch.Tensor:
        if idx is not None:
            return self._run(split, idx)
        key = self._alias[split]
        if key not in self._whole:
            order = torch.argsort(self._len[key], stable=True)
            with eval_mode(self.embedder), torch.no_grad():
                x = torch.cat([self._run(key, chunk) for chunk in order.split(self._batch)])
            self._whole[key] = torch.empty_like(x)
            self._whole[key][order.to(x.device)] = x
        return self._whole[key]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.embedder.encoder.parameters() if p.requires_grad]

    def train(self) -> None:
        """Train mode, but for the frozen part under ``train_layers``: the embeddings and
        the layers below the trained ones stay in eval mode (no dropout), whether their
        output is cached or not, so that a run means the same either way."""
        self.embedder.train()
        if self._frozen_below is not None:
            enc = unwrap(self.embedder.encoder)
            enc.embeddings.eval()  # type: ignore[union-attr]
            for layer in enc.encoder.layer[: self._frozen_below]:  # type: ignore[union-attr,index]
                layer.eval()

    def eval(self) -> None:
        self._whole.clear()  # the encoder trained since they were computed
        self.embedder.eval()

    def release(self) -> None:
        if self._lower is not None:
            self._lower.clear()

    def snapshot(self) -> dict[str, torch.Tensor]:
        enc = unwrap(self.embedder.encoder)
        return {k: v.detach().to("cpu", copy=True) for k, v in enc.state_dict().items()}

    def restore(self, state: dict[str, torch.Tensor] | None) -> None:
        if state is not None:
            unwrap(self.embedder.encoder).load_state_dict(state)
        self._whole.clear()


def build_features(cfg: TrainConfig, splits: dict[str, AnnotatedDataset]) -> FeatureSource:
    """Load the backbone and prepare features of every split for ``cfg.mode``."""
    folder = default_backbone() if cfg.backbone is None else Path(cfg.backbone)
    tok, enc = load_backbone(folder if folder.exists() else cfg.backbone)
    normalize = folder.exists() and uses_normalize(folder)
    accelerator = None
    if cfg.mode == "full" and (cfg.device is None or cfg.device == "cpu"):
        # Under `accelerate launch` / `torchrun` this is the process's own GPU, and the
        # trainer wraps the modules for DDP; alone, it is the best device present.
        from accelerate import Accelerator, DistributedDataParallelKwargs

        # Backbones carry layers mean pooling never uses (BERT's pooler): DDP must not
        # wait for their gradients.
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
        accelerator = Accelerator(cpu=cfg.device == "cpu", kwargs_handlers=[ddp])
        device = accelerator.device
    else:
        device = pick_device(cfg.device)
    embedder = GuardClassifier(enc, None, normalize=normalize).to(device)  # type: ignore[arg-type]
    fp = model_fingerprint(folder) if folder.exists() else str(cfg.backbone)
    namespace = f"{fp}|mean|norm={normalize}|len={cfg.max_length}"
    common = dict(
        embedder=embedder,
        tokenizer=tok,
        device=device,
        dim=int(enc.config.hidden_size),
        backbone=str(folder if folder.exists() else cfg.backbone),
        namespace=namespace,
        cache_path=(cfg.cache_dir or default_cache_dir()) / "embeddings.sqlite",
    )
    if cfg.mode == "full":
        full = FullFeatures(
            splits,
            cfg.max_length,
            int(cfg.resolved("batch_size")),
            train_layers=cfg.train_layers,
            accelerator=accelerator,
            **common,
        )
        if cfg.probe_epochs:  # the LP stage, a frozen-mode fit, reads these from the cache
            # The main process embeds and fills the cache; the other ranks then read its
            # rows instead of all writing the same rows at once to one SQLite file.
            first = accelerator.main_process_first() if accelerator else nullcontext()
            with first:
                _cached_embeddings(cfg, embedder, tok, namespace, splits)
        full.train()
        return full
    return FrozenFeatures(
        _cached_embeddings(cfg, embedder, tok, namespace, splits),
        max_length=cfg.max_length,
        **common,
    )


def _cached_embeddings(
    cfg: TrainConfig,
    embedder: GuardClassifier,
    tok: PreTrainedTokenizerBase,
    namespace: str,
    splits: dict[str, AnnotatedDataset],
) -> dict[str, np.ndarray]:
    """Pooled embeddings of each split through the embedding cache (one pass per split
    object: "valid" and "select" are often the same)."""
    cache = EmbeddingCache((cfg.cache_dir or default_cache_dir()) / "embeddings.sqlite")
    try:
        arrays = {}
        done: dict[int, np.ndarray] = {}
        for name, ds in splits.items():
            if id(ds) not in done:  # "valid" and "select" are often the same object
                done[id(ds)] = embed_texts(
                    embedder,
                    tok,
                    ds.texts,
                    namespace=namespace,
                    cache=cache,
                    batch_size=cfg.embed_batch_size,
                    max_length=cfg.max_length,
                    progress=cfg.progress,
                    desc=f"embed {name}",
                )
            arrays[name] = done[id(ds)]
    finally:
        cache.close()
    return arrays


def clone_embedder(src: FeatureSource) -> GuardClassifier:
    """A CPU copy of the source's encoder + pooling, for saving beside a trained head."""
    return copy.deepcopy(src.embedder).to("cpu").eval()
