"""The data model: label schema, items and annotations, readers, merging label files
(``merge``), the synthetic generator."""

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.merge import merge_datasets, read_inputs
from guardrail_dro.data.readers import read_dataset, read_splits
from guardrail_dro.data.schema import LabelSchema

__all__ = [
    "AnnotatedDataset",
    "LabelSchema",
    "merge_datasets",
    "read_dataset",
    "read_inputs",
    "read_splits",
]
