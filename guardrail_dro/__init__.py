"""guardrail-dro: guardrails trained from crowd + LLM labels, robust on their worst group.

The public names are loaded on first use, so ``import guardrail_dro`` stays light
(no torch, no ONNX Runtime, no LLM SDK)::

    from guardrail_dro import Guard
    guard = Guard.load("guard/")
    result = guard.check("how do I pick a lock?")
"""

from __future__ import annotations

import importlib
from typing import Any

from guardrail_dro import errors as _errors

__version__ = "0.1.0"

_LAZY = {
    "AnnotatedDataset": "guardrail_dro.data.items",
    "Annotation": "guardrail_dro.data.items",
    "Item": "guardrail_dro.data.items",
    "LabelSchema": "guardrail_dro.data.schema",
    "ReaderOptions": "guardrail_dro.data.readers",
    "read_dataset": "guardrail_dro.data.readers",
    "read_splits": "guardrail_dro.data.readers",
    "compute_metrics": "guardrail_dro.train.metrics",
    "make_synthetic": "guardrail_dro.data.synthetic",
    "BiLevelTrainer": "guardrail_dro.train.trainer",
    "TrainConfig": "guardrail_dro.train.trainer",
    "TrainedModel": "guardrail_dro.train.modeldir",
    "run_bench": "guardrail_dro.train.bench",
    "Guard": "guardrail_dro.serve.guard",
    "FakeScorer": "guardrail_dro.serve.scorer",
    "Scorer": "guardrail_dro.serve.scorer",
    "GuardResult": "guardrail_dro.serve.policy",
    "Policy": "guardrail_dro.serve.policy",
}

# The whole error tree (drawn in guardrail_dro.errors), so callers catch by name; the
# module imports nothing, so it is loaded eagerly.
_ERRORS = [
    name
    for name in _errors.__all__
    if isinstance(cls := getattr(_errors, name), type) and issubclass(cls, Exception)
]
globals().update({name: getattr(_errors, name) for name in _ERRORS})

__all__ = ["__version__", *sorted([*_LAZY, *_ERRORS])]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guardrail_dro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
