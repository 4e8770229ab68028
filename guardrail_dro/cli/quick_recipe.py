"""The quickstart's training recipe on real data: what trains, with what, and why.

Every constant here was chosen by a measurement on validation and held-out text
(``benchmarks/bench_chat_variants.py``, README "Ordinary chat"), which its docstring
gives; ``quick_config`` turns them into the ``TrainConfig`` every method of the
quickstart shares. Its own module so that ``cli/quickstart.py`` stays the orchestrator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardrail_dro.train.config import TrainConfig

__all__ = [
    "BACKGROUND",
    "BACKGROUND_SETTING",
    "HARMFUL",
    "HARMFUL_WEIGHT",
    "OUTPUT_BACKGROUND",
    "OUTPUT_HARMFUL",
    "QUICK_EPOCHS",
    "QUICK_HEAD_HIDDEN",
    "QUICK_METHODS",
    "QUICK_SEEDS",
    "background_sources",
    "output_sources",
    "quick_config",
    "real_data_config",
]

BACKGROUND = ("convabuse-background", "everyday-requests")
"""The bundled background-safe text the real-data quickstart trains with."""

HARMFUL = ("harmful-requests",)
"""The bundled harmful-by-construction text the real-data quickstart trains with (as 'not
safe', at weight ``HARMFUL_WEIGHT``)."""

HARMFUL_WEIGHT = 3.0
"""Loss weight of a harmful text in the quickstart, chosen among 1, 3 and 6 (and none) by
``benchmarks/bench_chat_variants.py``'s ``RULE_HARMFUL`` on the mean of 3 seeds (README
"Ordinary chat"): held-out harmful-requests blocked 82.0% -> 93.4%, valid ROC AUC of the
toxic score 0.884 -> 0.888, valid worst-group binary accuracy 0.700 -> 0.686, held-out
background blocked 0.8% -> 1.1%."""

OUTPUT_BACKGROUND = ("assistant-replies",)
OUTPUT_HARMFUL = ("harmful-replies",)
"""What the output rail's guard trains with on top of the input guard's text: ordinary
assistant replies as safe, replies that go along with a harmful request as not safe (at
``HARMFUL_WEIGHT``). The output rail checks replies, which the input guard never saw:
with this recipe (``bench_chat_variants.py``'s variant o3; seeds 0-2, 2026-12-03) the
held-out ordinary replies blocked fall from 4-5 of 71 to 0 of 71 on every seed and the
held-out harmful replies blocked rise from 52-58 to 57-62 of 70, while its own harmful
*requests* recall falls (82.5% against 93.4% held-out), which is why it is a second
guard for the output rail and not the one guard for both."""

BACKGROUND_SETTING = (1.0, 1.0)
"""(weight, share) of the background in the quickstart: weight 1 and all of it, chosen
with the head (``QUICK_HEAD_HIDDEN``) by ``benchmarks/bench_chat_variants.py``'s rule
(README "Ordinary chat"). The trainer's own grid (train/background.py) had chosen weight
1 and half on the 321-text everyday-requests with a linear head; it is not re-run here
because it trains ``ours`` six times, which alone would take the quickstart past its
five minutes on a 2-core CPU; ``--choose-background`` runs it instead."""

QUICK_HEAD_HIDDEN = 128
"""Width of the classifier head's hidden layer on real data (0: the linear head).
Chosen, with ``BACKGROUND_SETTING``, among today's data with a linear head, the 815-text
everyday-requests with a linear head, 128- and 256-wide heads, and those heads with all
of the background, by ``benchmarks/bench_chat_variants.py``'s rule on the mean of 3
seeds: valid ROC AUC of the toxic score 0.875 -> 0.884, valid worst-group binary
accuracy at the balanced point 0.643 -> 0.700, held-out background blocked 3.5% -> 0.8%.
The synthetic demonstration keeps the trainer's defaults."""

QUICK_METHODS = ("ours", "mv")
"""The methods the real-data quickstart compares (``make bench`` runs them all)."""

QUICK_EPOCHS = 20
"""Epochs per method in the real-data quickstart (the trainer's default is 40)."""

QUICK_SEEDS = 3
"""Seeds per method in the real-data quickstart, whose verdict (ours against majority vote
on test worst-group accuracy) is their mean. One seed of ``ours`` moves that number by
several points (0.507 / 0.600 / 0.549 on seeds 0-2 with this recipe, against majority
vote's 0.505 mean), so a one-seed verdict was a coin toss: with seed 0 the quickstart
told every new user that ours was NOT ahead (0.507 against 0.532). Three seeds cost
about 70 s more (quickstart 2 min 35 s -> 4 min 24 s cold on the 2-core machine at load
2, 2026-12-03). The synthetic demonstration keeps one seed."""


def background_sources(
    synthetic: bool, background: Sequence[str] | None, harmful: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """(safe, harmful) background sources: as given, else ``BACKGROUND`` and ``HARMFUL``
    on real data and none on the synthetic set. Harmful text defaults on only beside
    safe text (the trainer refuses it alone)."""
    bg = list(background if background is not None else (() if synthetic else BACKGROUND))
    bad = list(harmful if harmful is not None else (HARMFUL if bg and not synthetic else ()))
    return bg, bad


def output_sources(safe: Sequence[str], harmful: Sequence[str]) -> tuple[list[str], list[str]]:
    """(safe, harmful) background sources of the output rail's guard: the input guard's
    plus ``OUTPUT_BACKGROUND`` and ``OUTPUT_HARMFUL`` (each once)."""
    bg = [*safe, *(s for s in OUTPUT_BACKGROUND if s not in safe)]
    bad = [*harmful, *(s for s in OUTPUT_HARMFUL if s not in harmful)]
    return bg, bad


def quick_config(
    out: Path,
    *,
    synthetic: bool,
    backbone: str | None,
    background: Sequence[str],
    choose: bool,
    harmful: Sequence[str] = (),
) -> TrainConfig:
    """The training configuration every method of the quickstart shares: on real data
    ``QUICK_EPOCHS`` epochs, a ``QUICK_HEAD_HIDDEN``-wide head and the background at
    ``BACKGROUND_SETTING`` (unless ``choose``) and ``harmful`` text at ``HARMFUL_WEIGHT``;
    the trainer's defaults on the synthetic set."""
    from guardrail_dro.train.config import TrainConfig

    weight, share = (None, None) if choose else BACKGROUND_SETTING
    return TrainConfig(
        cache_dir=out / "cache",
        backbone=backbone,
        epochs=None if synthetic else QUICK_EPOCHS,
        head_hidden=0 if synthetic else QUICK_HEAD_HIDDEN,
        background_safe=list(background),
        background_weight=weight if background else None,
        background_fraction=share if background else None,
        background_harmful=list(harmful),
        harmful_weight=HARMFUL_WEIGHT if harmful else 1.0,  # unread without harmful text
    )


def real_data_config(cache_dir: Path | None = None) -> TrainConfig:
    """``quick_config`` as the real-data quickstart runs by default (its background-safe
    and harmful text, the fixed background setting), for benchmarks that measure what
    the quickstart ships; the embedding cache in ``cache_dir`` (None: the default)."""
    return quick_config(
        Path("."), synthetic=False, backbone=None, background=BACKGROUND, choose=False,
        harmful=HARMFUL,
    ).model_copy(update={"cache_dir": cache_dir})  # fmt: skip
