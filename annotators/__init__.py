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
    RepeatedAPIError,
    Usage,
)
from annotators.batch import abatch_annotate, batch_annotate
from annotators.cache import AnnotationCache, cache_key
from annotators.labelling import label_text
from annotators.openai_annotator import OpenAIAnnotator
from annotators.pricing import DEFAULT_PRICES, load_prices
from annotators.prompts import PROMPT_VERSION, build_prompt
from annotators.report import AnnotationRun, RunReport
from annotators.retry import RetryPolicy
from annotators.runner import aannotate, aannotate_with_report, annotate, annotate_with_report
from annotators.specs import make_annotator

__all__ = [
    "DEFAULT_PRICES",
    "PROMPT_VERSION",
    "AnnotationCache",
    "AnnotationResult",
    "AnnotationRun",
    "Annotator",
    "AnnotatorError",
    "AnthropicAnnotator",
    "BatchPendingError",
    "LabelReply",
    "OpenAIAnnotator",
    "Outcome",
    "Prompt",
    "RawReply",
    "RepeatedAPIError",
    "RetryPolicy",
    "RunReport",
    "Usage",
    "aannotate",
    "aannotate_with_report",
    "abatch_annotate",
    "annotate",
    "annotate_with_report",
    "batch_annotate",
    "build_prompt",
    "cache_key",
    "label_text",
    "load_prices",
    "make_annotator",
]
