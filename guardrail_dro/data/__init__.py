"""The data model: label schema, items and annotations, readers, merging label files
(``merge``), the synthetic generator."""

from guardrail_dro.data.merge import merge_datasets, read_inputs

__all__ = ["merge_datasets", "read_inputs"]
