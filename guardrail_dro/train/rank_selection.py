"""Choose the soft-label estimator's capacity on the validation split alone.

The estimator is fit on the validation split, so how well its weights fit that split
says nothing about how well they generalise: on toxic-questions a rank-32 estimator
put the gold class on top for 95% of valid items and 65% of test items (uniform
weights: 76% and 81%). Two-fold cross-validation inside valid measures generalisation
without touching test: fit on one half, score the held-out half, swap, average.

Capacity has two knobs, chosen together on the same folds: the rank of the
text-conditioned part, and the shrinkage of each annotator's own weight toward the
shared model (``WeightEstimator.penalty``, a prior worth ``shrinkage`` valid items).
A dense panel of six annotators with thousands of valid items each barely feels the
prior; a crowd of 200 with six valid items each is held to the shared model unless
the held-out half says it can afford more.

A third, where the annotations carry confidences: whether the estimator reads them
(its confidence term). Each (rank, shrinkage) is fit with and without the term from the
same initial weights, so the comparison is paired; the fits without it draw exactly
the random numbers they drew before the term existed, so a dataset for which it is
not a candidate selects exactly as before. The held-out argmax accuracy that chooses
the rank is too coarse for this knob: where the annotators mostly agree the soft
label's argmax is right with or without the term, which changes how much of the soft
label (the classifier's target) sits on the gold class. So the term is kept when it
does not cost held-out accuracy and raises the held-out soft-label mass on the gold
class on both folds. Paired fits make that sign test meaningful without a margin: a
constant confidence gives the same fit twice (no gain, off), and an informative one
raised it on both folds on 2 of 3 synthetic seeds, by 0.002-0.004 at ranks 4 and 32,
where the argmax accuracy tied and a 0.005 margin kept the term off on all three.

A fourth, where the annotations carry rationales: whether the estimator reads them (its
rationale term, train/rationale.py), chosen by the same paired fits and the same twin
rule after the confidence term, on top of whatever that chose; never by held-out
accuracy alone (its P weights can fit a held-out half by chance).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import torch

from guardrail_dro.train import objectives as O
from guardrail_dro.train.model import RationaleBasis, WeightEstimator
from guardrail_dro.train.upper_level import AgreementItems, upper_step

__all__ = [
    "SHRINKAGES",
    "Capacity",
    "Score",
    "choose_estimator_rank",
    "cv_folds",
    "cv_note",
    "held_out_agreement",
    "penalty_of",
    "unusable_fold",
]

#: Candidate prior strengths (valid items' worth) of per-annotator deviations.
SHRINKAGES = (2.0, 20.0)

Stats = tuple[torch.Tensor, torch.Tensor]
"""(K,) mean and spread of the training confidences (model.confidence_stats)."""


class Score(NamedTuple):
    """Held-out group means, over the two folds: the soft label's argmax accuracy, and
    the soft-label mass on the gold class (and that mass per fold)."""

    accuracy: float
    mass: float
    fold_mass: tuple[float, ...] = ()


class Capacity(NamedTuple):
    """One candidate of the selection: rank, shrinkage, and whether it reads confidences
    and rationales."""

    rank: int
    shrinkage: float
    confidence: bool = False
    rationale: bool = False


def penalty_of(est: WeightEstimator, shrinkage: float, items: int) -> Callable[[], None]:
    """Adds the prior's gradient on the scale of a per-item mean risk over ``items`` items.

    The group risks average over items, so an annotator seen on n of them carries about
    n / items of the data term against ``shrinkage / items`` of prior: its weight moves
    off the shared model in proportion to n / (n + shrinkage).
    """
    scale = shrinkage / max(items, 1)
    return lambda: est.add_penalty_grad(scale)


def _fit(
    feats: torch.Tensor,
    labels: torch.Tensor,
    gold: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    num_classes: int,
    rank: int,
    shrinkage: float,
    reliability: torch.Tensor | None,
    *,
    steps: int,
    lr: float,
    group_step: float,
    confidence: torch.Tensor | None = None,
    stats: Stats | None = None,
    rationale: torch.Tensor | None = None,
    basis: RationaleBasis | None = None,
) -> WeightEstimator:
    """An estimator of ``rank`` fit by the training loop's own agreement-risk step; with
    ``stats``, one with the confidence term, reading the (N, K) ``confidence``; with
    ``basis``, one with the rationale term, reading the (N, K, P) ``rationale``."""
    est = WeightEstimator(
        feats.shape[1],
        labels.shape[1],
        rank,
        num_classes if reliability is not None else 0,
        reliability,
        stats,
        basis,
    ).to(feats.device)
    opt = torch.optim.Adam(est.parameters(), lr=lr)
    items = AgreementItems.select(labels, gold, groups, confidence, rationale)
    penalty = penalty_of(est, shrinkage, int(items.index.sum()))
    q = torch.full((num_groups,), 1.0 / num_groups, device=feats.device)
    for _ in range(steps):
        q = upper_step(
            opt,
            q,
            partial(items.risks, est, feats, num_groups, num_classes),
            group_step,
            penalty=penalty,
        )
    return est.eval()


@torch.no_grad()
def held_out_agreement(
    est: WeightEstimator,
    feats: torch.Tensor,
    labels: torch.Tensor,
    gold: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    num_classes: int,
    confidence: torch.Tensor | None = None,
    rationale: torch.Tensor | None = None,
) -> Score:
    """Group-mean accuracy of the soft label's argmax on items the estimator did not see,
    and group-mean soft-label mass on their gold class.

    Group-mean rather than worst-group: with half of a small split per fold, the worst
    group holds a handful of items and its accuracy is mostly noise.
    """
    s = O.soft_labels(est(feats, labels, confidence, rationale), labels, num_classes)
    labelled = O.annotator_mask(labels).any(1)
    hit = (s.argmax(1) == gold).float()
    acc, n = O.group_mean(hit[labelled], groups[labelled], num_groups)
    on_gold = s.gather(1, gold[:, None])[:, 0]
    mass, _ = O.group_mean(on_gold[labelled], groups[labelled], num_groups)
    return Score(float(acc[n > 0].mean()), float(mass[n > 0].mean()))


def cv_folds(
    n: int, seed: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two halves of the CV inside valid: one seeded permutation (its own generator,
    so the global random stream is untouched), cut in the middle."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).to(device)
    return perm[: n // 2], perm[n // 2 :]


def unusable_fold(labels: torch.Tensor, gold: torch.Tensor, seed: int) -> str | None:
    """Why the 2-fold CV cannot compare candidates, or None when it can.

    A fold needs an item to fit on (some annotator gave its gold class) and a labelled
    item to score. Without one the fit stays at its initial weights or the score is a
    mean over nothing (NaN): on a 1-item valid every candidate scored NaN and the CV
    "chose" anyway. The caller falls back to the default capacity instead.
    """
    fix = O.fixable_items(labels, gold).cpu()
    labelled = O.annotator_mask(labels).any(1).cpu()
    halves = cv_folds(labels.shape[0], seed)
    for fit_idx, score_idx in (halves, halves[::-1]):
        if not bool(fix[fit_idx].any()) or not bool(labelled[score_idx].any()):
            return (
                "a fold of the 2-fold CV inside valid has no item to fit on or to score "
                f"(valid has {labels.shape[0]} item(s), {int(fix.sum())} where a train "
                "annotator gave the gold class)"
            )
    return None


def choose_estimator_rank(
    feats: torch.Tensor,
    labels: torch.Tensor,
    gold: torch.Tensor,
    groups: torch.Tensor,
    *,
    num_groups: int,
    num_classes: int,
    reliability: torch.Tensor | None = None,
    candidates: Sequence[int] = (0, 4, 32),
    shrinkages: Sequence[float] = SHRINKAGES,
    steps: int = 200,
    lr: float = 1e-2,
    group_step: float = 0.05,
    seed: int = 0,
    tolerance: float = 0.005,
    confidence: torch.Tensor | None = None,
    stats: Stats | None = None,
    use_confidence: Sequence[bool] = (False,),
    rationale: torch.Tensor | None = None,
    basis: RationaleBasis | None = None,
    use_rationale: Sequence[bool] = (False,),
) -> tuple[Capacity, dict[Capacity, Score]]:
    """The least capacity whose 2-fold held-out accuracy is within ``tolerance`` of the best.

    Capacity grows with the rank, falls with the shrinkage and grows with the confidence
    term: candidates are ordered by (rank, -shrinkage, confidence) and the first one
    within ``tolerance`` of the best accuracy wins. If that one does not read
    confidences and its twin that does is also within ``tolerance`` of the best, the
    twin wins when it puts more held-out soft-label mass on the gold class on both
    folds (see the module). The rationale twin of the result is then tried the same way;
    rationale candidates win only so, never by accuracy alone.

    Args:
        feats, labels, gold, groups: the validation split (features, (N, K) annotator
            labels with -1 for absent, gold class, group index).
        reliability: (K, C) label-only trust table (reliability.py), or None for an
            estimator without the shared label terms.
        confidence, stats: the split's (N, K) confidences (NaN = none) and the training
            split's per-annotator mean and spread; needed when ``use_confidence``
            holds True.
        use_confidence: whether the candidates read confidences: (False,), (True,) or
            both.
        rationale, basis, use_rationale: likewise for rationales: the split's (N, K, P)
            rationale features and the ``RationaleBasis`` they were made with.

    Returns:
        (the chosen capacity, held-out scores per candidate)
    """
    if True in use_confidence and (confidence is None or stats is None):
        raise ValueError("confidence candidates need the split's confidences and their stats")
    if True in use_rationale and (rationale is None or basis is None):
        raise ValueError("rationale candidates need the split's rationale features and basis")
    halves = cv_folds(feats.shape[0], seed, feats.device)
    base = sorted(
        ((r, float(lam)) for r in candidates for lam in shrinkages), key=lambda c: (c[0], -c[1])
    )

    def score(rank: int, shrinkage: float, use: bool, use_rat: bool = False) -> Score:
        acc = 0.0
        masses = []
        for fit_idx, score_idx in (halves, halves[::-1]):
            conf = confidence if use else None
            rat = rationale if use_rat else None
            est = _fit(
                feats[fit_idx],
                labels[fit_idx],
                gold[fit_idx],
                groups[fit_idx],
                num_groups,
                num_classes,
                rank,
                shrinkage,
                reliability,
                steps=steps,
                lr=lr,
                group_step=group_step,
                confidence=conf[fit_idx] if conf is not None else None,
                stats=stats if use else None,
                rationale=rat[fit_idx] if rat is not None else None,
                basis=basis if use_rat else None,
            )
            got = held_out_agreement(
                est,
                feats[score_idx],
                labels[score_idx],
                gold[score_idx],
                groups[score_idx],
                num_groups,
                num_classes,
                conf[score_idx] if conf is not None else None,
                rat[score_idx] if rat is not None else None,
            )
            acc += got.accuracy  # summed, then halved: the same float as before
            masses.append(got.mass)
        return Score(acc / 2, sum(masses) / 2, tuple(masses))

    scores: dict[Capacity, Score] = {}
    torch.manual_seed(seed)
    starts = {}
    # Under auto the grid is fit without the rationale term and only the chosen
    # capacity's rationale twin is fit after (it can win only as a twin, below).
    grid_rat = (True,) if False not in use_rationale else (False,)
    plain = False in use_confidence and not grid_rat[0]
    for rank, shrinkage in base:  # the random stream of the selection without signals
        starts[rank, shrinkage] = torch.get_rng_state()
        if plain:
            scores[Capacity(rank, shrinkage)] = score(rank, shrinkage, False)
    after = torch.get_rng_state()

    def paired(c: Capacity) -> None:
        """Fit ``c`` from the initial weights of its twin without signals."""
        torch.set_rng_state(starts[c.rank, c.shrinkage])
        scores[c] = score(c.rank, c.shrinkage, c.confidence, c.rationale)

    for use in use_confidence:
        if use or grid_rat[0]:
            for rank, shrinkage in base:
                paired(Capacity(rank, shrinkage, use, grid_rat[0]))
    torch.set_rng_state(after)
    ordered = sorted(scores, key=lambda c: (c.rank, -c.shrinkage, c.confidence, c.rationale))
    accs = {c: v.accuracy for c, v in scores.items()}
    if all(v != v for v in accs.values()):  # every score NaN: nothing to tell them apart
        return ordered[0], scores
    accs = {c: (v if v == v else float("-inf")) for c, v in accs.items()}
    best = max(accs.values())
    chosen = next(c for c in ordered if accs[c] >= best - tolerance)

    def better(twin: Capacity) -> bool:
        """The twin keeps accuracy and raises the mass on gold on both folds."""
        return (
            twin != chosen
            and twin in scores
            and accs[twin] >= best - tolerance
            and all(
                t > c for t, c in zip(scores[twin].fold_mass, scores[chosen].fold_mass, strict=True)
            )
        )

    twin = chosen._replace(confidence=True)
    if better(twin):
        chosen = twin
    if len(use_rationale) == 2:
        # Rationale candidates are reached only as twins: with P directions of their own
        # they can fit a held-out half by chance (pure-noise rationale features won on
        # accuracy, 0.735 against 0.709, in a test), so they must raise the mass too.
        twin = chosen._replace(rationale=True)
        paired(twin)
        torch.set_rng_state(after)
        v = scores[twin].accuracy
        accs[twin] = v if v == v else float("-inf")
        if better(twin):
            chosen = twin
    return chosen, scores


def cv_note(
    chosen: Capacity,
    scores: dict[Capacity, Score],
    uses: tuple[bool, ...],
    uses_r: tuple[bool, ...],
) -> str:
    """The manifest note of the CV inside valid: what it chose, every candidate's held-out
    score, and the signal terms the settings turned on without asking it."""
    knobs = [n for n, u in (("confidence", uses), ("rationale", uses_r)) if len(u) == 2]
    forced = [n for n, u in (("confidence", uses), ("rationale", uses_r)) if u == (True,)]

    def onoff(c: Capacity, name: str) -> str:
        return "on" if getattr(c, name) else "off"

    shown = ", ".join(
        "/".join([str(c.rank), f"{c.shrinkage:g}", *(onoff(c, n) for n in knobs)])
        + f": {v.accuracy:.3f}"
        + (f"/{v.mass:.3f}" if knobs else "")
        for c, v in scores.items()
    )
    return (
        f"estimator rank {chosen.rank}, shrinkage {chosen.shrinkage:g}"
        + "".join(f", {n} {onoff(chosen, n)}" for n in knobs)
        + " chosen by 2-fold CV inside valid (held-out soft-label group-mean "
        + ("accuracy / mass on gold" if knobs else "accuracy")
        + f" per {'/'.join(['rank', 'shrinkage', *knobs])} {shown})"
        + "".join(f", with its {n} term (use_{n} on)" for n in forced)
    )
