"""The data model: label schema, items and annotations, readers, merging label files
(``merge``), splitting one by its gold labels (``split``), the synthetic generator.

The names below are imported on first use (PEP 562): importing ``guardrail_dro.data.schema``
alone, as the light command-line paths do, should not load the readers, merge, split and
numpy with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.data.merge import merge_datasets, read_inputs
    from guardrail_dro.data.readers import read_dataset, read_splits
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.data.split import DatasetSplits, split_dataset

_WHERE = {
    "AnnotatedDataset": "items",
    "DatasetSplits": "split",
    "LabelSchema": "schema",
    "merge_datasets": "merge",
    "read_dataset": "readers",
    "read_inputs": "merge",
    "read_splits": "readers",
    "split_dataset": "split",
}

__all__ = [
    "AnnotatedDataset",
    "DatasetSplits",
    "LabelSchema",
    "merge_datasets",
    "read_dataset",
    "read_inputs",
    "read_splits",
    "split_dataset",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
