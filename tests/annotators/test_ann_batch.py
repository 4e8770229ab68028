"""Batch jobs on both providers: submit, poll, collect, resume, re-queue, report."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotators import AnnotationCache, AnthropicAnnotator, BatchPendingError, OpenAIAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.schema import LabelSchema
from tests.annotators.ann_helpers import EXPECTED, KEY, TEXTS, make_dataset

PROVIDERS = ["openai", "anthropic"]
CREATE = {"openai": "batches.create", "anthropic": "message_batches.create"}
RETRIEVE = {"openai": "batches.retrieve", "anthropic": "message_batches.retrieve"}


def make(provider: str, server: FakeLLMServer):
    if provider == "openai":
        return OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)
    return AnthropicAnnotator("claude-haiku-4-5", api_key=KEY,
                              base_url=server.anthropic_base_url)


def _run(provider: str, server: FakeLLMServer, schema: LabelSchema, policy: RetryPolicy,
         **kw: object):
    return batch_annotate_with_report(make_dataset(TEXTS, schema), [make(provider, server)],
                                      poll_interval=0.01, policy=policy, **kw)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_labels_everything_and_requeues_an_expired_request(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy,
        tmp_path: Path) -> None:
    server.add_fault(Fault("batch_expired", match="weather", times=1))
    run = _run(provider, server, schema, fast, cache=tmp_path / "c.sqlite")
    name = run.report.annotators[0]
    got = {it.text: it.label_of(name) for it in run.dataset}
    assert {t: got[t] for t in EXPECTED} == EXPECTED
    assert run.report.outcomes[name]["refused"] == 1
    assert server.endpoints[CREATE[provider]] == 2  # the expired one went into a new job
    assert server.batch_paid["the weather is fine"] == 1
    assert server.batch_paid["you idiot"] == 1
    assert server.calls.total() == 0  # no live call was needed
    assert len(run.report.batch_jobs) == 2
    server.reset_counts()
    again = _run(provider, server, schema, fast, cache=tmp_path / "c.sqlite")
    assert server.endpoints.total() == 0 and again.report.from_cache == len(TEXTS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_interrupted_batch_resumes_by_polling_the_same_job(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy,
        tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    server.hold_batches = True
    with pytest.raises(BatchPendingError) as exc:
        _run(provider, server, schema, fast, cache=db, max_wait=0.05)
    (job_id,) = exc.value.job_ids
    assert "run the same command again" in str(exc.value)
    with AnnotationCache(db) as cache:
        (job,) = cache.open_jobs(make(provider, server).name)
        assert job.job_id == job_id and len(job.keys) == len(TEXTS)
    polls_before = server.endpoints[RETRIEVE[provider]]
    assert polls_before >= 1

    server.hold_batches = False
    run = _run(provider, server, schema, fast, cache=db)
    assert server.endpoints[CREATE[provider]] == 1  # never submitted twice
    assert server.endpoints[RETRIEVE[provider]] > polls_before
    assert run.report.batch_jobs == []  # this run submitted nothing
    name = run.report.annotators[0]
    assert {it.text: it.label_of(name) for it in run.dataset}["you idiot"] == "toxic"
    assert all(server.batch_paid[t] == 1 for t in TEXTS)
    with AnnotationCache(db) as cache:
        assert cache.open_jobs(name) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_requests_that_keep_failing_are_reported_not_dropped(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy) -> None:
    server.add_fault(Fault("batch_errored", match="idiot", times=5))
    run = _run(provider, server, schema, fast, max_resubmits=1)
    (fail,) = [f for f in run.report.failures if f.outcome == "error"]
    assert fail.item_id == "i1" and "batch request" in fail.error
    assert server.endpoints[CREATE[provider]] == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_invalid_batch_reply_gets_one_live_repair(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy) -> None:
    server.add_fault(Fault("out_of_schema", match="idiot", times=1))
    run = _run(provider, server, schema, fast)
    name = run.report.annotators[0]
    assert run.dataset.items[1].label_of(name) == "toxic"
    assert server.batch_paid["you idiot"] == 1 and server.calls["you idiot"] == 1
    assert "not valid" in server.requests[0]["body"]["messages"][-1]["content"]
