"""OpenAI's "out of credit" answer: HTTP 429 with code ``insufficient_quota``.

It shares its status with a rate limit, but waiting cannot help: the account has no
credit until someone adds some. Read as a rate limit, each item spent its whole retry
schedule on it (about 23 s an item with the default policy) and the run never stopped,
so a 10,000-item run went on for hours and ended with every item an error.
"""

from __future__ import annotations

import pytest

from annotators import OpenAIAnnotator, RepeatedAPIError, annotate, annotate_with_report
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY, make_dataset


def test_out_of_quota_stops_the_run_after_five_items_asked_once(
    schema: LabelSchema, fast: RetryPolicy
) -> None:
    texts = [f"text {i}" for i in range(200)]
    with FakeLLMServer() as srv:
        srv.add_fault(Fault("insufficient_quota", times=10_000))
        ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=srv.openai_base_url)]
        with pytest.raises(RepeatedAPIError) as exc:
            annotate(make_dataset(texts, schema), ann, policy=fast, concurrency=2, progress=False)
        assert max(srv.calls.values()) == 1, "an out-of-quota answer was retried"
        assert srv.calls.total() <= 5 + 2  # not the whole run
    assert exc.value.status == 429 and exc.value.count == 5
    assert "insufficient_quota" in str(exc.value)


def test_a_plain_rate_limit_is_still_retried_and_never_stops_the_run(
    schema: LabelSchema, fast: RetryPolicy
) -> None:
    with FakeLLMServer() as srv:
        srv.add_fault(Fault("rate_limit", times=5))  # one short of the six attempts
        ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=srv.openai_base_url)]
        run = annotate_with_report(
            make_dataset([f"t{i}" for i in range(6)], schema),
            ann,
            policy=fast,
            concurrency=1,
            progress=False,
        )
        assert srv.calls["t0"] == 6
    assert run.report.outcomes[ann[0].name]["labelled"] == 6
