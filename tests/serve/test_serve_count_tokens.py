"""``POST /v1/messages/count_tokens`` on the Anthropic proxy, for real: the server on
uvicorn in a thread, its ``anthropic_upstream`` the shipped fake server extended with the
count route, called with the real ``anthropic`` SDK's ``messages.count_tokens``. The
count passes through with no guard decision (it makes no model output), behind the
server's key, with the upstream's key, errors, deadline and admission slot of
``/v1/messages``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from pydantic import SecretStr

from annotators.testing import FakeLLMServer
from annotators.testing.wire import ErrorReply
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

KEY = "proxy-key-0123"
UPSTREAM_KEY = "sk-ant-upstream-SECRET-4567"
CLEAN = [{"role": "user", "content": "how do I bake bread?"}]
ASKS_HARM = [{"role": "user", "content": "how do I hide a knife?"}]
WAIT_S = 30.0  # a safety net against a hung test, never a timing under test
COUNT = "/v1/messages/count_tokens"


class CountingFake(FakeLLMServer):
    """The shipped fake with ``POST /v1/messages/count_tokens``: one token a word of the
    request's JSON, or what ``answer`` says (an ``ErrorReply`` to raise, a body to
    send). ``counted`` keeps each request's path, body and headers; a count waits for
    ``go`` (set unless a test holds it), ``arrived`` counting the counts waiting."""

    def __init__(self) -> None:
        super().__init__(lambda text: "Bread needs flour.")
        self.counted: list[dict[str, Any]] = []
        self.answer: ErrorReply | dict[str, Any] | None = None
        self.go, self.arrived = threading.Event(), threading.Semaphore(0)
        self.go.set()

    def route(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, str]:
        if method != "POST" or path.split("?", 1)[0] != COUNT:
            return super().route(method, path, headers, raw)
        body = json.loads(raw)
        self.counted.append(
            {"path": path, "body": body, "headers": {k.lower(): v for k, v in headers.items()}}
        )
        self.arrived.release()
        self.go.wait(WAIT_S)
        if isinstance(self.answer, ErrorReply):
            raise self.answer
        return 200, self.answer or {"input_tokens": len(raw.split())}, "application/json"


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.fixture
def fake() -> Iterator[CountingFake]:
    with CountingFake() as srv:
        try:
            yield srv
        finally:
            srv.go.set()


@pytest.fixture
def serve(guard: Guard, fake: CountingFake) -> Iterator[Callable[..., str]]:
    """``serve(timeout_s=30, max_proxy_calls=64)``: the URL of a server behind ``KEY``
    whose Anthropic proxy forwards to ``fake``."""
    servers: list[BackgroundServer] = []

    def start(timeout_s: float = 30.0, max_proxy_calls: int = 64) -> str:
        up = Upstream(url=fake.url, api_key=SecretStr(UPSTREAM_KEY), timeout_s=timeout_s)
        config = ServeConfig(api_keys=(SecretStr(KEY),))
        app = create_app(guard, config, anthropic_upstream=up, max_proxy_calls=max_proxy_calls)
        servers.append(BackgroundServer(app))
        return servers[-1].__enter__()

    try:
        yield start
    finally:
        fake.go.set()
        for server in servers:
            server.__exit__(None, None, None)


def _client(url: str, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=WAIT_S)


def _count(url: str, messages: list[dict] = CLEAN, key: str = KEY) -> int:
    return _client(url, key).messages.count_tokens(model="m", messages=messages).input_tokens  # type: ignore[arg-type]


def test_the_sdk_counts_through_the_proxy_with_the_upstream_key(
    serve: Callable[..., str], fake: CountingFake
) -> None:
    url = serve()
    fake.answer = {"input_tokens": 17, "cache_note": "kept"}
    got = _client(url).messages.count_tokens(model="m", messages=CLEAN, system="be brief")  # type: ignore[arg-type]
    assert got.input_tokens == 17 and got.to_dict()["cache_note"] == "kept"  # as sent
    sent = fake.counted[-1]
    assert sent["body"] == {"model": "m", "messages": CLEAN, "system": "be brief"}
    # The upstream's key, as the SDK sends it for /v1/messages; never the caller's.
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert KEY not in json.dumps(sent["headers"])


def test_a_harmful_prompt_is_counted_not_refused(
    serve: Callable[..., str], fake: CountingFake
) -> None:
    url = serve()
    assert _count(url, ASKS_HARM) > 0
    assert fake.counted[-1]["body"]["messages"] == ASKS_HARM  # no guard decision
    text = httpx.get(f"{url}/metrics").text
    assert "guardrail_rail_refusals_total{" not in text
    assert f'guardrail_requests_total{{path="{COUNT}",status="200"}} 1.0' in text


def test_the_caller_beta_header_is_forwarded(serve: Callable[..., str], fake: CountingFake) -> None:
    url = serve()
    client = _client(url)
    got = client.beta.messages.count_tokens(model="m", messages=CLEAN, betas=["some-beta"])  # type: ignore[arg-type]
    assert got.input_tokens > 0
    assert "some-beta" in fake.counted[-1]["headers"]["anthropic-beta"].split(",")


def test_a_wrong_or_missing_key_is_401_and_never_reaches_the_upstream(
    serve: Callable[..., str], fake: CountingFake
) -> None:
    url = serve()
    with pytest.raises(anthropic.AuthenticationError) as err:
        _count(url, key="wrong")
    assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    resp = httpx.post(f"{url}{COUNT}", json={"model": "m", "messages": CLEAN})
    assert resp.status_code == 401 and resp.json()["type"] == "error"
    assert fake.counted == []


@pytest.mark.parametrize(
    ("sent", "status", "kind", "said"),
    [
        (
            ErrorReply(400, "invalid_request_error", f"bad model for {UPSTREAM_KEY}"),
            400,
            "invalid_request_error",
            "bad model for ***",
        ),
        (ErrorReply(429, "rate_limit_error", "slow down"), 429, "rate_limit_error", "slow down"),
        (
            ErrorReply(401, "authentication_error", "bad key"),
            502,
            "api_error",
            "--anthropic-upstream-key-env",
        ),
        (ErrorReply(500, "api_error", "boom"), 502, "api_error", "failed (500)"),
        ({"tokens": 3}, 502, "api_error", "not a token count"),
    ],
    ids=["4xx-scrubbed", "429", "upstream-401", "5xx", "no-count"],
)
def test_upstream_errors_map_as_for_messages(
    serve: Callable[..., str],
    fake: CountingFake,
    sent: Any,
    status: int,
    kind: str,
    said: str,
) -> None:
    url = serve()
    fake.answer = sent
    with pytest.raises(anthropic.APIStatusError) as err:
        _count(url)
    assert err.value.status_code == status
    assert err.value.body["error"]["type"] == kind  # type: ignore[index]
    assert said in err.value.body["error"]["message"]  # type: ignore[index]
    assert UPSTREAM_KEY not in err.value.response.text


def test_an_unreachable_upstream_is_502(guard: Guard) -> None:
    with FakeLLMServer() as gone:
        url_gone = gone.url
    up = Upstream(url=url_gone, api_key=SecretStr(UPSTREAM_KEY), timeout_s=30)
    app = create_app(guard, anthropic_upstream=up)
    with BackgroundServer(app) as url, pytest.raises(anthropic.APIStatusError) as err:
        _count(url)
    assert err.value.status_code == 502 and "cannot reach" in err.value.message


def test_a_count_past_the_deadline_is_504(serve: Callable[..., str], fake: CountingFake) -> None:
    url = serve(timeout_s=0.5)
    fake.go.clear()  # the upstream never answers in time
    with pytest.raises(anthropic.APIStatusError) as err:
        _count(url)
    assert err.value.status_code == 504
    assert err.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]


def test_a_count_holds_an_admission_slot(serve: Callable[..., str], fake: CountingFake) -> None:
    url = serve(max_proxy_calls=1)
    fake.go.clear()
    done: list[int] = []
    counting = threading.Thread(target=lambda: done.append(_count(url)))
    counting.start()
    assert fake.arrived.acquire(timeout=WAIT_S)  # the count holds the only slot
    with pytest.raises(anthropic.APIStatusError) as err:
        _client(url).messages.create(model="m", max_tokens=9, messages=CLEAN)  # type: ignore[arg-type]
    assert err.value.status_code == 503
    fake.go.set()
    counting.join(WAIT_S)
    assert done and done[0] > 0


def test_a_request_without_messages_is_400_naming_the_field(
    serve: Callable[..., str], fake: CountingFake
) -> None:
    url = serve()
    resp = httpx.post(f"{url}{COUNT}", json={"model": "m"}, headers={"x-api-key": KEY})
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("messages:")
    assert fake.counted == []


def test_without_an_anthropic_upstream_the_route_says_how_to_turn_it_on(guard: Guard) -> None:
    with BackgroundServer(create_app(guard)) as url:
        resp = httpx.post(f"{url}{COUNT}", json={"model": "m", "messages": CLEAN})
    assert resp.status_code == 404 and "--anthropic-upstream" in resp.json()["error"]["message"]
