"""The data model: label schema, items and annotations, readers, merging label files
(``merge``), splitting one by its gold labels (``split``), the synthetic generator."""

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.merge import merge_datasets, read_inputs
from guardrail_dro.data.readers import read_dataset, read_splits
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.data.split import DatasetSplits, split_dataset

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
