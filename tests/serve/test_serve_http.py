"""The moderation server, for real: uvicorn on a free port in a thread, called with the
real ``openai`` SDK (and raw HTTP for what the SDK never sends). Answers must equal
in-process ``Guard.check`` on the tiny exported guard; auth, limits, timeouts, health,
readiness, metrics and micro-batching are checked on the same server or on the shipped
fake scorer (made slow where a test needs the model busy)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from pydantic import SecretStr

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

from .guard_helpers import LABELS, block, keyword_scorer

KEY = "test-key-0123"
LIMITS = {"max_inputs": 8, "max_chars": 5_000, "max_body_bytes": 20_000}


@pytest.fixture(scope="module")
def served(guard: Guard) -> Iterator[str]:
    config = ServeConfig(api_keys=(SecretStr(KEY),), **LIMITS)
    with BackgroundServer(create_app(guard, config)) as url:
        yield url


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def texts_for(guard: Guard) -> list[str]:
    return [
        "how do I bake bread?",
        "people from that town are all idiots",
        "",
        block(guard, "how do I hurt someone with a knife"),  # several windows
        "ünïcödé and emoji 🙂 text",
    ]


def ours(result: Any) -> dict[str, Any]:
    """The OpenAI-shaped fields of one SDK result, as plain dicts of our classes only."""
    d = result.model_dump(exclude_none=True, by_alias=True)  # "self-harm", not self_harm
    return {k: d[k] for k in ("flagged", "categories", "category_scores")}


def test_openai_sdk_equals_in_process_check(served: str, guard: Guard) -> None:
    texts = texts_for(guard)
    resp = client(served).moderations.create(input=texts, model="omni-moderation-latest")
    assert resp.model == "omni-moderation-latest" and resp.id.startswith("modr-")
    assert len(resp.results) == len(texts)
    for text, got in zip(texts, resp.results, strict=True):
        expected = guard.check(text)
        assert ours(got) == expected.to_openai_moderation()
        mine = dict(got.guardrail)
        want = expected.to_dict()
        mine.pop("latency_ms"), want.pop("latency_ms")
        assert mine == want
    one = client(served).moderations.create(input=texts[1])
    assert [ours(r) for r in one.results] == [guard.check(texts[1]).to_openai_moderation()]
    assert one.model == "guardrail-dro"


def test_concurrent_requests_equal_in_process(served: str, guard: Guard) -> None:
    texts = texts_for(guard) * 4
    got: dict[int, Any] = {}

    def ask(i: int) -> None:
        got[i] = client(served).moderations.create(input=texts[i]).results[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(len(texts)))
    for i, text in enumerate(texts):
        assert ours(got[i]) == guard.check(text).to_openai_moderation(), i


def test_text_parts_are_accepted(served: str, guard: Guard) -> None:
    body = {"input": [{"type": "text", "text": "hello there"}, "plain"]}
    r = httpx2.post(f"{served}/v1/moderations", json=body, headers=auth())
    assert r.status_code == 200
    assert r.json()["results"][0]["flagged"] == guard.check("hello there").violation


def auth(key: str = KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-key", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", f"Basic {KEY}"],
    ids=["missing", "wrong", "longer", "prefix", "not-bearer"],
)
def test_auth_refuses_missing_or_wrong_keys(served: str, header: str | None) -> None:
    headers = {} if header is None else {"authorization": header}
    r = httpx2.post(f"{served}/v1/moderations", json={"input": "hi"}, headers=headers)
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
    assert KEY[:-1] not in r.text  # the key is never echoed


def test_auth_through_the_sdk(served: str) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(served, key="nope").moderations.create(input="hi")
    assert info.value.status_code == 401
    assert "incorrect API key" in str(info.value)


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "x"}', 400, "input: Field required"),
        (b'{"input": 3}', 400, "input must be a string or a list"),
        (b'{"input": [{"type": "image_url", "image_url": {"url": "x"}}]}', 400, "input must"),
        (b'{"input": "x", "temperature": 1}', 400, "temperature: Extra inputs"),
        (b'{"input": []}', 400, "at least one text"),
        (b'{"input": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}', 400, "9 texts, more than"),
        (b'{"input": "' + b"a" * 5_001 + b'"}', 400, r"input\[0\]: 5001 characters"),
        (b'{"input": "' + b"a" * 25_000 + b'"}', 413, "over this server's limit of 20000 bytes"),
        (b'{"input": ' + b"[" * 9_000 + b"]" * 9_000 + b"}", 400, "not valid JSON"),
    ],
    ids=["json", "missing", "type", "image", "extra", "empty", "count", "chars", "bytes", "deep"],
)
def test_bad_requests_get_openai_errors(served: str, body: bytes, status: int, match: str) -> None:
    headers = {**auth(), "content-type": "application/json"}
    r = httpx2.post(f"{served}/v1/moderations", content=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert set(err) == {"message", "type", "param", "code"}
    assert re.search(match, err["message"]), err["message"]


def test_a_lone_surrogate_escape_is_scored_not_refused(served: str) -> None:
    # JSON.stringify of a reply cut mid-emoji; pydantic's parser refuses it, json reads it
    body = b'{"input": ["cut at the limit \\ud83d", "fine"]}'
    headers = {**auth(), "content-type": "application/json"}
    r = httpx2.post(f"{served}/v1/moderations", content=body, headers=headers)
    assert r.status_code == 200, r.text
    first, second = (res["guardrail"] for res in r.json()["results"])
    assert first["error"] is None and second["error"] is None
    assert not first["degraded"] and 0.0 <= first["toxic_score"] <= 1.0
    bad = httpx2.post(f"{served}/v1/moderations", content=b'{"input": NaN}', headers=headers)
    assert bad.status_code == 400 and "input must be a string" in bad.text


def test_oversized_body_without_length_is_refused(served: str) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        yield b'{"input": "'
        for _ in range(30):
            yield b"a" * 1_000
        yield b'"}'

    r = httpx2.post(f"{served}/v1/moderations", content=chunks(), headers=auth())
    assert r.status_code == 413


def test_health_ready_metrics_and_unknown_paths(served: str) -> None:
    # its own accepted and refused requests, so that it holds alone or in any order
    ok = httpx2.post(f"{served}/v1/moderations", json={"input": "hi"}, headers=auth())
    refused = httpx2.post(f"{served}/v1/moderations", json={"input": "hi"}, headers=auth("x"))
    assert (ok.status_code, refused.status_code) == (200, 401)
    assert httpx2.get(f"{served}/healthz").json() == {"status": "ok"}
    ready = httpx2.get(f"{served}/readyz")
    assert ready.status_code == 200 and ready.json()["labels"]
    r = httpx2.get(f"{served}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'guardrail_requests_total{path="/v1/moderations",status="200"}' in text
    assert 'guardrail_requests_total{path="/v1/moderations",status="401"}' in text
    assert "guardrail_request_seconds_bucket" in text and "guardrail_batch_texts_count" in text
    assert "guardrail_degraded_total" in text and KEY not in text
    missing = httpx2.get(f"{served}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx2.get(f"{served}/v1/moderations").status_code == 405


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def slow_guard(seconds: float, **policy: Any) -> Guard:
    """The keyword fake scorer, each window taking ``seconds``: the model stays busy."""
    fast = keyword_scorer()

    def handler(text: str) -> Any:
        time.sleep(seconds)
        return fast.handler(text)

    return Guard.from_scorer(FakeScorer(handler, labels=LABELS), policy=Policy(**policy))


def test_concurrent_requests_share_model_calls() -> None:
    guard = slow_guard(0.2)
    with BackgroundServer(create_app(guard, ServeConfig(max_wait_ms=0))) as url:
        n = 8
        results: list[Any] = [None] * n

        def ask(i: int) -> None:
            text = "a knife" if i % 2 else "bread"
            results[i] = client(url).moderations.create(input=text).results[0].flagged

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [bool(i % 2) for i in range(n)]
        text = httpx2.get(f"{url}/metrics").text
    calls = _metric(text, "guardrail_batch_texts_count")
    assert _metric(text, "guardrail_batch_texts_sum") == n
    assert calls < n  # while one call runs the others queue and go in together


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_timeout_gives_degraded_results_by_policy(on_error: str) -> None:
    # The model takes 3 s and the bound is 2 s: a 100 ms timeout answers long before
    # either, even on a loaded host; a request that waited for the model fails.
    guard = slow_guard(3.0, on_error=on_error)
    with BackgroundServer(create_app(guard, ServeConfig(timeout_ms=100))) as url:
        sdk = client(url)  # built outside the timing: the SDK's set-up is not the server's
        start = time.perf_counter()
        r = sdk.moderations.create(input="bread").results[0]
        assert time.perf_counter() - start < 2.0
        text = httpx2.get(f"{url}/metrics").text
    assert r.guardrail["degraded"] is True and "100 ms" in r.guardrail["error"]
    assert r.flagged is (on_error == "closed")
    assert _metric(text, "guardrail_degraded_total") == 1


def test_a_timed_out_request_stops_holding_the_model() -> None:
    """A request given up on (its timeout) stops its model work at the next model call:
    before, all its windows were scored for nobody while every request behind it timed
    out too (the audit's 60 x 16,000-character request: 80 s of flagged answers)."""
    fast, calls = keyword_scorer(), []

    def handler(text: str) -> Any:
        calls.append(text)
        time.sleep(0.05)
        return fast.handler(text)

    scorer = FakeScorer(handler, labels=LABELS, max_length=64, batch_size=1)
    guard = Guard.from_scorer(scorer, policy=Policy(max_windows=None))
    long = "bread " * 600  # ~75 windows of 64 characters: ~4 s of model time
    with BackgroundServer(create_app(guard, ServeConfig(timeout_ms=300))) as url:
        r = client(url).moderations.create(input=long).results[0]
        assert r.guardrail["degraded"] is True
        start = time.perf_counter()
        after = client(url).moderations.create(input="a knife").results[0]
        waited = time.perf_counter() - start
    assert after.guardrail["degraded"] is False and after.flagged, after.guardrail
    assert waited < 2.0 and len(calls) < 30, (waited, len(calls))


def test_full_queue_answers_503() -> None:
    guard = slow_guard(3.0)
    app = create_app(guard, ServeConfig(max_queue_texts=1, max_inputs=1))
    with BackgroundServer(app) as url:
        first = threading.Thread(target=lambda: client(url).moderations.create(input="bread"))
        first.start()
        deadline = time.monotonic() + 30
        while app.state.batcher.queued == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.state.batcher.queued == 1  # the first text is with the model
        r = httpx2.post(f"{url}/v1/moderations", json={"input": "x"})
        first.join(30)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "overloaded"


class BrokenGuard(Guard):
    """A guard whose batch call fails outside the scorer (which would degrade instead)."""

    def decide_many(self, texts: Any, stop: Any = None) -> Any:
        raise RuntimeError("secret detail from the request")


def test_an_unexpected_failure_is_a_500_in_openai_shape() -> None:
    broken = BrokenGuard.from_scorer(keyword_scorer())
    with BackgroundServer(create_app(broken)) as url:
        r = httpx2.post(f"{url}/v1/moderations", json={"input": "bread"})
        ok = httpx2.get(f"{url}/healthz")
    assert r.status_code == 500 and ok.status_code == 200
    assert r.json()["error"]["type"] == "server_error" and "secret" not in r.text
