"""The runner: cache, resumption, dedup, dry run, limits, reporting, cost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from annotators import (
    AnnotationCache,
    AnnotationRun,
    AnthropicAnnotator,
    OpenAIAnnotator,
    RetryPolicy,
    aannotate,
    aannotate_with_report,
    annotate,
    annotate_with_report,
)
from annotators.ratelimit import RateLimiter
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.readers import read_dataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from tests.annotators.ann_helpers import KEY, TEXTS, make_dataset


def _two(server: FakeLLMServer):
    return [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url),
            AnthropicAnnotator("claude-haiku-4-5", api_key=KEY,
                               base_url=server.anthropic_base_url)]


def test_two_annotators_and_a_cached_rerun_makes_no_call(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    ds = make_dataset(TEXTS, schema)
    db = tmp_path / "cache.sqlite"
    first = annotate_with_report(ds, _two(server), cache=db, policy=fast, progress=False)
    assert sum(server.calls.values()) == 2 * len(TEXTS)
    assert first.dataset.annotators == ("openai:gpt-4o-mini", "anthropic:claude-haiku-4-5")
    server.reset_counts()
    again = annotate_with_report(ds, _two(server), cache=db, policy=fast, progress=False)
    assert sum(server.calls.values()) == 0
    assert again.report.from_cache == 2 * len(TEXTS) and again.report.calls == 0
    assert [it.annotations for it in again.dataset] == [it.annotations for it in first.dataset]
    # refusals are paid for: cached and reported again, not re-asked
    assert again.report.outcomes["openai:gpt-4o-mini"]["refused"] == 1


def test_round_trip_through_jsonl_ready_for_training(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    out = annotate(make_dataset(TEXTS, schema), _two(server), policy=fast, progress=False)
    path = tmp_path / "labelled.jsonl"
    out.save_jsonl(path)
    back = read_dataset(path)
    assert back.annotator_kinds == {"openai:gpt-4o-mini": "llm",
                                    "anthropic:claude-haiku-4-5": "llm"}
    assert back.label_matrix().shape == (len(TEXTS), 2)


def test_errors_are_not_cached_and_are_retried_next_run(
        server: FakeLLMServer, schema: LabelSchema, tmp_path: Path) -> None:
    server.add_fault(Fault("server_error", match="idiot", times=2))
    once = RetryPolicy(max_attempts=1, initial=0.0)
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)]
    db = tmp_path / "c.sqlite"
    r1 = annotate_with_report(make_dataset(TEXTS, schema), ann, cache=db, policy=once,
                              progress=False)
    assert r1.report.outcomes[ann[0].name]["error"] == 1
    server.reset_counts()
    r2 = annotate_with_report(make_dataset(TEXTS, schema), ann, cache=db, policy=once,
                              progress=False)
    assert dict(server.calls) == {"you idiot": 1}  # only the failed one asked again
    assert r2.report.outcomes[ann[0].name]["error"] == 1  # second fault still armed
    server.reset_counts()
    r3 = annotate_with_report(make_dataset(TEXTS, schema), ann, cache=db, policy=once,
                              progress=False)
    assert r3.dataset.items[1].label_of(ann[0].name) == "toxic"


def test_identical_texts_are_asked_once(server: FakeLLMServer, schema: LabelSchema,
                                        fast: RetryPolicy) -> None:
    ds = make_dataset(["same text"] * 5 + ["other"], schema)
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)]
    out = annotate(ds, ann, policy=fast, concurrency=8, progress=False)
    assert server.calls == {"same text": 1, "other": 1}
    assert all(it.label_of(ann[0].name) == "safe" for it in out)


def test_dry_run_makes_no_call_and_estimates_cost(server: FakeLLMServer, schema: LabelSchema,
                                                  tmp_path: Path) -> None:
    run = annotate_with_report(make_dataset(TEXTS, schema), _two(server), dry_run=True,
                               progress=False)
    assert server.endpoints.total() == 0
    assert run.report.to_ask == 2 * len(TEXTS)
    assert run.report.estimated_cost is not None and run.report.estimated_cost > 0
    assert "estimated cost $" in "\n".join(run.report.summary_lines())
    unknown = [OpenAIAnnotator("my-local-llama", api_key=KEY, base_url=server.openai_base_url)]
    run = annotate_with_report(make_dataset(TEXTS, schema), unknown, dry_run=True,
                               progress=False)
    assert run.report.estimated_cost is None
    priced = annotate_with_report(make_dataset(TEXTS, schema), unknown, dry_run=True,
                                  prices={"my-local-llama": (1.0, 1.0)}, progress=False)
    assert priced.report.estimated_cost > 0


def test_cost_and_tokens_come_from_usage(server: FakeLLMServer, schema: LabelSchema,
                                         fast: RetryPolicy) -> None:
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)]
    run = annotate_with_report(make_dataset(TEXTS, schema), ann, policy=fast, progress=False,
                               prices={"gpt-4o-mini": (1_000_000.0, 0.0)})
    # one dollar per input token: the cost is the input token count
    assert run.report.cost == pytest.approx(run.report.usage.input_tokens)


def test_failures_file_lists_every_unlabelled_item(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    server.add_fault(Fault("malformed", match="weather", times=2))
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)]
    run = annotate_with_report(make_dataset(TEXTS, schema), ann, policy=fast, progress=False)
    path = run.report.write_failures(tmp_path / "f.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {(r["item_id"], r["outcome"]) for r in rows} == {("i2", "refused"), ("i3", "invalid")}
    invalid = next(r for r in rows if r["outcome"] == "invalid")
    assert "not json" in invalid["raw"] and invalid["error"]
    assert run.report.outcomes[ann[0].name]["labelled"] == 3


def test_the_api_key_is_never_written_to_the_cache(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    annotate(make_dataset(TEXTS, schema), _two(server), cache=db, policy=fast, progress=False)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert KEY.encode() not in blob
    with AnnotationCache(db) as cache:
        assert len(cache) == 2 * len(TEXTS)


def test_bad_arguments_are_config_errors(server: FakeLLMServer, schema: LabelSchema) -> None:
    ann = OpenAIAnnotator("m", api_key=KEY, base_url=server.openai_base_url)
    with pytest.raises(ConfigError, match="concurrency"):
        annotate(make_dataset(TEXTS, schema), [ann], concurrency=0)
    with pytest.raises(ConfigError, match="unique"):
        annotate(make_dataset(TEXTS, schema), [ann, ann])


def test_sync_entry_point_refuses_to_run_inside_a_loop(schema: LabelSchema) -> None:
    async def inside() -> None:
        annotate(make_dataset(TEXTS, schema), [])

    with pytest.raises(ConfigError, match="aannotate"):
        asyncio.run(inside())


def test_rate_limiter_bursts_a_minute_then_waits_and_settles_token_debt() -> None:
    """Each wait is timed from before the first acquire, so the bucket's leak during a
    slow burst (a loaded machine) cannot shorten it below a second; the upper bounds
    catch a limiter that spaces the burst or waits a minute (~60 s), not a slow host."""

    async def main() -> tuple[float, float, float]:
        lim = RateLimiter(rpm=60, tpm=600)  # 1 request and 10 tokens a second
        t0 = time.monotonic()
        for _ in range(60):  # a minute's allowance goes at once
            await lim.acquire(10)
        burst = time.monotonic() - t0
        await lim.acquire(0)  # the 61st request waits for a second's refill
        wait = time.monotonic() - t0
        lim = RateLimiter(tpm=600)
        t2 = time.monotonic()
        await lim.acquire(600)  # the token burst is spent
        await lim.settle(5, 15)  # the reply used 10 tokens more than estimated: a second
        debt = time.monotonic() - t2
        return burst, wait, debt

    burst, wait, debt = asyncio.run(main())
    assert burst < 10  # spaced at one a second, the burst would take 59 s
    assert 0.95 <= wait < 10  # a loaded machine only delays
    assert 0.95 <= debt < 10
    with pytest.raises(ConfigError, match="--rpm must be positive"):
        RateLimiter(rpm=0)


def test_rpm_limit_spaces_requests(server: FakeLLMServer, schema: LabelSchema,
                                   fast: RetryPolicy) -> None:
    import openai  # noqa: F401  (imported now, not on the first call: that takes ~1 s)

    ann = [OpenAIAnnotator("m", api_key=KEY, base_url=server.openai_base_url)]
    ds = make_dataset([f"text {i}" for i in range(10)], schema)
    limiter = RateLimiter(rpm=600)  # 0.1 s a request once the burst is spent
    assert limiter.requests is not None
    requests = limiter.requests

    async def run() -> tuple[float, float]:
        t0 = time.perf_counter()  # before the bucket fills: a slow host cannot shorten it
        await requests.acquire(598)  # what is left of the burst: two requests
        start = time.monotonic()  # the fake server's clock for arrivals
        await aannotate(ds, ann, policy=fast, limiter=limiter, concurrency=8, progress=False)
        return time.perf_counter() - t0, start

    elapsed, start = asyncio.run(run())
    # two go at once, the other eight wait 0.1 s each: the last starts >= 0.8 s after
    # the bucket filled; the upper bound only catches a limiter waiting far too long (a
    # loaded host's client set-up and replies take seconds, not tens of seconds)
    assert 0.75 <= elapsed < 10
    # The bucket's own guarantee, whatever the load: by t0 + x at most 2 + 10x requests
    # have been let through (one of slack for the clock's granularity). A loaded machine
    # only delays requests, so this cannot fail for a limiter that works, and fails for
    # one that lets the ten through at once. (Spacing between first and last arrival
    # failed under load: a slow first client set-up refills the bucket meanwhile.)
    arrivals = sorted(r["t"] for r in server.requests)
    assert len(arrivals) == 10
    for k, t in enumerate(arrivals):
        assert t - start >= (k + 1 - 3) / 10, (k, [round(a - start, 3) for a in arrivals])
    limiter = RateLimiter(rpm=60)
    assert limiter.requests is not None
    spent = limiter.requests

    async def one_more() -> float:
        t0 = time.perf_counter()
        await spent.acquire(60)  # the burst is spent
        await limiter.acquire(10)
        return time.perf_counter() - t0

    assert 0.95 <= asyncio.run(one_more()) < 10  # a second's refill; a loaded host only delays


def test_tpm_limit_spaces_requests_by_their_tokens(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy) -> None:
    import openai  # noqa: F401  (see above)

    ann = [OpenAIAnnotator("m", api_key=KEY, base_url=server.openai_base_url)]
    ds = make_dataset([f"text {i}" for i in range(4)], schema)
    limiter = RateLimiter(tpm=120_000)  # 2,000 tokens a second
    assert limiter.tokens is not None
    tokens = limiter.tokens

    async def go() -> tuple[AnnotationRun, float]:
        t0 = time.perf_counter()  # before the burst is spent: its leak counts in elapsed
        await tokens.acquire(120_000)  # the burst is spent
        run = await aannotate_with_report(ds, ann, policy=fast, limiter=limiter,
                                          concurrency=4, progress=False)
        return run, time.perf_counter() - t0

    run, elapsed = asyncio.run(go())
    used = [b["input_tokens"] + b["output_tokens"] for b in server.billed]
    assert len(used) == 4 and run.report.calls == 4
    # every request but the last had to wait for the tokens the earlier ones used
    assert elapsed >= 0.8 * sum(used[:-1]) / 2000
    # loose: four SDK calls on a loaded host take seconds; a minute's wait still fails
    assert elapsed < 0.8 * sum(used[:-1]) / 2000 + 10


def test_a_429_with_retry_after_pauses_every_worker(schema: LabelSchema) -> None:
    import openai  # noqa: F401  (see above)

    with FakeLLMServer(latency=0.03) as srv:
        # in mid-run, once the connections are warm
        srv.add_fault(Fault("rate_limit", match="text 8", times=1, retry_after=0.5))
        ann = [OpenAIAnnotator("m", api_key=KEY, base_url=srv.openai_base_url)]
        policy = RetryPolicy(initial=0.001, max_backoff=0.005, retry_after_cap=1.0)
        run = annotate_with_report(make_dataset([f"text {i}" for i in range(24)], schema),
                                   ann, policy=policy, concurrency=4, progress=False)
    assert run.report.outcomes[ann[0].name]["labelled"] == 24
    limited = next(r["t"] for r in srv.requests if r["text"] == "text 8")
    told = limited + 0.03  # the 429 left after the simulated latency
    # requests already on their way may arrive just after (up to 0.2 s later on a loaded
    # machine); then none inside the pause (without the shared pause the other three
    # workers would finish the run in it)
    early = [r["t"] - told for r in srv.requests if told + 0.2 < r["t"] < told + 0.45]
    assert early == [], early
    assert max(r["t"] for r in srv.requests) >= told + 0.45


def test_a_new_label_schema_is_not_answered_from_the_old_cache(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)]
    annotate(make_dataset(TEXTS, schema), ann, cache=db, policy=fast, progress=False)
    other = LabelSchema(classes=("ok", "insult", "threat"))
    server.reset_counts()
    run = annotate_with_report(make_dataset(TEXTS, other), ann, cache=db, policy=fast,
                               progress=False)
    assert set(server.calls) == set(TEXTS)  # every text asked again, under the new classes
    assert run.report.from_cache == 0
    # the fake's rule still answers safe/toxic: invalid under the new schema, never stored
    # as a label outside it
    assert run.report.outcomes[ann[0].name]["invalid"] == 4


def test_report_usage_is_the_sum_of_what_the_server_billed(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy) -> None:
    server.add_fault(Fault("malformed", match="idiot", times=1))  # a paid repair call
    server.add_fault(Fault("rate_limit", match="weather", times=2))  # unpaid retries
    run = annotate_with_report(make_dataset(TEXTS, schema), _two(server), policy=fast,
                               progress=False)
    billed = server.billed
    assert len(billed) == 2 * len(TEXTS) + 1
    assert run.report.usage.input_tokens == sum(b["input_tokens"] for b in billed) > 0
    assert run.report.usage.output_tokens == sum(b["output_tokens"] for b in billed) > 0
    assert run.report.calls == 2 * len(TEXTS) + 1 + 2


def test_dry_run_reads_the_cache_and_creates_none(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)]
    missing = tmp_path / "sub" / "none.sqlite"
    run = annotate_with_report(make_dataset(TEXTS, schema), ann, cache=missing, dry_run=True,
                               progress=False)
    assert run.report.to_ask == len(TEXTS) and not missing.parent.exists()
    db = tmp_path / "c.sqlite"
    annotate(make_dataset(TEXTS[:2], schema), ann, cache=db, policy=fast, progress=False)
    before = db.read_bytes()
    run = annotate_with_report(make_dataset(TEXTS, schema), ann, cache=db, dry_run=True,
                               progress=False)
    assert (run.report.from_cache, run.report.to_ask) == (2, len(TEXTS) - 2)
    assert db.read_bytes() == before


def test_progress_shows_rate_tokens_and_cost(server: FakeLLMServer, schema: LabelSchema,
                                             fast: RetryPolicy, capsys) -> None:
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)]
    run = annotate_with_report(make_dataset(TEXTS, schema), ann, policy=fast, progress=True)
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert f"{len(TEXTS)}/{len(TEXTS)}" in last
    assert "req/s" in last or "s/req" in last  # the rate
    tokens = run.report.usage.input_tokens + run.report.usage.output_tokens
    assert f"tokens={tokens}" in last
    assert f"cost=${run.report.cost:.4f}" in last


def test_identical_non_transient_errors_stop_the_run(schema: LabelSchema,
                                                     fast: RetryPolicy) -> None:
    from annotators import RepeatedAPIError

    with FakeLLMServer() as srv:
        # a base URL with a typo: every call is the same 404
        ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=srv.url + "/v2")]
        ds = make_dataset([f"text {i}" for i in range(200)], schema)
        with pytest.raises(RepeatedAPIError) as exc:
            annotate(ds, ann, policy=fast, concurrency=2, progress=False)
    assert exc.value.status == 404 and exc.value.count == 5
    assert "HTTP 404" in str(exc.value) and "the fake server has no POST" in str(exc.value)
    assert len(srv.received) <= 5 + 2  # not one failing call per item
    # off: one error per item, as before
    with FakeLLMServer() as srv:
        ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=srv.url + "/v2")]
        run = annotate_with_report(make_dataset(["a", "b", "c", "d", "e", "f"], schema), ann,
                                   policy=fast, progress=False, max_repeated_errors=None)
    assert run.report.outcomes[ann[0].name]["error"] == 6


def test_a_server_that_never_answers_stops_the_run_naming_the_url(
    schema: LabelSchema, fast: RetryPolicy
) -> None:
    """Connection refused is transient, so each item spent its retries on it (26 s an
    item by default) and a 10,000-item run against a wrong --base-url went on for
    hours, silently. Five unanswered items in a row stop it, naming where they went."""
    import socket

    from annotators import RepeatedAPIError

    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=url)]
    ds = make_dataset([f"text {i}" for i in range(200)], schema)
    with pytest.raises(RepeatedAPIError) as exc:
        annotate(ds, ann, policy=fast, concurrency=2, progress=False)
    assert exc.value.status == 0 and exc.value.count == 5
    assert url in str(exc.value) and "no answer" in str(exc.value)


def test_a_text_the_tokenizer_refuses_is_priced_by_the_estimate() -> None:
    """bpe-openai refuses a text of millions of characters ("Input too long to encode
    safely"): a --dry-run over a file holding one crashed with that traceback."""
    import random

    from annotators.pricing import estimate_tokens
    from annotators.tokens import counter_for

    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    text = " ".join(
        "".join(rng.choice(letters) for _ in range(rng.randint(2, 12))) for _ in range(400_000)
    )
    counter = counter_for("openai", "gpt-4o-mini")
    assert counter.count(text) == estimate_tokens(text)
    assert counter.count("how do I bake bread?") < estimate_tokens("how do I bake bread?") + 3


def test_a_content_filter_400_is_a_refusal_not_an_error(
    schema: LabelSchema, fast: RetryPolicy
) -> None:
    """Azure OpenAI answers a prompt its content filter flags with HTTP 400, code
    content_filter: as an error, six toxic items in a row stopped the run as if the key
    were wrong (the 30 safe items after them never asked)."""
    from annotators.testing.wire import ErrorReply, item_text

    class AzureLike(FakeLLMServer):
        def openai_chat(self, body):  # type: ignore[no-untyped-def]
            if "idiot" in item_text(body.get("messages") or []):
                self.note_live("x", body, "chat.completions")
                raise ErrorReply(400, "content_filter", "The response was filtered due to "
                                 "the prompt triggering Azure OpenAI's content management "
                                 "policy.")  # fmt: skip
            return super().openai_chat(body)

    texts = [f"you idiot {i}" for i in range(6)] + [f"nice day {i}" for i in range(30)]
    with AzureLike() as srv:
        ann = [OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=srv.openai_base_url)]
        run = annotate_with_report(make_dataset(texts, schema), ann, policy=fast,
                                   concurrency=1, progress=False)  # fmt: skip
    counts = run.report.outcomes[ann[0].name]
    assert counts["refused"] == 6 and counts["labelled"] == 30 and counts["error"] == 0
    refused = [f for f in run.report.failures if f.outcome == "refused"]
    assert len(refused) == 6 and all("content management" in (f.raw or "") for f in refused)
