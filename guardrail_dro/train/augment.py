"""Word-noise copies of texts: more inputs for distillation, no labels needed.

Why: a student learns the teacher's function only where it is shown inputs. The
teacher's training texts are a few thousand points; the texts a guard meets are near
them but not on them (toxic-questions' test split scored a 2-layer student 0.013 ROC
AUC under its teacher where valid showed 0.007). Copies with a few words dropped or two
neighbours swapped sit in that neighbourhood, and the teacher labels them for free.
Measured in README "Distilled student".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["word_noise"]


def word_noise(
    texts: Sequence[str],
    copies: int,
    *,
    seed: int = 0,
    drop: float = 0.15,
    swap: float = 0.5,
    min_words: int = 3,
) -> list[str]:
    """``copies`` noisy variants of each text of ``min_words`` words or more.

    Each variant drops every word with probability ``drop`` (at least ``min_words - 1``
    words stay) and, with probability ``swap``, swaps two neighbouring words. Variants
    equal to their text or to an earlier variant are left out, so fewer may come back.
    Deterministic for a given ``seed``.

    >>> word_noise(["one two three four five"], 2, seed=1)
    ['two one four five', 'one two five four']
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0, not {copies}")
    if not 0 <= drop < 1 or not 0 <= swap <= 1:
        raise ValueError(f"drop must be in [0, 1) and swap in [0, 1], not {drop}, {swap}")
    rng = np.random.default_rng(seed)
    seen = set(texts)
    out: list[str] = []
    for text in texts:
        words = text.split()
        if len(words) < min_words:
            continue
        for _ in range(copies):
            keep = rng.random(len(words)) >= drop
            if keep.sum() < min_words - 1:
                keep[rng.choice(len(words), min_words - 1, replace=False)] = True
            w = [x for x, k in zip(words, keep, strict=True) if k]
            if len(w) > 1 and rng.random() < swap:
                i = int(rng.integers(len(w) - 1))
                w[i], w[i + 1] = w[i + 1], w[i]
            variant = " ".join(w)
            if variant not in seen:
                seen.add(variant)
                out.append(variant)
    return out
