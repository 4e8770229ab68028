"""Pilots: label a reproducible subset first, look at it, then run the rest.

``--limit N`` takes the first N items (in file order); ``--sample N --seed S`` takes N
items drawn at random with seed S (then kept in file order). Either way the subset is
a pure function of the data and the options, so the same command picks the same items,
and a later run without the option finds the pilot's answers in the cache (keys do not
depend on the subset) and pays only for the rest.
"""

from __future__ import annotations

import random

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError

__all__ = ["pilot_subset"]


def pilot_subset(dataset: AnnotatedDataset, *, limit: int | None = None,
                 sample: int | None = None, seed: int = 0) -> AnnotatedDataset:
    """The items a pilot labels (the whole dataset when neither option is given).

    Raises:
        ConfigError: both options, or a size below 1.
    """
    if limit is not None and sample is not None:
        raise ConfigError("give either --limit or --sample, not both")
    n = limit if limit is not None else sample
    if n is None:
        return dataset
    if n < 1:
        raise ConfigError(f"--{'limit' if limit is not None else 'sample'} must be >= 1, not {n}")
    if n >= len(dataset):
        return dataset
    if limit is not None:
        picked = list(range(n))
    else:
        picked = sorted(random.Random(seed).sample(range(len(dataset)), n))
    how = f"first {n}" if limit is not None else f"{n} sampled with seed {seed}"
    return dataset.subset(picked, name=f"{dataset.name} ({how})")
