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

__version__ = "0.1.0"

_LAZY = {
    "AnnotatedDataset": "guardrail_dro.data",
    "Annotation": "guardrail_dro.data",
    "Item": "guardrail_dro.data",
    "LabelSchema": "guardrail_dro.schema",
    "ReaderOptions": "guardrail_dro.readers",
    "read_dataset": "guardrail_dro.readers",
    "read_splits": "guardrail_dro.readers",
    "compute_metrics": "guardrail_dro.metrics",
    "make_synthetic": "guardrail_dro.synthetic",
    "BiLevelTrainer": "guardrail_dro.trainer",
    "TrainConfig": "guardrail_dro.trainer",
    "TrainedModel": "guardrail_dro.modeldir",
    "run_bench": "guardrail_dro.bench",
    "Guard": "guardrail_dro.guard",
    "GuardResult": "guardrail_dro.policy",
    "GuardViolation": "guardrail_dro.policy",
    "Policy": "guardrail_dro.policy",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guardrail_dro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
