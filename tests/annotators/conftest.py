"""Fixtures for the annotator tests: a fake OpenAI + Anthropic server on loopback, a
tiny label schema and a retry policy whose waits are milliseconds.

Every test runs the real SDKs over real HTTP against ``annotators.testing``; nothing is
patched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, keyword_handler
from guardrail_dro.data.schema import LabelSchema


@pytest.fixture
def schema() -> LabelSchema:
    return LabelSchema(classes=("safe", "toxic"), safe=("safe",),
                       descriptions={"toxic": "insults, threats or hate"})


@pytest.fixture
def fast() -> RetryPolicy:
    """Same policy shape as production, waits of a few milliseconds."""
    return RetryPolicy(max_attempts=6, initial=0.001, max_backoff=0.005, retry_after_cap=0.01)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(keyword_handler) as srv:
        yield srv
