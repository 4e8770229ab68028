"""Batch jobs on both providers: submit, poll, collect, resume, re-queue, report."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotators import AnnotationCache, AnthropicAnnotator, BatchPendingError, OpenAIAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
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


LIST = {"openai": "batches.list", "anthropic": "message_batches.list"}


def _make_timeout(provider: str, server: FakeLLMServer, timeout: float):
    if provider == "openai":
        return OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url,
                               timeout=timeout)
    return AnthropicAnnotator("claude-haiku-4-5", api_key=KEY,
                              base_url=server.anthropic_base_url, timeout=timeout)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", ["batch_create_timeout", "batch_create_error"])
def test_a_lost_create_reply_is_found_in_the_list_not_paid_twice(
        provider: str, kind: str, server: FakeLLMServer, schema: LabelSchema,
        fast: RetryPolicy, tmp_path: Path) -> None:
    # The server creates the job, then the reply times out (or is a 500): a blind retry
    # of the create call would pay for the whole job a second time.
    server.add_fault(Fault(kind, delay=1.0))
    ann = _make_timeout(provider, server, timeout=0.3)
    run = batch_annotate_with_report(make_dataset(TEXTS, schema), [ann], poll_interval=0.01,
                                     policy=fast, cache=tmp_path / "c.sqlite")
    assert server.endpoints[CREATE[provider]] == 1
    assert server.endpoints[LIST[provider]] >= 1
    assert all(server.batch_paid[t] == 1 for t in TEXTS)
    assert len(run.report.batch_jobs) == 1
    got = {it.text: it.label_of(ann.name) for it in run.dataset}
    assert {t: got[t] for t in EXPECTED} == EXPECTED
    with AnnotationCache(tmp_path / "c.sqlite") as cache:
        assert cache.open_submits(ann.name) == [] and cache.open_jobs(ann.name) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_pending_submit_that_never_became_a_job_is_submitted_once(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy,
        tmp_path: Path) -> None:
    from annotators.cache import PendingSubmit
    from annotators.runner import key_for

    # A run killed after writing its pending row, before the create call reached the API.
    ann = make(provider, server)
    keys = tuple(key_for(ann, t, schema) for t in TEXTS)
    with AnnotationCache(tmp_path / "c.sqlite") as cache:
        cache.add_submit(PendingSubmit("dead", ann.provider, ann.model, ann.name, keys))
    run = _run(provider, server, schema, fast, cache=tmp_path / "c.sqlite")
    assert server.endpoints[LIST[provider]] >= 1  # looked before submitting
    assert server.endpoints[CREATE[provider]] == 1
    assert len(run.report.batch_jobs) == 1
    with AnnotationCache(tmp_path / "c.sqlite") as cache:
        assert cache.open_submits(ann.name) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_results_for_texts_not_in_this_run_are_kept(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy,
        tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    server.hold_batches = True
    with pytest.raises(BatchPendingError):
        _run(provider, server, schema, fast, cache=db, max_wait=0.05)
    server.hold_batches = False
    # resumed over a smaller dataset: the job still carries (and bills) all five
    ann = make(provider, server)
    batch_annotate_with_report(make_dataset(TEXTS[:2], schema), [ann], poll_interval=0.01,
                               policy=fast, cache=db)
    assert all(server.batch_paid[t] == 1 for t in TEXTS)
    server.reset_counts()
    again = _run(provider, server, schema, fast, cache=db)
    assert server.endpoints.total() == 0  # the other three were kept, not thrown away
    assert again.report.from_cache == len(TEXTS)
    got = {it.text: it.label_of(again.report.annotators[0]) for it in again.dataset}
    assert {t: got[t] for t in EXPECTED} == EXPECTED


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_usage_is_what_the_server_billed_and_repairs_cost_live_prices(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy) -> None:
    server.add_fault(Fault("malformed", match="idiot", times=1))
    model = make(provider, server).model
    run = _run(provider, server, schema, fast, prices={model: (1_000_000.0, 0.0)})
    assert server.calls["you idiot"] == 1  # one live repair call
    billed = server.billed
    assert run.report.usage.input_tokens == sum(b["input_tokens"] for b in billed)
    assert run.report.usage.output_tokens == sum(b["output_tokens"] for b in billed)
    # one dollar a live input token, half that in a batch
    batch_in = sum(b["input_tokens"] for b in billed if b["batch"])
    live_in = sum(b["input_tokens"] for b in billed if not b["batch"])
    assert live_in > 0
    assert run.report.cost == pytest.approx(0.5 * batch_in + live_in)


def test_annotators_submit_together_and_are_polled_together(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, capsys) -> None:
    server.batch_polls = 3  # each job needs three polls
    anns = [make("openai", server), make("anthropic", server)]
    run = batch_annotate_with_report(make_dataset(TEXTS, schema), anns, poll_interval=0.01,
                                     policy=fast)
    assert len(run.report.batch_jobs) == 2
    # both jobs were created before either was polled to the end
    order = [(r["method"], r["path"].split("?")[0]) for r in server.received]
    creates = [i for i, (m, p) in enumerate(order) if m == "POST" and p.endswith("batches")]
    results = [i for i, (m, p) in enumerate(order)
               if p.endswith(("/results", "/content"))]
    assert len(creates) == 2 and max(creates) < min(results)
    err = capsys.readouterr().err
    for ann in anns:
        assert f"{ann.name}: submitted batch" in err
    assert "in_progress" in err and "completed" in err and "ended" in err
    assert "/5 done" in err


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_requests_use_the_template_and_key_by_it(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy,
        tmp_path: Path) -> None:
    from annotators.templates import DEFAULT_TEMPLATE, FewShotExample

    team = DEFAULT_TEMPLATE.with_examples([FewShotExample("an example text", "safe")])
    cache = tmp_path / "c.sqlite"
    run = _run(provider, server, schema, fast, cache=cache, template=team)
    name = run.report.annotators[0]
    got = {it.text: it.label_of(name) for it in run.dataset}
    assert {t: got[t] for t in EXPECTED} == EXPECTED  # the item, not the example, labelled
    assert "an example text" not in server.batch_paid
    server.reset_counts()
    again = _run(provider, server, schema, fast, cache=cache, template=team)
    assert server.endpoints.total() == 0 and again.report.from_cache == len(TEXTS)
    _run(provider, server, schema, fast, cache=cache)  # the built-in prompt: other keys
    assert server.endpoints[CREATE[provider]] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_result_line_that_cannot_be_read_costs_only_itself(
        provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import annotators.testing.batch as fake

    cut = b'{"custom_id": "cut-off\n'  # a truncated line after the good ones
    finish = fake.BatchAPI.finish

    def finish_then_cut(self, b) -> None:
        finish(self, b)
        if b.provider == "openai":
            self._files[b.output_file_id] += cut

    results = fake.anthropic_results
    monkeypatch.setattr(fake.BatchAPI, "finish", finish_then_cut)
    monkeypatch.setattr(fake, "anthropic_results", lambda b: results(b) + cut)
    run = _run(provider, server, schema, fast, cache=tmp_path / "c.sqlite")
    name = run.report.annotators[0]
    got = {it.text: it.label_of(name) for it in run.dataset}
    assert {t: got[t] for t in EXPECTED} == EXPECTED  # every good line kept, no traceback
    assert server.endpoints[CREATE[provider]] == 1 and all(
        server.batch_paid[t] == 1 for t in TEXTS)  # fmt: skip


def test_a_failed_openai_job_says_why_its_items_are_missing(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import annotators.testing.batch as fake

    def fail(self, b) -> None:
        b.done = True  # no output file, no error file: the whole job failed

    shape = fake.openai_batch_object

    def failed(b) -> dict:
        out = shape(b)
        if b.done:
            out["status"] = "failed"
            out["errors"] = {"data": [{"code": "invalid_request", "message": "bad file"}]}
        return out

    monkeypatch.setattr(fake.BatchAPI, "finish", fail)
    monkeypatch.setattr(fake, "openai_batch_object", failed)
    run = _run("openai", server, schema, fast, cache=tmp_path / "c.sqlite")
    errors = {f.error for f in run.report.failures}
    assert errors and all("(the job: invalid_request: bad file)" in e for e in errors)



def test_an_azure_content_filter_result_is_a_refusal_asked_once(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    """Azure OpenAI's batch answers a prompt its content filter declines with a 400
    result line (code content_filter). As a failed request it was re-submitted in a new
    job twice, then reported as an error and asked yet again by the next run; the live
    path already makes it that item's refusal, kept in the cache."""
    server.add_fault(Fault("content_filter", match="idiot", times=10))
    run = _run("openai", server, schema, fast, cache=tmp_path / "c.sqlite")
    name = run.report.annotators[0]
    counts = run.report.outcomes[name]  # the bomb question is the model's own refusal
    assert counts["refused"] == 2 and counts["error"] == 0
    assert counts["labelled"] == len(TEXTS) - 2
    (refused,) = [f for f in run.report.failures if f.item_id == "i1"]
    assert refused.outcome == "refused" and "content management policy" in (refused.raw or "")
    assert server.endpoints["batches.create"] == 1  # not re-submitted
    server.reset_counts()
    again = _run("openai", server, schema, fast, cache=tmp_path / "c.sqlite")
    assert server.endpoints.total() == 0 and again.report.from_cache == len(TEXTS)


def test_a_live_content_filter_fault_is_a_refusal(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy) -> None:
    """The fake's ``content_filter`` fault speaks Azure's live 400 too."""
    from annotators.runner import annotate_with_report

    server.add_fault(Fault("content_filter", match="idiot", times=10))
    ann = [make("openai", server)]
    run = annotate_with_report(make_dataset(TEXTS, schema), ann, policy=fast, progress=False)
    counts = run.report.outcomes[ann[0].name]  # and the bomb question's own refusal
    assert counts["refused"] == 2 and counts["error"] == 0
    assert server.paid.total() == len(TEXTS) - 1


@pytest.mark.parametrize(("kw", "says"), [
    ({"poll_interval": 0.0}, "poll_interval must be positive"),
    ({"poll_interval": 0.01, "max_wait": -1.0}, "max_wait must not be negative"),
])  # fmt: skip
def test_a_poll_interval_of_zero_is_refused_before_any_call(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, kw: dict,
        says: str) -> None:
    # It polled a running job as fast as the event loop turned (~200 retrieves a second).
    with pytest.raises(ConfigError, match=says):
        batch_annotate_with_report(make_dataset(TEXTS, schema), [make("openai", server)],
                                   policy=fast, **kw)
    assert server.endpoints.total() == 0
