"""Averaging seeds: one frozen-mode model whose head is the mean of k seeds' heads.

Why: in frozen mode every seed of a method differs (its head's initial weights, its
batches and, for ``ours``, the soft labels its estimator learns), and the epoch of each
is chosen on valid, so picking the seed valid likes best also picks valid's noise.
``benchmarks/bench_seed_average.py`` fits each seed on one half of valid and scores the
other half: averaging 4 seeds of ``ours`` matched or beat its best seed on held-out
worst-group accuracy in all four readings (held out 0.550 -> 0.575 and 0.440 -> 0.476,
test 0.547 -> 0.576 and 0.572 -> 0.582, toxic-questions, 2026-12-06), while the
baselines gained nothing.

The average is exact and free at inference: the mean of the seeds' logits (their
probabilities' normalised geometric mean) is one ``ClassifierHead``. A linear head's is
the averaged weights; k hidden-layer heads of width h become one head of width k x h
whose output layer is the seeds' output layers side by side, scaled by 1/k. The guard's
toxic score is chosen again on valid for the averaged head (``toxic_score.RULE``), with
the seeds' binary heads averaged the same way, and the background block rates are
measured again. Every seed trains on one encoder, so this is frozen mode only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError
from guardrail_dro.train import background as BG
from guardrail_dro.train.config import TrainConfig
from guardrail_dro.train.metrics import score_split
from guardrail_dro.train.model import ClassifierHead
from guardrail_dro.train.result import SeedRun, TrainResult
from guardrail_dro.train.toxic_score import choose_with

__all__ = ["average_heads", "average_linear", "average_results", "fit_seeds"]


def average_linear(layers: Sequence[torch.nn.Linear]) -> torch.nn.Linear:
    """One linear layer whose output is the mean of ``layers``' outputs."""
    out = torch.nn.Linear(layers[0].in_features, layers[0].out_features)
    with torch.no_grad():
        out.weight.copy_(torch.stack([m.weight.detach().cpu() for m in layers]).mean(0))
        out.bias.copy_(torch.stack([m.bias.detach().cpu() for m in layers]).mean(0))
    return out


def _linears(head: ClassifierHead) -> list[torch.nn.Linear]:
    return [m for m in head.net if isinstance(m, torch.nn.Linear)]


def average_heads(heads: Sequence[ClassifierHead]) -> ClassifierHead:
    """One head whose logits are the mean of ``heads``' logits (in eval mode).

    Raises:
        ConfigError: no heads, or heads of different shapes.
    """
    if not heads:
        raise ConfigError("no heads to average")
    shapes = {(h.hidden, *(tuple(p.shape) for p in h.parameters())) for h in heads}
    if len(shapes) > 1:
        raise ConfigError(f"heads of different shapes cannot be averaged: {sorted(shapes)}")
    layers = [_linears(h) for h in heads]
    lasts = [ls[-1] for ls in layers]
    dim, classes, k = layers[0][0].in_features, lasts[0].out_features, len(heads)
    out = ClassifierHead(dim, classes, k * heads[0].hidden)
    last = _linears(out)[-1]
    if not heads[0].hidden:
        last.load_state_dict(average_linear(lasts).state_dict())
        return out
    hidden = _linears(out)[0]
    with torch.no_grad():
        hidden.weight.copy_(torch.cat([ls[0].weight.detach().cpu() for ls in layers]))
        hidden.bias.copy_(torch.cat([ls[0].bias.detach().cpu() for ls in layers]))
        last.weight.copy_(torch.cat([m.weight.detach().cpu() for m in lasts], 1) / k)
        last.bias.copy_(torch.stack([m.bias.detach().cpu() for m in lasts]).mean(0))
    return out


def _check(results: Sequence[TrainResult], valid: AnnotatedDataset) -> None:
    first = results[0]
    for r in results:
        if r.config.mode != "frozen":
            raise ConfigError(
                "averaging seeds needs frozen mode: in full mode every seed fine-tunes an "
                "encoder of its own, and their heads read different features"
            )
        if r.config.backbone != first.config.backbone or r.schema != first.schema:
            raise ConfigError("the results to average have different backbones or schemas")
    n = len(first.source.features("valid", None))
    if n != len(valid):
        raise ConfigError(f"valid has {len(valid)} items, the results were selected on {n}")


def _mean_weights(maps: Sequence[dict[str, float] | None]) -> dict[str, float] | None:
    """Each key's mean over the seeds that report it; None if a seed reports none."""
    if any(m is None for m in maps):
        return None
    keys = dict.fromkeys(k for m in maps for k in m or {})
    return {k: float(np.mean([m[k] for m in maps if m and k in m])) for k in keys}


def average_results(results: Sequence[TrainResult], valid: AnnotatedDataset) -> TrainResult:
    """The result of ``average_heads`` over ``results`` (seeds of one frozen-mode
    configuration), with its valid metrics, its toxic score chosen on ``valid`` and, with
    background text, its block rates measured again. One result is returned as it is.

    What stays per seed: the estimator saved with the model is the first seed's (each
    seed learns its own; the annotator and group weights reported are the seeds' mean).

    Raises:
        ConfigError: full-mode results, different backbones or schemas, or ``valid``
            not the split the results were selected on.
    """
    if len(results) == 1:
        return results[0]
    _check(results, valid)
    first, cfg = results[0], results[0].config
    src = first.source
    device = next(first.head.parameters()).device
    head = average_heads([r.head for r in results]).to(device).eval()
    src.eval()
    with torch.no_grad():
        pred = head(src.features("valid", None)).argmax(-1).cpu().numpy()
    metrics = score_split(valid, pred)
    seeds = [
        SeedRun(
            seed=r.config.seed,
            best_epoch=r.best_epoch,
            valid_worst_group_accuracy=r.valid_metrics.worst_group_accuracy,
            valid_accuracy=r.valid_metrics.accuracy,
            toxic_score=r.toxic_score.kind if r.toxic_score is not None else None,
        )
        for r in results
    ]
    per_seed = ", ".join(
        f"{s.valid_worst_group_accuracy:.3f}" if s.valid_worst_group_accuracy is not None
        else f"{s.valid_accuracy:.3f}"
        for s in seeds
    )  # fmt: skip
    mine = (
        metrics.worst_group_accuracy
        if metrics.worst_group_accuracy is not None
        else metrics.accuracy
    )
    notes = [
        f"averaged the heads of {len(results)} seeds ({', '.join(str(s.seed) for s in seeds)}): "
        f"valid {'worst-group ' if metrics.worst_group_accuracy is not None else ''}"
        f"accuracy {per_seed} per seed, {mine:.3f} averaged"
        + (
            f"; the estimator saved is seed {first.config.seed}'s"
            if first.estimator is not None
            else ""
        )
    ]
    for r in results:
        notes += [n for n in r.notes if n not in notes and not n.startswith("toxic score:")]
    choice = mix = binary = None
    if all(r.toxic_binary is not None for r in results):
        binary = average_linear([r.toxic_binary for r in results if r.toxic_binary is not None])
        binary = binary.to(device).eval()
        safe = np.asarray(valid.schema.safe_mask(), dtype=bool)
        choice, mix = choose_with(
            head,
            binary,
            src,
            ~safe[valid.gold_array()],
            safe,
            seed=cfg.seed,
            class_head_only=cfg.toxic_score == "class-head",
        )
        notes.append(choice.summary())
    bg = first.background
    if bg is not None:
        measured = BG.measure(
            head,
            src,
            valid,
            first.groups,
            sources=tuple(bg.sources),
            weight=bg.weight,
            fraction=bg.fraction,
            harmful=tuple(bg.harmful_sources) or None,
            harmful_weight=bg.harmful_weight or 1.0,
        )
        bg = measured.model_copy(update={"chosen_by": bg.chosen_by, "grid": bg.grid})
    by_group = None
    if all(r.annotator_weight_by_group is not None for r in results):
        maps = [r.annotator_weight_by_group or {} for r in results]
        by_group = {g: _mean_weights([m.get(g, {}) for m in maps]) or {} for g in maps[0]}
    return dataclasses.replace(
        first,
        config=cfg.model_copy(update={"average_seeds": len(results)}),
        head=head,
        valid_metrics=metrics if choice is None else choice.scored(metrics),
        group_weights=_mean_weights([r.group_weights for r in results]),
        annotator_weight_by_group=by_group,
        seconds=float(sum(r.seconds for r in results)),
        history=[],
        notes=notes,
        background=bg,
        toxic_score=choice,
        toxic_mix=mix,
        toxic_binary=binary,
        averaged_seeds=seeds,
    )


def fit_seeds(
    config: TrainConfig, fit: Callable[[TrainConfig], TrainResult], valid: AnnotatedDataset
) -> TrainResult:
    """Fit k = ``config.average_seeds`` seeds and average them: seeds ``k x config.seed``
    to ``k x config.seed + k - 1``, so that different seeds of an averaged model (a
    bench's) never share a seed (seed 0: 0..k-1, seed 1: k..2k-1).

    The first seed makes every choice left to valid that the others then reuse (the
    background weight and amount): the seeds then differ only by their seed.
    """
    if config.mode != "frozen":
        raise ConfigError(
            f"average_seeds={config.average_seeds} averages heads on one frozen encoder; in "
            "full mode every seed fine-tunes its own: use --average-seeds 1 in full mode"
        )
    k = config.average_seeds
    first = fit(config.model_copy(update={"seed": k * config.seed, "average_seeds": 1}))
    results = [first]
    for j in range(1, k):
        results.append(fit(first.config.model_copy(update={"seed": k * config.seed + j})))
    out = average_results(results, valid)
    update = {"seed": config.seed, "average_seeds": k}
    return dataclasses.replace(out, config=out.config.model_copy(update=update))
