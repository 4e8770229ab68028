"""The bi-level soft-label GroupDRO trainer and, with the same loop, its baselines.

One loop serves every method. A method is a row of the method table (methods.py): a
target source (where each training item's target comes from: fixed labels, or the
soft labels of an estimator learned on valid) and a classifier loss (mean or GroupDRO).
The trainer looks its method up once, when it is built; the loop below only sequences
the two parts and never branches on the method.

Everything (epoch, checkpoint) is selected on the validation split, by worst-group
accuracy then accuracy; the test split is never seen here. The device comes from the
feature source (CUDA, MPS or CPU); no ``.cuda()``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import DataError
from guardrail_dro.train import background as BG
from guardrail_dro.train import objectives as O
from guardrail_dro.train.best_single import best_of_annotators, select_key
from guardrail_dro.train.checkpoint import Checkpoint, collapsed
from guardrail_dro.train.config import LP_COLLAPSE, TrainConfig
from guardrail_dro.train.data_checks import check_train_annotators, setup_notes
from guardrail_dro.train.features import FeatureSource, build_features, truncation_note, unwrap
from guardrail_dro.train.losses import ClassifierLoss
from guardrail_dro.train.methods import METHODS, lookup
from guardrail_dro.train.metrics import Metrics, compute_metrics
from guardrail_dro.train.model import ClassifierHead
from guardrail_dro.train.result import TrainResult
from guardrail_dro.train.run import Run
from guardrail_dro.train.seed_average import fit_seeds
from guardrail_dro.train.targets import TargetSource
from guardrail_dro.train.toxic_score import choose_toxic_score

__all__ = ["METHODS", "BiLevelTrainer", "TrainConfig", "TrainResult"]


@contextmanager
def _one_thread(enabled: bool) -> Iterator[None]:
    """Heads on cached embeddings are tiny matmuls: intra-op threads only add sync cost,
    10x slower measured on a loaded 2-core machine. Restored on exit."""
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class BiLevelTrainer:
    """Train a guard classifier from annotator labels, robust on the worst group.

    Example:
        >>> result = BiLevelTrainer(TrainConfig(method="ours")).fit(train, valid)
        >>> result.valid_metrics.worst_group_accuracy
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        if config is not None and not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig or None, not {type(config).__name__}")
        self.config = (config or TrainConfig()).for_run()  # refuses settings it ignores
        self.method, self._argument = lookup(self.config.method)

    def _check(self, train: AnnotatedDataset, valid: AnnotatedDataset) -> None:
        for name, ds in (("train", train), ("valid", valid)):
            if not isinstance(ds, AnnotatedDataset):
                raise TypeError(f"{name} must be an AnnotatedDataset, not {type(ds).__name__}")
        if train.schema != valid.schema:
            raise DataError("train and valid have different label schemas")
        if not valid.has_gold:
            valid.gold_array()  # raises naming the missing items
        check_train_annotators(train, [self.config.method])

    def fit(self, train: AnnotatedDataset, valid: AnnotatedDataset) -> TrainResult:
        """Train on ``train``'s annotator labels; select on ``valid``'s gold and groups.

        Raises:
            DataError: valid without gold, train without annotators, mismatched schemas.
            ConfigError: a method that does not fit the data (an unknown annotator).
        """
        cfg = self.config
        self._check(train, valid)
        if cfg.average_seeds > 1:
            return fit_seeds(cfg, lambda c: BiLevelTrainer(c).fit(train, valid), valid)
        background, harmful, bg_notes = BG.load(
            cfg.background_safe, cfg.background_harmful, valid, cfg.drop_overlap
        )
        if background and (cfg.background_weight is None or cfg.background_fraction is None):
            return self._choose_background(train, valid)
        if self.method.best_of is not None:
            return best_of_annotators(self, train, valid, self.method.best_of)
        targets, loss = self.method.build(self._argument)
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        notes: list[str] = [*bg_notes]
        annotators, train_all = train.annotators, train
        train, select = targets.split(train, valid, cfg, rng, notes)
        notes.extend(setup_notes(train, valid, annotators, targets))
        splits = {"train": train, "valid": valid, "select": select}
        splits.update(BG.splits(background, harmful, valid.schema, cfg.background_fraction or 1.0))
        src = build_features(cfg, splits)
        lp = self._lp_stage(train_all, valid)  # after: build_features warmed the cache
        if lp is not None:  # the head and the estimator's CV draw what the LP stage drew
            torch.manual_seed(cfg.seed)
        cut = truncation_note(src.tokenizer, {"train": train, "valid": valid}, cfg.max_length)
        if cut is not None:
            notes.append(cut)
        notes.extend(src.notes)
        run = Run(cfg, train, valid, select, src, annotators, notes, src.accelerator)
        with _one_thread(cfg.mode == "frozen" and src.device.type == "cpu"):
            result = self._train(
                run, src, targets, loss, t0, splits.get("background"), splits.get("harmful"), lp
            )
        if background:
            result.background = BG.measure(
                result.head,
                src,
                run.valid,
                run.groups,
                sources=background.sources,
                weight=float(cfg.background_weight or 1.0),
                fraction=float(cfg.background_fraction or 1.0),
                harmful=harmful.sources if harmful else None,
                harmful_weight=cfg.harmful_weight,
            )
        src.release()  # the result keeps its source: not the frozen layers' states
        return result

    def _choose_background(self, train: AnnotatedDataset, valid: AnnotatedDataset) -> TrainResult:
        """Train once per grid setting (weight x amount) left unset; keep the one
        ``background.RULE`` picks from valid and the held-out background."""
        cfg = self.config
        t0 = time.perf_counter()
        weights = [cfg.background_weight] if cfg.background_weight else BG.WEIGHTS
        fractions = [cfg.background_fraction] if cfg.background_fraction else BG.FRACTIONS
        runs, points = [], []
        for w in weights:
            for f in fractions:
                sub = cfg.model_copy(update={"background_weight": w, "background_fraction": f})
                r = BiLevelTrainer(sub).fit(train, valid)
                assert r.background is not None, "a fit with background measures it"
                runs.append(r)
                points.append(BG.GridPoint.of(r.background, r.valid_metrics))
        best = BG.choose(points)
        r = runs[best]
        assert r.background is not None
        r.background = r.background.model_copy(update={"chosen_by": BG.RULE, "grid": points})
        return dataclasses.replace(
            r,
            config=cfg.model_copy(
                update={
                    "background_weight": points[best].weight,
                    "background_fraction": points[best].fraction,
                }
            ),
            seconds=time.perf_counter() - t0,
        )

    def _train(
        self,
        run: Run,
        src: FeatureSource,
        targets: TargetSource,
        loss_of: ClassifierLoss,
        t0: float,
        background: AnnotatedDataset | None = None,
        harmful: AnnotatedDataset | None = None,
        lp: TrainResult | None = None,
    ) -> TrainResult:
        """Set the parts up around a fresh head (or the LP stage's), run the loop,
        assemble the result."""
        cfg = self.config
        item_targets = targets.item_targets(run)
        keep = np.nonzero(item_targets.sum(1) > 0)[0]
        if len(keep) < len(run.train):
            run.notes.append(
                f"{len(run.train) - len(keep)} train item(s) without usable labels skipped"
            )
        if len(keep) == 0:
            raise DataError("no training item has a label for this method")
        loss_of.prepare(run)
        # The head draws its initial weights first, then the parts (rank selection).
        head = ClassifierHead(src.dim, run.num_classes, cfg.head_hidden, cfg.dropout)
        head = head.to(run.device)
        if lp is not None:
            head.load_state_dict(lp.head.state_dict())
        opt = self._optimizer(head, src)
        targets.prepare(run)
        targets.warm_start(lp, run)
        model: torch.nn.Module = head
        acc = run.accelerator
        if acc is not None:
            # DDP under `accelerate launch` / `torchrun`; plain modules in one process.
            src.embedder.encoder, model, opt = acc.prepare(src.embedder.encoder, head, opt)
            targets.distribute(acc)
        weights = {"background": float(cfg.background_weight or 1.0), "harmful": cfg.harmful_weight}
        terms = BG.terms(
            {"background": background, "harmful": harmful},
            weights,
            train_items=len(keep),
            batch_size=int(cfg.resolved("batch_size")),
            safe_mask=run.valid.schema.safe_mask(),
            seed=cfg.seed,
            device=run.device,
        )
        sched = self._schedule(opt, len(keep), acc.num_processes if acc is not None else 1)
        best, history = self._loop(
            run, src, targets, loss_of, head, model, opt, sched, keep, terms, lp is not None
        )
        if best.epoch < 0 and self.config.lp_select == "compete":
            run.notes.append(
                "full mode: valid kept the LP stage (no fine-tuned epoch beat its "
                f"worst-group accuracy {best.key[0]:.3f}): the encoder is the pre-trained one"
            )
        src.embedder.encoder = unwrap(src.embedder.encoder)
        head.load_state_dict(best.head)
        head.eval()
        src.restore(best.source)
        targets.restore_best()
        loss_of.restore_best()
        q = targets.group_weights if targets.group_weights is not None else loss_of.group_weights
        choice, mix, binary = choose_toxic_score(
            head,
            src,
            run,
            targets.train_soft_labels(run, item_targets),
            background=background,
            background_weight=weights["background"],
            harmful=harmful,
            harmful_weight=weights["harmful"],
            seed=cfg.seed,
            class_head_only=cfg.toxic_score == "class-head",
        )
        if choice is not None:
            run.notes.append(choice.summary())
        return TrainResult(
            config=cfg,
            schema=run.valid.schema,
            head=head,
            estimator=targets.estimator,
            source=src,
            annotators=run.annotators,
            groups=run.groups,
            best_epoch=best.epoch,
            valid_metrics=best.metrics if choice is None else choice.scored(best.metrics),
            group_weights=dict(zip(run.groups, q.tolist(), strict=True))
            if q is not None and run.groups
            else None,
            annotator_weight_by_group=targets.annotator_weights(run),
            train_items_used=len(keep),
            seconds=time.perf_counter() - t0,
            history=history,
            notes=run.notes,
            toxic_score=choice,
            toxic_mix=mix,
            toxic_binary=binary,
        )

    def _lp_stage(self, train: AnnotatedDataset, valid: AnnotatedDataset) -> TrainResult | None:
        """Full mode's linear probe (LP-FT): the method's own frozen-mode fit on the
        pre-trained encoder's cached embeddings, ``probe_epochs`` epochs, its epoch
        chosen on valid like any frozen fit. Fine-tuning starts from its head and, for a
        learned method, its estimator and group weights (``TargetSource.warm_start``),
        and falls back to it where the tuned epochs collapse (``lp_select``, ``_loop``).

        Why the whole fit and not a head alone: a head probed on uniform soft labels
        sent ``ours`` into fine-tuning with ``soft``'s head and an untrained estimator,
        and valid was never asked whether fine-tuning helped. On toxic-questions it did
        not, for ``ours``: valid worst-group 0.613 / 0.600 for the frozen fit (seeds 0,
        1), 0.600 / 0.597 for the old LP-FT, at best 0.556 / 0.582 for tuning from the
        frozen fit (its estimator, still learning against a moving encoder, swung: valid
        toxic recall 0.85 / 0.99 / 0.65 over three epochs). None in frozen mode or
        without ``probe_epochs``."""
        cfg = self.config
        if cfg.mode != "full" or not cfg.probe_epochs:
            return None
        sub = cfg.model_copy(
            update={
                "mode": "frozen",
                "train_layers": None,
                "epochs": cfg.probe_epochs,
                "batch_size": None,
                "lr": None,
                "progress": False,
            }
        )
        return BiLevelTrainer(sub).fit(train, valid)

    def _optimizer(self, head: ClassifierHead, src: FeatureSource) -> torch.optim.Optimizer:
        """AdamW with one parameter group for the head and, in full mode, one for the
        encoder: a fresh head needs a far larger LR than pre-trained weights (one shared
        3e-5 left the head near its initial zero logits: the full-mode collapse)."""
        cfg = self.config
        head_lr = cfg.resolved("lr")
        groups: list[dict[str, Any]] = [{"params": list(head.parameters()), "lr": head_lr}]
        encoder = src.trainable_parameters()
        if encoder:
            groups.append({"params": encoder, "lr": cfg.encoder_lr})
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)

    def _schedule(
        self, opt: torch.optim.Optimizer, items: int, nproc: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """Full mode: linear warmup over ``cfg.warmup`` of the steps, then linear decay
        to 0 (the usual fine-tuning schedule); frozen mode: constant LR (None)."""
        cfg = self.config
        if cfg.mode != "full":
            return None
        from transformers import get_linear_schedule_with_warmup

        bs, epochs = int(cfg.resolved("batch_size")), int(cfg.resolved("epochs"))
        share = (items + nproc - 1) // nproc
        total = epochs * ((share + bs - 1) // bs)
        return get_linear_schedule_with_warmup(opt, round(cfg.warmup * total), total)

    def _loop(
        self,
        run: Run,
        src: FeatureSource,
        targets: TargetSource,
        loss_of: ClassifierLoss,
        head: ClassifierHead,
        model: torch.nn.Module,
        opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LRScheduler | None,
        keep: np.ndarray,
        terms: dict[str, BG.BackgroundTerm] | None = None,
        from_lp: bool = False,
    ) -> tuple[Checkpoint, list[dict[str, Any]]]:
        """The alternating loop: per batch, the targets (the target source may take its
        own upper-level steps first), then one classifier step on the loss of the
        soft cross-entropy; per epoch, selection on ``run.select``. ``model`` is the
        head as trained (DDP-wrapped in a distributed run), ``head`` the plain one."""
        cfg, acc = self.config, run.accelerator
        bs, epochs = int(cfg.resolved("batch_size")), int(cfg.resolved("epochs"))
        nproc = acc.num_processes if acc is not None else 1
        share = (len(keep) + nproc - 1) // nproc  # items per process and epoch
        bar = tqdm(
            total=epochs * ((share + bs - 1) // bs),
            desc=f"train {cfg.method}",
            unit="step",
            leave=False,
            disable=not cfg.progress or (acc is not None and not acc.is_local_main_process),
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        keep_t = torch.as_tensor(keep)
        clip = (
            [p for g in opt.param_groups for p in g["params"]]
            if cfg.mode == "full" and cfg.max_grad_norm is not None
            else None
        )
        best: Checkpoint | None = None
        lp: Checkpoint | None = None
        history: list[dict[str, Any]] = []
        if from_lp:  # the LP stage (epoch -1): a candidate, or the collapse fallback
            m = self._evaluate(model, src, run)
            history.append({"epoch": -1, "stage": "LP", **m.headline()})
            for part in (targets, loss_of):
                part.keep_best()  # the best so far where it competes
                part.keep_best("lp")
            lp = Checkpoint(select_key(m), -1, m, copy.deepcopy(head.state_dict()), src.snapshot())
            if cfg.lp_select == "compete":
                best = lp
        for epoch in range(epochs):
            model.train()
            src.train()
            order = keep_t[torch.randperm(len(keep_t), generator=gen)]
            if acc is not None and nproc > 1:
                order = order[acc.process_index :: nproc]  # this process's share
            for batch in src.batches("train", order, bs, gen):
                idx = batch.to(run.device)
                feats = src.features("train", idx)
                target = targets.batch(head, feats, idx)
                if not terms:
                    loss = loss_of(O.soft_cross_entropy(model(feats), target), idx)
                else:  # one forward pass over the joined batch (one DDP call)
                    extra = [
                        src.features(split, t.next_index().to(run.device))
                        for split, t in terms.items()
                    ]
                    logits = model(torch.cat([feats, *extra]))
                    n = len(idx)
                    parts = list(torch.split(logits[n:], [len(e) for e in extra]))
                    loss = BG.join(
                        loss_of(O.soft_cross_entropy(logits[:n], target), idx),
                        n,
                        list(terms.values()),
                        parts,
                    )
                opt.zero_grad()
                run.backward(loss)
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(clip, cfg.max_grad_norm or 0.0)
                opt.step()
                if sched is not None:
                    sched.step()
                bar.update(1)
            m = self._evaluate(model, src, run)
            history.append({"epoch": epoch, "loss": float(loss.detach()), **m.headline()})
            bar.set_postfix(m.progress())
            if best is None or select_key(m) > best.key:
                head_state = copy.deepcopy(head.state_dict())
                targets.keep_best()
                loss_of.keep_best()
                best = Checkpoint(select_key(m), epoch, m, head_state, src.snapshot())
        bar.close()
        assert best is not None, "epochs >= 1 (TrainConfig)"
        if lp is not None and cfg.lp_select == "tuned" and collapsed(best.metrics, lp.metrics):
            for part in (targets, loss_of):
                part.restore_best("lp")
                part.keep_best()  # what the trainer restores once the loop is over
            run.notes.append(
                f"full mode: the best tuned epoch ({best.epoch}) fell below the LP stage on "
                f"valid by more than {LP_COLLAPSE} (a collapse): kept the LP stage, whose "
                "encoder is the pre-trained one"
            )
            best = lp
        return best, history

    @torch.no_grad()
    def _evaluate(self, model: torch.nn.Module, src: FeatureSource, run: Run) -> Metrics:
        """Metrics of the current classifier on the selection split."""
        model.eval()
        src.eval()
        pred = model(src.features("select", None)).argmax(-1).cpu().numpy()
        schema = run.valid.schema
        return compute_metrics(
            run.select.gold_array(),
            pred,
            num_classes=schema.num_classes,
            groups=run.select.group_array(run.groups),
            group_names=run.groups,
            safe_mask=schema.safe_mask(),
        )
