"""Chat-pipeline rails: message reading, stream checking, SDK wrappers, the decorator."""
