"""LLM annotators: label datasets with OpenAI and Claude models, cheaply and resumably.

Entry point: ``annotate(dataset, annotators, cache=...)`` (``aannotate`` for async code,
``abatch_annotate`` for the providers' batch APIs). Adapters: ``OpenAIAnnotator`` (any
OpenAI-compatible server) and ``AnthropicAnnotator``. ``annotators.testing`` ships a
fake server that speaks both APIs, for tests and demos.

Importing this package imports no SDK: the adapters load ``openai`` / ``anthropic`` on
first use and raise ``DependencyError`` naming ``pip install 'guardrail-dro[annotate]'``
when they are missing.
"""

from annotators.anthropic_annotator import AnthropicAnnotator
from annotators.base import (
    AnnotationResult,
    Annotator,
    AnnotatorError,
    BatchPendingError,
    LabelReply,
    Outcome,
    Prompt,
    RawReply,
    Usage,
)
from annotators.labelling import label_text
from annotators.openai_annotator import OpenAIAnnotator
from annotators.prompts import PROMPT_VERSION, build_prompt
from annotators.retry import RetryPolicy

__all__ = [
    "PROMPT_VERSION",
    "AnnotationResult",
    "Annotator",
    "AnnotatorError",
    "AnthropicAnnotator",
    "BatchPendingError",
    "LabelReply",
    "OpenAIAnnotator",
    "Outcome",
    "Prompt",
    "RawReply",
    "RetryPolicy",
    "Usage",
    "build_prompt",
    "label_text",
]
