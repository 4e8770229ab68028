"""``TrainResult``: what ``BiLevelTrainer.fit`` returns, and its predictions on new text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.background import BackgroundChoice
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.embeddings import EmbeddingCache, embed_texts
from guardrail_dro.train.features import FeatureSource, default_cache_dir
from guardrail_dro.train.metrics import Metrics, score_split
from guardrail_dro.train.model import ClassifierHead, ToxicMix, WeightEstimator
from guardrail_dro.train.toxic_score import ToxicScoreChoice

__all__ = ["SeedRun", "TrainResult"]


class SeedRun(BaseModel):
    """One seed of an averaged model (manifest ``averaged_seeds``)."""

    seed: int
    best_epoch: int
    valid_worst_group_accuracy: float | None = None
    valid_accuracy: float
    toxic_score: str | None = Field(None, description="The seed's own toxic-score choice.")


@dataclass
class TrainResult:
    """What ``fit`` returns: the selected head (and estimator), with what it learned."""

    config: TrainConfig
    schema: LabelSchema
    head: ClassifierHead
    estimator: WeightEstimator | None
    source: FeatureSource
    annotators: tuple[str, ...]
    groups: tuple[str, ...]
    best_epoch: int
    valid_metrics: Metrics
    group_weights: dict[str, float] | None
    annotator_weight_by_group: dict[str, dict[str, float]] | None
    train_items_used: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    background: BackgroundChoice | None = None
    """The background-safe text's weight, amount and held-out block rate, if any."""
    toxic_score: ToxicScoreChoice | None = None
    """How the guard's toxic score was chosen on valid (``toxic_score.py``)."""
    toxic_mix: ToxicMix | None = None
    """The binary head in the guard's score; None when 1 - P(safe) was kept."""
    toxic_binary: torch.nn.Linear | None = None
    """The binary toxic-vs-safe head fitted for the choice, kept when unused too
    (averaging seeds averages it)."""
    averaged_seeds: list[SeedRun] | None = None
    """The seeds whose heads this result averages (``train/seed_average.py``)."""

    @property
    def is_main_process(self) -> bool:
        """False on the other ranks of a distributed run: only the main one saves."""
        acc = self.source.accelerator
        return acc is None or bool(acc.is_main_process)

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        """The head's input (N, D) for new texts, on the source's device; in frozen mode
        through the embedding cache.

        Not in full mode: the cache's keys name the pre-trained encoder, so a fine-tuned
        one read its rows back (every test score of a full-mode bench before 2026-12-04
        was the fine-tuned head on pre-trained embeddings) and would have written its
        own rows under that name for the texts it had not seen."""
        cfg = self.config
        cache = (
            EmbeddingCache((cfg.cache_dir or default_cache_dir()) / "embeddings.sqlite")
            if cfg.mode == "frozen"
            else None
        )
        try:
            self.source.eval()
            x = embed_texts(
                self.source.embedder,
                self.source.tokenizer,
                texts,
                namespace=self.source.namespace,
                cache=cache,
                batch_size=cfg.embed_batch_size,
                max_length=cfg.max_length,
                progress=cfg.progress,
                desc="embed",
            )
        finally:
            if cache is not None:
                cache.close()
        return torch.as_tensor(x, device=self.source.device)

    @torch.no_grad()
    def probabilities(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(class head's, exported model's) class probabilities (N, C) for new texts, from
        one embedding pass: the first decides the class, the second's toxic mass 1 -
        P(safe) is the guard's toxic score (``toxic_mix``; the same as the first where
        1 - P(safe) was kept)."""
        x = self.embed(texts)
        self.head.eval()
        logits = self.head(x)
        proba = torch.softmax(logits, -1).cpu().numpy()
        if self.toxic_mix is None:
            return proba, proba
        return proba, self.toxic_mix(x, logits).exp().cpu().numpy()

    def predict_proba(self, texts: list[str], *, guard: bool = False) -> np.ndarray:
        """Class probabilities (N, C) for new texts: the class head's, or with ``guard``
        the exported model's (``probabilities``)."""
        return self.probabilities(texts)[int(guard)]

    def evaluate(self, data: AnnotatedDataset) -> Metrics:
        """Metrics on a split with gold labels (and groups, for the group metrics), the
        guard's toxic ROC AUC included."""
        proba, guard = self.probabilities(data.texts)
        return score_split(data, proba.argmax(1), proba=guard)
