"""Learned target sources: soft labels s_phi(x) from the weight estimator w_phi.

Both alternate with the classifier: before each classifier step the estimator takes
``estimator_steps`` GroupDRO steps on valid (upper_level.upper_step), then the batch's
targets are its soft labels. In full mode's tuned epochs the estimator stays at the LP
stage's fit by default (``ft_estimator="freeze"``, ``warm_start``): its soft labels are
then fixed targets and valid only selects. The two sources (upper_risks.py) differ only
in the group risk R_g of the upper level (see the shared METHOD.md):

- ``AgreementRisk`` (``ours-agree``): -log s_phi(x)[y] on valid, without the classifier.
- ``UnrolledRisk`` (``ours``): valid cross-entropy of the classifier after a one-step
  unrolled update on the soft labels (objectives.unrolled_group_risks).

Where the annotations carry confidences, the estimator may read them (its confidence
term, model.WeightEstimator): ``use_confidence`` on, off, or auto = as the capacity
selection inside valid prefers (rank_selection). Every call of the estimator gets the
(B, K) confidences beside the (B, K) labels, or None when it does not read them; the
same for rationales (``use_rationale``; (B, K, P) features, train/rationale.py).
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from guardrail_dro.train import baselines as B
from guardrail_dro.train import objectives as O
from guardrail_dro.train.model import RationaleBasis, WeightEstimator, confidence_stats
from guardrail_dro.train.rank_selection import (
    SHRINKAGES,
    Capacity,
    Stats,
    choose_estimator_rank,
    cv_note,
    penalty_of,
    unusable_fold,
)
from guardrail_dro.train.rationale import rationale_features
from guardrail_dro.train.reliability import annotator_reliability
from guardrail_dro.train.run import Run
from guardrail_dro.train.targets import TargetSource
from guardrail_dro.train.upper_level import upper_step

if TYPE_CHECKING:
    from accelerate import Accelerator

    from guardrail_dro.train.result import TrainResult

__all__ = ["EstimatorTargets"]


class EstimatorTargets(TargetSource):
    """Soft labels of a ``WeightEstimator`` trained by GroupDRO on valid; see the module."""

    learned = True
    version = 2
    """2 (2026-12-04): full mode freezes the estimator at the LP stage's fit by default
    (``ft_estimator``); before, it kept learning on valid while the encoder tuned."""

    run: Run
    train_labels: torch.Tensor
    """(N, K) annotator labels of the training split."""
    valid_labels: torch.Tensor
    valid_gold: torch.Tensor
    valid_groups: torch.Tensor
    train_confidence: torch.Tensor | None
    """(N, K) confidences of the training split (NaN = none) if the estimator reads them."""
    valid_confidence: torch.Tensor | None
    train_rationale: torch.Tensor | None
    """(N, K, P) rationale features of the training split if the estimator reads them."""
    valid_rationale: torch.Tensor | None
    _estimator: WeightEstimator
    _module: nn.Module  # the estimator, or its DDP wrapper in a distributed run
    _optimizer: torch.optim.Optimizer
    _q: torch.Tensor
    _kept: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]]
    _penalty: Callable[[], None]
    _fixed: torch.Tensor | None = None
    """(N, C) soft labels of every training item while the estimator is frozen (full
    mode after the LP stage, ``ft_estimator="freeze"``); None while it learns."""

    @abstractmethod
    def risks(
        self,
        head: nn.Module,
        feats: torch.Tensor,
        labels: torch.Tensor,
        confidence: torch.Tensor | None,
        rationale: torch.Tensor | None,
        valid_feats: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(G,) upper-level group risks, differentiable in the estimator, and counts.

        Args:
            head: the plain classifier head.
            feats, labels: (B, D) detached features and (B, K) labels of the batch.
            confidence: (B, K) their confidences, or None (the estimator reads none).
            rationale: (B, K, P) their rationale features, or None.
            valid_feats: (V, D) detached features of the validation split.
        """

    def item_targets(self, run: Run) -> np.ndarray:
        labels = run.train.label_matrix(run.annotators)
        self.train_labels = torch.as_tensor(labels, device=run.device)
        self.train_confidence = None
        self.train_rationale = None
        per_item = (labels >= 0).sum(1)
        single, labelled = int((per_item == 1).sum()), int((per_item > 0).sum())
        if single * 2 > labelled:
            # The soft label mixes the labels an item has: one label, nothing to weigh.
            run.notes.append(
                f"{run.settings.method}: {single} of {labelled} train items carry one label, "
                "and there the soft label is that label (the estimator weighs an item's "
                "annotators against each other), so on them it trains as majority vote "
                "('ds' cannot tell an annotator's confusion from items labelled once either: "
                "it keeps the lone label, smoothed)"
            )
        # Only decides which items have a label at all: the soft labels are learned.
        return B.uniform_soft_targets(labels, run.num_classes)

    def prepare(self, run: Run) -> None:
        self.run = run
        s, device, groups = run.settings, run.device, run.groups
        self._q = torch.full((run.num_groups,), 1.0 / run.num_groups, device=device)
        self._kept = {}
        self.valid_labels = torch.as_tensor(run.valid.label_matrix(run.annotators), device=device)
        self.valid_gold = torch.as_tensor(run.valid.gold_array(), device=device)
        # Without groups on valid the upper level is plain risk minimisation: every item
        # in one group (group -1 would drop every item from the group means).
        self.valid_groups = torch.as_tensor(
            run.valid.group_array(groups) if groups else np.zeros(len(run.valid), dtype=np.int64),
            device=device,
        )
        if not groups:
            run.notes.append("valid has no groups: the upper level treats it as one group")
        reliability = self._reliability(run)
        stats = self._confidence(run)
        basis = self._rationale(run)
        rank, shrinkage, use_conf, use_rat = self._capacity(run, reliability, stats, basis)
        if not use_conf:
            stats = self.train_confidence = self.valid_confidence = None
        if not use_rat:
            basis = self.train_rationale = self.valid_rationale = None
        self._estimator = WeightEstimator(
            run.source.dim,
            len(run.annotators),
            rank,
            run.num_classes if reliability is not None else 0,
            reliability,
            stats,
            basis,
        ).to(device)
        self._penalty = penalty_of(self._estimator, shrinkage, len(run.valid))
        self._module = self._estimator
        self._optimizer = torch.optim.AdamW(
            self._estimator.parameters(), lr=s.estimator_lr, weight_decay=s.estimator_weight_decay
        )

    def _reliability(self, run: Run) -> torch.Tensor | None:
        """The (K, C) label-only trust table from the training labels, or None when
        ``estimator_reliability`` is off."""
        if not run.settings.estimator_reliability:
            return None
        table = annotator_reliability(self.train_labels.cpu().numpy(), run.num_classes)
        return torch.as_tensor(table, device=run.device)

    def _confidence(self, run: Run) -> Stats | None:
        """The training confidences' per-annotator mean and spread, with the train and
        valid confidences kept, when the estimator may read them: ``use_confidence`` not
        off, and confidences on both splits that vary somewhere on valid (a constant
        confidence has z = 0 everywhere: the term could not move). None otherwise,
        without a fit, so such a run trains exactly as before the term existed."""
        self.valid_confidence = None
        if not _may_read(run, "confidence", run.settings.use_confidence):
            return None
        train = run.train.confidence_matrix(run.annotators)
        valid = run.valid.confidence_matrix(run.annotators)
        stats = confidence_stats(train)
        z = (valid - stats[0].numpy()) / stats[1].numpy()
        if not np.any(np.nan_to_num(z) != 0):
            run.notes.append(
                "estimator without its confidence term: on valid no confidence differs "
                "from its annotator's usual one on train"
            )
            return None
        self.train_confidence = torch.as_tensor(train, device=run.device)
        self.valid_confidence = torch.as_tensor(valid, device=run.device)
        return stats[0].to(run.device), stats[1].to(run.device)

    def _rationale(self, run: Run) -> RationaleBasis | None:
        """The rationale basis, with the train and valid rationale features kept, when the
        estimator may read rationales: ``use_rationale`` not off, rationales on both
        splits, and train's varying beyond (annotator, label). None otherwise, without
        embedding anything, so such a run trains exactly as before the term existed."""
        self.train_rationale = self.valid_rationale = None
        if not _may_read(run, "rationale", run.settings.use_rationale):
            return None
        try:
            basis, train, valid = rationale_features(
                run.train, run.valid, run.annotators, run.source.embed_other
            )
        except ValueError as why:
            run.notes.append(f"estimator without its rationale term: {why}")
            return None
        self.train_rationale = train.to(run.device)
        self.valid_rationale = valid.to(run.device)
        return (basis[0].to(run.device), basis[1].to(run.device), basis[2].to(run.device))

    def _capacity(
        self,
        run: Run,
        reliability: torch.Tensor | None,
        stats: Stats | None,
        basis: RationaleBasis | None = None,
    ) -> Capacity:
        """(rank, shrinkage, confidence, rationale) as configured, or as 2-fold CV inside
        valid prefers (rank_selection). A configured rank skips the CV over ranks, as it
        always did (full-mode runs rely on that), with the stronger prior unless a
        shrinkage is given too; confidence and rationale ``auto`` are still chosen by CV
        then (two fits per fold each)."""
        s = run.settings
        choices: dict[str, tuple[bool, ...]] = {"on": (True,), "off": (False,)}
        uses = (False,) if stats is None else choices.get(s.use_confidence, (False, True))
        uses_r = (False,) if basis is None else choices.get(s.use_rationale, (False, True))
        if s.estimator_rank is not None:
            shrink = s.estimator_shrinkage
            fixed = Capacity(s.estimator_rank, max(SHRINKAGES) if shrink is None else shrink)
            if len(uses) == 1 and len(uses_r) == 1:
                if uses[0]:
                    run.notes.append("estimator with its confidence term (use_confidence on)")
                if uses_r[0]:
                    run.notes.append("estimator with its rationale term (use_rationale on)")
                return fixed._replace(confidence=uses[0], rationale=uses_r[0])
            ranks: tuple[int, ...] = (fixed.rank,)
            shrinks: tuple[float, ...] = (fixed.shrinkage,)
        else:
            ranks = (0, 4, 32)
            shrinks = (s.estimator_shrinkage,) if s.estimator_shrinkage is not None else SHRINKAGES
        why = self._no_cv(run)
        if why is not None:
            run.notes.append(
                f"estimator rank {ranks[0]}, shrinkage {max(shrinks):g} (not cross-validated): "
                f"{why}"
            )
            return Capacity(
                ranks[0],
                max(shrinks),
                uses[-1] if len(uses) == 1 else False,
                uses_r[-1] if len(uses_r) == 1 else False,
            )
        with torch.enable_grad():
            chosen, scores = choose_estimator_rank(
                run.source.features("valid", None).detach(),
                self.valid_labels,
                self.valid_gold,
                self.valid_groups,
                num_groups=run.num_groups,
                num_classes=run.num_classes,
                reliability=reliability,
                candidates=ranks,
                shrinkages=shrinks,
                group_step=s.group_step,
                seed=s.seed,
                confidence=self.valid_confidence,
                stats=stats,
                use_confidence=uses,
                rationale=self.valid_rationale,
                basis=basis,
                use_rationale=uses_r,
            )
        run.notes.append(cv_note(chosen, scores, uses, uses_r))
        return chosen

    def _no_cv(self, run: Run) -> str | None:
        """Why the capacity cannot be cross-validated inside valid, or None: valid's
        labels, in train's annotator columns, must give some item its gold class, and
        each fold must have an item to fit on and one to score (``unusable_fold``)."""
        if not bool(O.fixable_items(self.valid_labels, self.valid_gold).any()):
            if not run.valid.annotators:
                return "valid has no annotator labels to cross-validate on"
            if not set(run.valid.annotators) & set(run.annotators):
                return (
                    "valid's annotators label no train item (the estimator weighs train's "
                    "annotators), so valid has no labels of theirs to cross-validate on"
                )
            return "no train annotator gives any valid item its gold class: nothing to fit"
        return unusable_fold(self.valid_labels, self.valid_gold, run.settings.seed)

    def warm_start(self, lp: TrainResult | None, run: Run) -> None:
        """The LP stage's estimator and GroupDRO weights. It chose its capacity by the
        same CV on the same pre-trained embeddings, so the shapes match; if they do not
        (another capacity), the estimator starts fresh and the notes say so. Without an
        LP stage in full mode there is no fit to freeze: the estimator learns."""
        if lp is None:
            if run.settings.mode == "full" and run.settings.ft_estimator == "freeze":
                run.notes.append(
                    "full mode without an LP stage (probe_epochs=0): no fit to freeze, "
                    "the estimator learns while the encoder tunes"
                )
            return
        mine = self._estimator.state_dict()
        theirs = lp.estimator.state_dict() if lp.estimator is not None else {}
        if {k: v.shape for k, v in theirs.items()} != {k: v.shape for k, v in mine.items()}:
            run.notes.append(
                "full mode: the LP stage's estimator differs in shape; a fresh one, which "
                "learns while the encoder tunes (ft_estimator=freeze needs the LP fit)"
            )
            return
        self._estimator.load_state_dict(theirs)
        if lp.group_weights and run.groups:
            q = [lp.group_weights[g] for g in run.groups]
            self._q = torch.tensor(q, dtype=self._q.dtype, device=self._q.device)
        if run.settings.ft_estimator == "freeze":
            # The LP stage's soft labels, on the pre-trained encoder's features it was fit
            # on (the encoder has not moved yet): the fine-tuning's fixed targets, so valid
            # only selects among the tuned epochs and the LP stage, as for every fixed
            # target. A text-conditioned estimator (rank > 0) reads here the features it
            # was fit on; the annotator-weight report and the saved estimator of a kept
            # tuned epoch pair it with the tuned encoder (no difference at rank 0).
            self._fixed = self.train_soft_labels_tensor(run)
            run.notes.append(
                "full mode: the estimator stays at the LP stage's fit (ft_estimator=freeze); "
                "its soft labels are the fine-tuning's targets"
            )

    def distribute(self, accelerator: Accelerator) -> None:
        self._module, self._optimizer = accelerator.prepare(self._module, self._optimizer)

    def batch(self, head: nn.Module, feats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self._fixed is not None:
            return self._fixed[idx]
        run, s = self.run, self.run.settings
        labels = self.train_labels[idx]
        conf = self.train_confidence[idx] if self.train_confidence is not None else None
        rat = self.train_rationale[idx] if self.train_rationale is not None else None
        valid_feats = run.source.features("valid", None).detach()
        risks = partial(self.risks, head, feats.detach(), labels, conf, rat, valid_feats)
        for _ in range(s.estimator_steps):
            self._q = upper_step(
                self._optimizer,
                self._q,
                risks,
                s.group_step,
                sync=run.sync,
                backward=run.backward,
                penalty=self._penalty,
            )
        with torch.no_grad():
            w = self._module(feats.detach(), labels, conf, rat)
            return O.soft_labels(w, labels, run.num_classes)

    def train_soft_labels(self, run: Run, item_targets: np.ndarray) -> np.ndarray:
        """The estimator's soft labels of every training item, reading the same
        confidences and rationale features as in training (the toxic score's binary head
        fits on them); the fixed targets where the estimator was frozen."""
        if self._fixed is not None:
            return self._fixed.cpu().numpy()
        return self.train_soft_labels_tensor(run).cpu().numpy()

    @torch.no_grad()
    def train_soft_labels_tensor(self, run: Run) -> torch.Tensor:
        """(N, C) soft labels of every training item from the estimator as it stands."""
        w = self._estimator(
            run.source.features("train", None),
            self.train_labels,
            self.train_confidence,
            self.train_rationale,
        )
        return O.soft_labels(w, self.train_labels, run.num_classes)

    def keep_best(self, slot: str = "best") -> None:
        self._kept[slot] = copy.deepcopy(self._estimator.state_dict()), self._q.clone()

    def restore_best(self, slot: str = "best") -> None:
        state, self._q = self._kept[slot]
        self._estimator.load_state_dict(state)
        self._estimator.eval()

    @property
    def estimator(self) -> WeightEstimator:
        return self._estimator

    @property
    def group_weights(self) -> torch.Tensor:
        return self._q

    @torch.no_grad()
    def annotator_weights(self, run: Run) -> dict[str, dict[str, float]]:
        valid, groups = run.valid, run.groups
        L = torch.as_tensor(valid.label_matrix(run.annotators), device=run.device)
        w = self._estimator(
            run.source.features("valid", None), L, self.valid_confidence, self.valid_rationale
        )
        w = w.cpu().numpy()
        present = (L >= 0).cpu().numpy()
        g = valid.group_array(groups)
        out = {}
        for k, name in enumerate(groups or ("all",)):
            m = g == k if groups else np.ones(len(valid), bool)
            denom = np.maximum(present[m].sum(0), 1)
            out[name] = {
                a: float(w[m][:, j].sum() / denom[j]) for j, a in enumerate(run.annotators)
            }
        return out


def _may_read(run: Run, signal: str, setting: str) -> bool:
    """Whether the estimator may read the annotators' ``signal`` (confidence or
    rationale): not turned off, and carried by some annotation of both train and valid.
    Says why not in the notes where the user asked for it or one split has it."""
    if setting == "off":
        return False
    on_train = getattr(run.train, f"has_{signal}")
    on_valid = getattr(run.valid, f"has_{signal}")
    if on_train and on_valid:
        return True
    if setting == "on" or on_train or on_valid:
        run.notes.append(
            f"estimator without its {signal} term: no annotation of "
            f"{'train' if not on_train else 'valid'} carries a {signal}"
        )
    return False
