"""The guard's toxic score, chosen per model on valid: 1 - P(safe) of the class head, a
binary toxic-vs-safe head trained on the same soft labels, or the mean of both.

Why: the guard blocks on one number, and the class head was trained for 15-way accuracy,
not to rank toxic above safe. A logistic head on the same features and the same soft
labels (collapsed to P(toxic)) may separate the two better, or its mean with the class
head may. Which one does is a property of the data, so every trained model measures the
three on its validation split and keeps the winner (``RULE``); the choice, each
candidate's valid ROC AUC and the bootstrap interval go to the manifest.

The rule keeps the class head unless an alternative's valid AUC is higher with the 95%
paired-bootstrap interval of the difference above zero. Selecting the binary head's
regularisation and the score on the same valid split favours the alternatives, and
on toxic-questions (1,000 valid texts) a +0.002 AUC "win" of the mean came with a test
AUC 0.01 lower: differences inside the noise are not evidence. The binary head's C is
fixed (1.0) for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, Field

from guardrail_dro.train.model import ToxicMix

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.train.features import FeatureSource
    from guardrail_dro.train.metrics import Metrics
    from guardrail_dro.train.model import ClassifierHead
    from guardrail_dro.train.run import Run

__all__ = [
    "CANDIDATES",
    "RULE",
    "ToxicScoreChoice",
    "choose_toxic_score",
    "choose_with",
    "select",
]

CANDIDATES: dict[str, float] = {
    "1 - P(safe)": 0.0,
    "mean of both": 0.5,
    "binary head": 1.0,
}
"""Candidate name -> the binary head's share of the toxic score."""
RULE = (
    "highest valid ROC AUC; an alternative to 1 - P(safe) only when the 95% paired-"
    "bootstrap interval (1,000 draws) of its AUC gain is above 0"
)
C = 1.0
"""Inverse L2 strength of the binary logistic head (scikit-learn's default)."""
DRAWS = 1000


class ToxicScoreChoice(BaseModel):
    """What the toxic score is and why (manifest ``toxic_score``)."""

    kind: str = Field(description="One of CANDIDATES.")
    binary_weight: float = Field(description="The binary head's share of the score (0: none).")
    valid_auc: dict[str, float] = Field(description="Valid ROC AUC per candidate.")
    gain_ci95: dict[str, list[float]] = Field(
        default_factory=dict, description="95% bootstrap interval of each alternative's AUC gain."
    )
    rule: str = RULE

    def scored(self, metrics: Metrics) -> Metrics:
        """``metrics`` (valid's) with the shipped score's valid ROC AUC as its
        ``toxic_roc_auc``: the guard's ranking on valid, beside its decisions."""
        return metrics.model_copy(update={"toxic_roc_auc": self.valid_auc[self.kind]})

    def summary(self) -> str:
        aucs = ", ".join(f"{k} {v:.4f}" for k, v in self.valid_auc.items())
        return f"toxic score: {self.kind} (valid ROC AUC {aucs})"


def _aucs(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of (D, N) labels and scores (Mann-Whitney, ties averaged):
    every bootstrap draw at once, where 1,000 ``roc_auc_score`` calls per trained model
    would cost seconds."""
    from scipy.stats import rankdata

    r = rankdata(s, axis=1)
    pos = y.sum(1)
    neg = y.shape[1] - pos
    return ((r * y).sum(1) - pos * (pos + 1) / 2) / (pos * neg)


def _bootstrap_aucs(y: np.ndarray, scores: dict[str, np.ndarray], seed: int) -> dict:
    """AUC of every score on the same paired bootstrap draws of valid (draws holding
    only one kind of text are left out)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(y), (DRAWS, len(y)))
    yi = y[i]
    ok = (yi.sum(1) > 0) & (yi.sum(1) < len(y))
    return {k: _aucs(yi[ok], s[i][ok]) for k, s in scores.items()}


def select(
    positive: np.ndarray, class_score: np.ndarray, binary_score: np.ndarray, *, seed: int = 0
) -> ToxicScoreChoice:
    """Apply ``RULE`` to valid: ``positive`` (N,) bool toxic, ``class_score`` 1 - P(safe)
    of the class head, ``binary_score`` the binary head's P(toxic)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(positive, dtype=bool)
    scores = {k: (1 - v) * class_score + v * binary_score for k, v in CANDIDATES.items()}
    auc = {k: float(roc_auc_score(y, s)) for k, s in scores.items()}
    base = "1 - P(safe)"
    boot = _bootstrap_aucs(y, scores, seed)
    ci = {
        k: [float(v) for v in np.percentile(boot[k] - boot[base], [2.5, 97.5])]
        for k in scores
        if k != base
    }
    better = [k for k in ci if ci[k][0] > 0]
    kind = max(better, key=auc.__getitem__) if better else base
    return ToxicScoreChoice(kind=kind, binary_weight=CANDIDATES[kind], valid_auc=auc, gain_ci95=ci)


def choose_toxic_score(
    head: ClassifierHead,
    src: FeatureSource,
    run: Run,
    soft: np.ndarray,
    *,
    background: AnnotatedDataset | None = None,
    background_weight: float = 1.0,
    harmful: AnnotatedDataset | None = None,
    harmful_weight: float = 1.0,
    seed: int = 0,
    class_head_only: bool = False,
) -> tuple[ToxicScoreChoice | None, ToxicMix | None, torch.nn.Linear | None]:
    """Fit the binary head on the train features and ``soft`` labels (the (N, C) targets
    the head trained on: ``TargetSource.train_soft_labels``), compare the three
    candidates on valid, and return the choice, the ``ToxicMix`` to put in the model
    (None when 1 - P(safe) is kept) and the fitted binary head (kept even when unused:
    averaging seeds averages it, ``train/seed_average.py``).

    Background-safe text, when the run has it, trains the binary head as safe too (with
    its loss weight), as it trains the class head; harmful background text as toxic.
    Returns Nones where there is no toxic score to choose (no safe class, or valid
    without both kinds of text). ``class_head_only`` (``toxic_score="class-head"``)
    measures and records the candidates but keeps 1 - P(safe).
    """
    from sklearn.linear_model import LogisticRegression

    safe = np.asarray(run.valid.schema.safe_mask(), dtype=bool)
    y = ~safe[run.valid.gold_array()]
    if safe.all() or not safe.any() or y.all() or not y.any():
        return None, None, None
    src.eval()
    with torch.no_grad():
        x_train = src.features("train", None).cpu().numpy()
        x_bg = src.features("background", None).cpu().numpy() if background is not None else None
        x_bad = src.features("harmful", None).cpu().numpy() if harmful is not None else None
    keep = soft.sum(1) > 0
    p = 1.0 - soft[keep][:, safe].sum(1) / soft[keep].sum(1)
    x, w = x_train[keep], np.ones(int(keep.sum()))
    if x_bg is not None:
        x, p = np.concatenate([x, x_bg]), np.r_[p, np.zeros(len(x_bg))]
        w = np.r_[w, np.full(len(x_bg), background_weight)]
    if x_bad is not None:
        x, p = np.concatenate([x, x_bad]), np.r_[p, np.ones(len(x_bad))]
        w = np.r_[w, np.full(len(x_bad), harmful_weight)]
    # Soft targets as two weighted copies of every row (toxic with weight p, safe 1 - p).
    lr = LogisticRegression(C=C, max_iter=3000).fit(
        np.concatenate([x, x]),
        np.r_[np.ones(len(p)), np.zeros(len(p))],
        sample_weight=np.r_[w * p, w * (1 - p)],
    )
    binary = torch.nn.Linear(x.shape[1], 1)
    with torch.no_grad():
        binary.weight.copy_(torch.as_tensor(lr.coef_, dtype=torch.float32))
        binary.bias.copy_(torch.as_tensor(lr.intercept_, dtype=torch.float32))
    binary = binary.to(run.device).eval()
    choice, mix = choose_with(
        head, binary, src, y, safe, seed=seed, class_head_only=class_head_only
    )
    return choice, mix, binary


def choose_with(
    head: torch.nn.Module,
    binary: torch.nn.Linear,
    src: FeatureSource,
    positive: np.ndarray,
    safe: np.ndarray,
    *,
    seed: int = 0,
    class_head_only: bool = False,
) -> tuple[ToxicScoreChoice, ToxicMix | None]:
    """``select`` on ``src``'s valid features for a class head and a fitted binary head;
    the ``ToxicMix`` carries a copy of ``binary`` (None when 1 - P(safe) is kept)."""
    head.eval()
    src.eval()
    with torch.no_grad():
        x_valid = src.features("valid", None)
        p_safe = torch.softmax(head(x_valid), -1).cpu().numpy()[:, safe].sum(1)
        p_binary = torch.sigmoid(binary(x_valid)).cpu().numpy()[:, 0]
    choice = select(positive, 1 - p_safe, p_binary, seed=seed)
    if class_head_only:
        choice = choice.model_copy(
            update={"kind": "1 - P(safe)", "binary_weight": 0.0, "rule": "set (class-head)"}
        )
    if choice.binary_weight == 0:
        return choice, None
    mix = ToxicMix(binary.in_features, safe.tolist(), choice.binary_weight)
    mix.binary.load_state_dict(binary.state_dict())
    return choice, mix.to(x_valid.device).eval()
