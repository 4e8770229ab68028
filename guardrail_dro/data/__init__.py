"""The data model: label schema, items and annotations, readers, the synthetic generator."""
