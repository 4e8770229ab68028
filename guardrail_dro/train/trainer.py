"""The bi-level soft-label GroupDRO trainer and, with the same loop, its baselines.

One loop serves every method; they differ only in where the classifier's targets come
from and whether the classifier's own loss is group-weighted:

============  ==========================================  ===================
method        targets of a training item                  classifier loss
============  ==========================================  ===================
ours          s_phi(x) from the learned estimator, upper  mean soft CE
              risk = classifier CE on valid after a
              one-step unrolled update (bi-level)
ours-agree    s_phi(x), upper risk = agreement            mean soft CE
              (-log s(x)[y] on valid)
soft          uniform over the annotators present         mean soft CE
mv            majority vote (crowd-kit)                   mean CE
ds            Dawid-Skene posteriors (crowd-kit)          mean soft CE
dro-mv        majority vote                               GroupDRO over groups
single:<a>    annotator <a>'s labels                      mean CE
best-single   the single annotator whose classifier is     mean CE
              best on valid (worst group)
gold          valid gold (80 %), selected on the other    mean CE
              20 % of valid
============  ==========================================  ===================

``ours`` is the classifier-risk variant because it won on the validation split of
toxic-questions (worst-group 0.615 vs 0.578 for the agreement risk, 2026-11-23); the
estimator's capacity is chosen by cross-validation inside valid (rank_selection.py).

Everything (epoch, checkpoint) is selected on the validation split, by worst-group
accuracy then accuracy; the test split is never seen here. The device comes from the
feature source (CUDA, MPS or CPU); no ``.cuda()``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, DataError
from guardrail_dro.train import baselines as B
from guardrail_dro.train import objectives as O
from guardrail_dro.train.embeddings import EmbeddingCache, embed_texts
from guardrail_dro.train.features import FeatureSource, build_features, default_cache_dir, unwrap
from guardrail_dro.train.metrics import Metrics, compute_metrics, score_split
from guardrail_dro.train.model import ClassifierHead, WeightEstimator
from guardrail_dro.train.rank_selection import choose_estimator_rank

__all__ = ["METHODS", "BiLevelTrainer", "TrainConfig", "TrainResult"]

METHODS = ("ours", "ours-agree", "soft", "mv", "ds", "dro-mv", "best-single", "gold")
"""Built-in methods; ``single:<annotator>`` trains on one annotator's labels."""


class TrainConfig(BaseModel):
    """Everything that defines a training run; recorded in the model manifest."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field("ours", description="One of METHODS or 'single:<annotator id>'.")
    mode: Literal["frozen", "full"] = Field(
        "frozen",
        description="frozen: heads on cached embeddings (CPU, seconds); "
        "full: fine-tune the encoder (GPU).",
    )
    backbone: str | None = Field(None, description="HF folder or name; None = all-MiniLM-L6-v2.")
    max_length: int = Field(128, ge=8, description="Tokens per text for the encoder.")
    epochs: int | None = Field(None, ge=1, description="Default: 40 frozen, 3 full.")
    batch_size: int | None = Field(None, ge=1, description="Default: 128 frozen, 32 full.")
    lr: float | None = Field(
        None, gt=0, description="Classifier LR; default 1e-2 frozen (chosen on valid), 3e-5 full."
    )
    weight_decay: float = Field(1e-4, ge=0)
    head_hidden: int = Field(0, ge=0, description="0 = linear head (logistic regression).")
    dropout: float = Field(0.1, ge=0, lt=1)
    estimator_lr: float = Field(3e-3, gt=0, description="Soft-label estimator LR (Adam).")
    estimator_rank: int | None = Field(
        None,
        ge=0,
        description="Item/annotator space size; 0 = one global weight per annotator; "
        "None = chosen among 0, 4, 32 by 2-fold cross-validation inside valid.",
    )
    estimator_weight_decay: float = Field(
        0.0, ge=0, description="Decoupled weight decay: shrinks the weights toward uniform."
    )
    group_step: float = Field(0.05, ge=0, description="eta_q of the GroupDRO update.")
    inner_lr: float = Field(1.0, gt=0, description="Unrolled step size (ours).")
    estimator_steps: int = Field(1, ge=1, description="Estimator steps per classifier step.")
    drop_overlap: bool = Field(
        True, description="Drop train items whose normalised text is also in valid."
    )
    seed: int = 0
    embed_batch_size: int = Field(64, ge=1)
    cache_dir: Path | None = Field(None, description="Embedding cache; default ~/.cache.")
    device: str | None = Field(None, description="cpu, cuda, cuda:1...; default: best available.")
    progress: bool = True

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METHODS and not (v.startswith("single:") and len(v) > 7):
            raise ConfigError(
                f"unknown method {v!r}: choose one of {', '.join(METHODS)} or single:<annotator>"
            )
        return v

    def resolved(self, name: str) -> int | float:
        defaults = {"epochs": (40, 3), "batch_size": (128, 32), "lr": (1e-2, 3e-5)}
        v = getattr(self, name)
        return defaults[name][self.mode == "full"] if v is None else v

    @property
    def uses_estimator(self) -> bool:
        return self.method in ("ours", "ours-agree")


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
    history: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_main_process(self) -> bool:
        """False on the other ranks of a distributed run: only the main one saves."""
        acc = self.source.accelerator
        return acc is None or acc.is_main_process

    @torch.no_grad()
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, C) for new texts, through the embedding cache."""
        cfg = self.config
        cache = EmbeddingCache((cfg.cache_dir or default_cache_dir()) / "embeddings.sqlite")
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
            cache.close()
        self.head.eval()
        logits = self.head(torch.as_tensor(x, device=self.source.device))
        return torch.softmax(logits, -1).cpu().numpy()

    def evaluate(self, data: AnnotatedDataset) -> Metrics:
        """Metrics on a split with gold labels (and groups, for the group metrics)."""
        pred = self.predict_proba(data.texts).argmax(1)
        return score_split(data, pred)


def _synced(acc, t: torch.Tensor) -> torch.Tensor:
    """Mean over the processes of a distributed run, so every rank takes the same GroupDRO
    step (each saw a different batch); the tensor itself when alone."""
    if acc is None or acc.num_processes < 2:
        return t
    return acc.reduce(t.detach().clone(), reduction="mean")


def _backward(acc, loss: torch.Tensor) -> None:
    if acc is not None:
        acc.backward(loss)
    else:
        loss.backward()


def _select_key(m: Metrics) -> tuple[float, float]:
    worst = m.worst_group_accuracy if m.worst_group_accuracy is not None else m.accuracy
    return (round(worst, 6), round(m.accuracy, 6))


class BiLevelTrainer:
    """Train a guard classifier from annotator labels, robust on the worst group.

    Example:
        >>> result = BiLevelTrainer(TrainConfig(method="ours")).fit(train, valid)
        >>> result.valid_metrics.worst_group_accuracy
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config or TrainConfig()

    # ---- data checks ---------------------------------------------------------------
    def _check(self, train: AnnotatedDataset, valid: AnnotatedDataset) -> None:
        if train.schema != valid.schema:
            raise DataError("train and valid have different label schemas")
        if not valid.has_gold:
            valid.gold_array()  # raises naming the missing items
        if self.config.method != "gold" and not train.annotators:
            raise DataError(f"{train.name or 'train'} has no annotator labels to learn from")

    # ---- targets ----------------------------------------------------------------------
    def _targets(
        self,
        labels: np.ndarray,
        annotators: tuple[str, ...],
        valid: AnnotatedDataset,
        notes: list[str],
    ) -> np.ndarray:
        c = valid.schema.num_classes
        m = self.config.method
        if m in ("mv", "dro-mv"):
            return B.majority_vote_targets(labels, c)
        if m == "ds":
            return B.dawid_skene_targets(labels, c)
        if m in ("soft", "ours", "ours-agree"):
            return B.uniform_soft_targets(labels, c)
        if m.startswith("single:"):
            name = m.split(":", 1)[1]
            if name not in annotators:
                raise ConfigError(f"{m}: no annotator {name!r}; annotators are {list(annotators)}")
            return B.single_annotator_targets(labels, c, annotators.index(name))
        raise AssertionError(m)

    # ---- the loop -------------------------------------------------------------------
    def fit(self, train: AnnotatedDataset, valid: AnnotatedDataset) -> TrainResult:
        """Train on ``train``'s annotator labels; select on ``valid``'s gold and groups.

        Raises:
            DataError: valid without gold, train without annotators, mismatched schemas.
        """
        cfg = self.config
        self._check(train, valid)
        if cfg.method == "best-single":
            return self._best_single(train, valid)
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        notes: list[str] = []
        annotators = train.annotators
        if cfg.drop_overlap and cfg.method != "gold":
            train, dropped = train.without_overlap(valid)
            if dropped:
                notes.append(f"{dropped} train item(s) also in valid were left out (drop_overlap)")
        sel = valid
        if cfg.method == "gold":
            perm = rng.permutation(len(valid))
            cut = max(1, int(0.8 * len(valid)))
            train, sel = (
                valid.subset(perm[:cut], name="valid-80"),
                valid.subset(perm[cut:], name="valid-20"),
            )
            notes.append("gold: trained on 80% of valid, selected on the other 20%")
        src = build_features(cfg, {"train": train, "valid": valid, "select": sel})
        device = src.device
        if cfg.mode == "frozen" and device.type == "cpu":
            # Heads on cached embeddings are tiny matmuls: intra-op threads only add sync
            # cost, 10x slower measured on a loaded 2-core machine. Restored on return.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._loop(train, valid, sel, src, annotators, notes, t0)
            finally:
                torch.set_num_threads(threads)
        return self._loop(train, valid, sel, src, annotators, notes, t0)

    def _loop(self, train, valid, sel, src, annotators, notes, t0) -> TrainResult:
        """The alternating loop; ``sel`` is the split used for selection."""
        cfg = self.config
        device = src.device
        schema = valid.schema
        C = schema.num_classes
        groups = valid.groups

        if cfg.method == "gold":
            targets = np.eye(C, dtype=np.float32)[train.gold_array()]
            labels = np.full((len(train), 1), -1)
        else:
            labels = train.label_matrix(annotators)
            targets = self._targets(labels, annotators, valid, notes)
        keep = np.nonzero(targets.sum(1) > 0)[0]
        if len(keep) < len(train):
            notes.append(f"{len(train) - len(keep)} train item(s) without usable labels skipped")
        if len(keep) == 0:
            raise DataError("no training item has a label for this method")

        y_sel = torch.as_tensor(sel.gold_array(), device=device)
        g_sel = sel.group_array(groups)
        G = max(len(groups), 1)
        # GroupDRO on the classifier needs a group per training item. Train splits often
        # have none: then each item takes the group of the nearest valid-group centroid.
        train_groups = None
        if cfg.method == "dro-mv":
            train_groups = self._train_groups(train, valid, src, groups, notes)

        T = torch.as_tensor(targets, device=device)
        Ltr = torch.as_tensor(labels, device=device)
        head = ClassifierHead(src.dim, C, cfg.head_hidden, cfg.dropout).to(device)
        params = list(head.parameters()) + src.trainable_parameters()
        opt = torch.optim.AdamW(params, lr=cfg.resolved("lr"), weight_decay=cfg.weight_decay)

        estimator = est_opt = None
        q = torch.full((G,), 1.0 / G, device=device)
        if cfg.uses_estimator:
            Lv = torch.as_tensor(valid.label_matrix(annotators), device=device)
            yv = torch.as_tensor(valid.gold_array(), device=device)
            # Without groups on valid the upper level is plain risk minimisation: every
            # item in one group (group -1 would drop every item from the group means).
            gv = torch.as_tensor(
                valid.group_array(groups) if groups else np.zeros(len(valid), dtype=np.int64),
                device=device,
            )
            if not groups:
                notes.append("valid has no groups: the upper level treats it as one group")
            rank = self._estimator_rank(src, Lv, yv, gv, G, C, notes)
            estimator = WeightEstimator(src.dim, len(annotators), rank).to(device)
            est_opt = torch.optim.AdamW(
                estimator.parameters(),
                lr=cfg.estimator_lr,
                weight_decay=cfg.estimator_weight_decay,
            )
            # The agreement risk's items and their labels are constant: select them once.
            fix = O.fixable_items(Lv, yv)
            Lv_fix, yv_fix, gv_fix = Lv[fix], yv[fix], gv[fix]
            present_fix = O.annotator_mask(Lv_fix)
            dropped = int(O.annotator_mask(Lv).any(1).sum() - fix.sum())
            if dropped and cfg.method == "ours-agree":
                notes.append(
                    f"agreement risk: {dropped} valid item(s) where no annotator gave "
                    "the gold label are left out of the upper level"
                )
            if cfg.method == "ours-agree" and not bool(fix.any()):
                raise DataError(
                    "method 'ours-agree' (agreement risk) needs annotator labels on the "
                    "validation split that agree with its gold; use 'ours' (classifier risk) "
                    "when valid has only gold labels"
                )

        acc = src.accelerator
        if acc is not None:
            # DDP under `accelerate launch` / `torchrun`; plain modules in one process.
            src.embedder.encoder, head, opt = acc.prepare(src.embedder.encoder, head, opt)
            if estimator is not None:
                estimator, est_opt = acc.prepare(estimator, est_opt)

        bs = int(cfg.resolved("batch_size"))
        epochs = int(cfg.resolved("epochs"))
        nproc = acc.num_processes if acc is not None else 1
        share = (len(keep) + nproc - 1) // nproc  # items per process and epoch
        steps = epochs * ((share + bs - 1) // bs)
        best: tuple | None = None
        history: list[dict] = []
        bar = tqdm(
            total=steps,
            desc=f"train {cfg.method}",
            unit="step",
            leave=False,
            disable=not cfg.progress or (acc is not None and not acc.is_local_main_process),
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        keep_t = torch.as_tensor(keep)
        for epoch in range(epochs):
            head.train()
            src.train()
            order = keep_t[torch.randperm(len(keep_t), generator=gen)]
            if acc is not None and acc.num_processes > 1:
                order = order[acc.process_index :: acc.num_processes]  # this process's share
            for i in range(0, len(order), bs):
                idx = order[i : i + bs].to(device)
                feats = src.features("train", idx)
                if estimator is not None:
                    vfeats = src.features("valid", None).detach()
                    for _ in range(cfg.estimator_steps):
                        est_opt.zero_grad()
                        if cfg.method == "ours-agree":
                            w = estimator(vfeats[fix], present_fix)
                            R, n = O.agreement_group_risks(w, Lv_fix, yv_fix, gv_fix, G, C)
                        else:
                            R, n = self._unrolled_risk(
                                head, estimator, feats.detach(), Ltr[idx], vfeats, yv, gv, G, C
                            )
                        q = O.update_group_weights(
                            q, _synced(acc, R), cfg.group_step, _synced(acc, n) > 0
                        )
                        _backward(acc, (q * R).sum())
                        est_opt.step()
                    with torch.no_grad():
                        w = estimator(feats.detach(), O.annotator_mask(Ltr[idx]))
                        target = O.soft_labels(w, Ltr[idx], C)
                else:
                    target = T[idx]
                per_item = O.soft_cross_entropy(head(feats), target)
                if train_groups is not None:
                    R, n = O.group_mean(per_item, train_groups[idx], G)
                    q = O.update_group_weights(
                        q, _synced(acc, R), cfg.group_step, _synced(acc, n) > 0
                    )
                    loss = (q * R).sum()
                else:
                    loss = per_item.mean()
                opt.zero_grad()
                _backward(acc, loss)
                opt.step()
                bar.update(1)
            m = self._evaluate(head, src, "select", y_sel, g_sel, groups, schema)
            history.append({"epoch": epoch, "loss": float(loss.detach()), **m.headline()})
            bar.set_postfix(acc=f"{m.accuracy:.3f}", worst=f"{m.worst_group_accuracy or 0:.3f}")
            if best is None or _select_key(m) > best[0]:
                best = (
                    _select_key(m),
                    epoch,
                    m,
                    copy.deepcopy(unwrap(head).state_dict()),
                    copy.deepcopy(unwrap(estimator).state_dict()) if estimator else None,
                    q.clone(),
                    src.snapshot(),
                )
        bar.close()
        _, best_epoch, best_m, head_state, est_state, best_q, src_state = best
        head = unwrap(head)
        src.embedder.encoder = unwrap(src.embedder.encoder)
        estimator = unwrap(estimator) if estimator is not None else None
        head.load_state_dict(head_state)
        head.eval()
        src.restore(src_state)
        if estimator is not None:
            estimator.load_state_dict(est_state)
            estimator.eval()
        uses_groups = estimator is not None or train_groups is not None
        return TrainResult(
            config=cfg,
            schema=schema,
            head=head,
            estimator=estimator,
            source=src,
            annotators=annotators,
            groups=groups,
            best_epoch=best_epoch,
            valid_metrics=best_m,
            group_weights=dict(zip(groups, best_q.tolist(), strict=True))
            if uses_groups and groups
            else None,
            annotator_weight_by_group=self._weights_by_group(
                estimator, src, valid, annotators, groups
            ),
            train_items_used=len(keep),
            seconds=time.perf_counter() - t0,
            history=history,
            notes=notes,
        )

    def _best_single(self, train: AnnotatedDataset, valid: AnnotatedDataset) -> TrainResult:
        """Train on each annotator alone; keep the classifier best on valid (worst group).

        Chosen like every other model here, by the classifier's validation worst-group
        accuracy, not by the annotator's raw label accuracy: a consistent annotator can
        teach a better classifier than a more accurate but noisier one.
        """
        t0 = time.perf_counter()
        runs = {}
        for a in train.annotators:
            sub = self.config.model_copy(update={"method": f"single:{a}", "progress": False})
            runs[a] = BiLevelTrainer(sub).fit(train, valid)
        best = max(runs, key=lambda a: _select_key(runs[a].valid_metrics))
        shown = ", ".join(
            f"{a} {r.valid_metrics.worst_group_accuracy or r.valid_metrics.accuracy:.3f}"
            for a, r in runs.items()
        )
        note = f"best-single chose {best!r} by valid worst-group accuracy ({shown})"
        r = runs[best]
        return dataclasses.replace(
            r, config=self.config, notes=[*r.notes, note], seconds=time.perf_counter() - t0
        )

    # ---- pieces of the loop --------------------------------------------------------------
    def _estimator_rank(self, src, Lv, yv, gv, G, C, notes) -> int:
        """The configured rank, or the one 2-fold CV inside valid prefers (see rank_selection)."""
        if self.config.estimator_rank is not None:
            return self.config.estimator_rank
        if not bool(O.fixable_items(Lv, yv).any()):
            notes.append("estimator rank 0: valid has no annotator labels to cross-validate on")
            return 0
        with torch.enable_grad():
            rank, scores = choose_estimator_rank(
                src.features("valid", None).detach(),
                Lv,
                yv,
                gv,
                num_groups=G,
                num_classes=C,
                group_step=self.config.group_step,
                seed=self.config.seed,
            )
        shown = ", ".join(f"{r}: {v:.3f}" for r, v in scores.items())
        notes.append(
            f"estimator rank {rank} chosen by 2-fold CV inside valid (held-out "
            f"soft-label group-mean accuracy {shown})"
        )
        return rank

    def _unrolled_risk(self, head, estimator, feats, labels, vfeats, yv, gv, G, C):
        """Group risks of the classifier after one SGD step on the current soft labels
        (objectives.unrolled_group_risks); the unroll reads plain parameter names."""
        w = estimator(feats, O.annotator_mask(labels))
        return O.unrolled_group_risks(
            unwrap(head),
            w,
            labels,
            feats,
            vfeats,
            yv,
            gv,
            num_groups=G,
            num_classes=C,
            inner_lr=self.config.inner_lr,
        )

    @torch.no_grad()
    def _evaluate(self, head, src, split, y, g, groups, schema) -> Metrics:
        head.eval()
        src.eval()
        pred = head(src.features(split, None)).argmax(-1).cpu().numpy()
        return compute_metrics(
            y.cpu().numpy(),
            pred,
            num_classes=schema.num_classes,
            groups=g,
            group_names=groups,
            safe_mask=schema.safe_mask(),
        )

    @torch.no_grad()
    def _train_groups(self, train, valid, src, groups, notes) -> torch.Tensor:
        if train.has_groups and set(train.groups) <= set(groups):
            return torch.as_tensor(train.group_array(groups), device=src.device)
        if not groups:
            raise DataError("dro-mv needs groups on the validation split (--group-col)")
        fv, ft = src.features("valid", None), src.features("train", None)
        gv = torch.as_tensor(valid.group_array(groups), device=src.device)
        cent = torch.stack([fv[gv == k].mean(0) for k in range(len(groups))])
        notes.append(
            "dro-mv: train has no groups; each item takes its nearest valid-group "
            "centroid (pseudo-groups)"
        )
        return torch.cdist(ft, cent).argmin(1)

    @torch.no_grad()
    def _weights_by_group(self, estimator, src, valid, annotators, groups):
        """Mean learned weight of each annotator over the valid items of each group."""
        if estimator is None:
            return None
        L = torch.as_tensor(valid.label_matrix(annotators), device=src.device)
        w = estimator(src.features("valid", None), O.annotator_mask(L)).cpu().numpy()
        present = (L >= 0).cpu().numpy()
        g = valid.group_array(groups)
        out = {}
        for k, name in enumerate(groups or ("all",)):
            m = g == k if groups else np.ones(len(valid), bool)
            denom = np.maximum(present[m].sum(0), 1)
            out[name] = {a: float(w[m][:, j].sum() / denom[j]) for j, a in enumerate(annotators)}
        return out
