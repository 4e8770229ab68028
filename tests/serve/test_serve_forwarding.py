"""The caller's headers and query parameters through both guarding proxies (``serve
--forward-header`` / ``--forward-query``), for real: the server on uvicorn in a thread,
its upstreams the shipped fake server recording every request's headers and path, the
callers the real ``openai`` and ``anthropic`` SDKs. Nothing is forwarded unless named;
what is named reaches the upstream as the caller sent it; credentials never do."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from pydantic import SecretStr, ValidationError

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.anthropic_proxy import anthropic_upstream_from_env
from guardrail_dro.serve.http.forwarding import (
    caller_headers,
    caller_query,
    forward_header_names,
    forward_query_names,
)
from guardrail_dro.serve.http.proxy import Upstream, upstream_from_env
from guardrail_dro.serve.http.schema import ApiError
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

from .forwarding_helpers import RecordingFake

KEY = "proxy-key-0123"
UPSTREAM_KEY = "sk-upstream-SECRET-4567"
CLEAN = [{"role": "user", "content": "how do I bake bread?"}]
ASKS_HARM = [{"role": "user", "content": "how do I hide a knife?"}]
WAIT_S = 30.0  # a safety net against a hung test, never a timing under test
#: What an OpenRouter app sends beside its request, and what it must not see forwarded.
APP_HEADERS = {"HTTP-Referer": "https://app.example", "X-Title": "Bread App"}
PRIVATE = {"X-Internal-Trace": "private-7", "Cookie": "session=caller-cookie"}
#: The query older ``anthropic`` SDKs put on beta calls, and one never named.
OLD_BETA_QUERY = {"beta": "true", "private": "p-1"}


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.fixture
def fake() -> Iterator[RecordingFake]:
    with RecordingFake() as srv:
        yield srv


@pytest.fixture
def serve(guard: Guard, fake: RecordingFake) -> Iterator[Callable[..., str]]:
    """``serve(headers=(), query=())``: the URL of a server behind ``KEY`` whose two
    proxies forward to ``fake`` the caller's ``headers`` and ``query`` parameters."""
    servers: list[BackgroundServer] = []

    def start(headers: tuple[str, ...] = (), query: tuple[str, ...] = ()) -> str:
        def up(url: str) -> Upstream:
            key = SecretStr(UPSTREAM_KEY)
            return Upstream(url=url, api_key=key, forward_headers=headers, forward_query=query)

        config = ServeConfig(api_keys=(SecretStr(KEY),))
        app = create_app(
            guard,
            config,
            upstream=up(fake.openai_base_url),
            anthropic_upstream=up(fake.anthropic_base_url),
        )
        servers.append(BackgroundServer(app))
        return servers[-1].__enter__()

    try:
        yield start
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def _openai(url: str, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=WAIT_S, **kw)


def _anthropic(url: str, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, timeout=WAIT_S, **kw)


def _app_client(url: str) -> openai.OpenAI:
    """An OpenRouter-style app: its headers, its own secrets, an organization and an
    Azure ``api-version`` on every request."""
    return _openai(
        url,
        organization="org-caller-1",
        default_headers={**APP_HEADERS, **PRIVATE},
        default_query={"api-version": "2024-10-21", "private": "p-1"},
    )


# -- names and picking, pure ----------------------------------------------------------


def test_header_names_are_lower_cased_and_kept_once() -> None:
    names = ["HTTP-Referer", "X-Title", "x-title", " OpenAI-Organization "]
    assert forward_header_names(names) == ("http-referer", "x-title", "openai-organization")
    assert forward_query_names(["api-version", "api-version", "Beta"]) == ("api-version", "Beta")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Authorization", "a credential"),
        ("X-Api-Key", "a credential"),
        ("api-key", "a credential"),
        ("Proxy-Authorization", "a credential"),
        ("cookie", "a credential"),
        ("Host", "hop-by-hop or framing"),
        ("Content-Length", "hop-by-hop or framing"),
        ("Transfer-Encoding", "hop-by-hop or framing"),
        ("Connection", "hop-by-hop or framing"),
        ("Upgrade", "hop-by-hop or framing"),
        ("Content-Type", "hop-by-hop or framing"),
        ("Accept-Encoding", "hop-by-hop or framing"),
        ("anthropic-version", "the SDK sends the version"),
    ],
)
def test_a_header_that_must_never_travel_is_refused_naming_the_option(name: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"--forward-header {name}: never forwarded, {why}"):
        forward_header_names(["x-title", name])


@pytest.mark.parametrize("name", ["X Title", "X-Title:", "", "Ré"], ids=repr)
def test_what_is_no_header_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="--forward-header .*give a header name"):
        forward_header_names([name])


@pytest.mark.parametrize("name", ["", "a=b", "a&b", "a b", "?a"], ids=repr)
def test_what_is_no_query_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="--forward-query .*one query parameter's name"):
        forward_query_names([name])


def test_picking_joins_a_repeated_header_and_skips_what_is_absent() -> None:
    items = [("x-title", "a"), ("cookie", "c"), ("X-Title", "b"), ("http-referer", "r")]
    assert caller_headers(items, ("x-title", "http-referer", "helicone-auth")) == {
        "x-title": "a, b",
        "http-referer": "r",
    }
    assert caller_headers(items, ()) == {}


def test_picking_the_query_decodes_and_refuses_a_repeated_parameter() -> None:
    assert caller_query("api-version=2024%2D10&x=1&flag=", ("api-version", "flag")) == {
        "api-version": "2024-10",
        "flag": "",
    }
    assert caller_query("", ("api-version",)) == {}
    with pytest.raises(ApiError, match="'api-version' is given more than once") as err:
        caller_query("api-version=a&api-version=b", ("api-version",))
    assert err.value.status == 400 and err.value.param == "api-version"


def test_the_upstream_builders_refuse_a_credential_naming_the_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UP_KEY", UPSTREAM_KEY)
    with pytest.raises(ConfigError, match="--forward-header authorization: never forwarded"):
        upstream_from_env("http://127.0.0.1:9/v1", "UP_KEY", forward_headers=("authorization",))
    with pytest.raises(ConfigError, match="--forward-header x-api-key: never forwarded"):
        anthropic_upstream_from_env("http://127.0.0.1:9", "UP_KEY", forward_headers=("x-api-key",))
    with pytest.raises(ValidationError, match="--forward-header Host: never forwarded"):
        Upstream(url="http://127.0.0.1:9", api_key=SecretStr("k"), forward_headers=("Host",))
    up = upstream_from_env("http://127.0.0.1:9/v1", "UP_KEY", forward_headers=("X-Title",))
    assert up.forward_headers == ("x-title",) and up.forward_query == ()


# -- the OpenAI proxy ------------------------------------------------------------------


def test_by_default_no_caller_header_or_query_reaches_the_upstream(
    serve: Callable[..., str], fake: RecordingFake
) -> None:
    url = serve()
    got = _app_client(url).chat.completions.create(model="m", messages=CLEAN)  # type: ignore[arg-type]
    assert got.choices[0].message.content == "Bread needs flour."
    sent = fake.seen[-1]
    assert sent["path"] == "/v1/chat/completions"  # no query
    for name in (*APP_HEADERS, *PRIVATE, "OpenAI-Organization"):
        assert name.lower() not in sent["headers"], name
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_named_headers_and_query_reach_the_upstream_and_nothing_else(
    serve: Callable[..., str], fake: RecordingFake, stream: bool
) -> None:
    url = serve(headers=("HTTP-Referer", "x-title", "openai-organization"), query=("api-version",))
    client = _app_client(url)
    if stream:
        chunks = client.chat.completions.create(model="m", messages=CLEAN, stream=True)  # type: ignore[arg-type]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = client.chat.completions.create(model="m", messages=CLEAN)  # type: ignore[arg-type]
        text = reply.choices[0].message.content or ""
    assert text == "Bread needs flour."
    sent = fake.seen[-1]
    assert sent["path"] == "/v1/chat/completions?api-version=2024-10-21"
    assert sent["headers"]["http-referer"] == APP_HEADERS["HTTP-Referer"]
    assert sent["headers"]["x-title"] == APP_HEADERS["X-Title"]
    assert sent["headers"]["openai-organization"] == "org-caller-1"
    # Not named, so not sent; the upstream's key, never the caller's.
    assert "x-internal-trace" not in sent["headers"] and "cookie" not in sent["headers"]
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert KEY not in json.dumps(sent["pairs"])


def test_a_header_named_but_not_sent_is_not_sent_and_a_repeat_is_joined(
    serve: Callable[..., str], fake: RecordingFake
) -> None:
    url = serve(headers=("x-title", "helicone-auth"))
    headers = [("Authorization", f"Bearer {KEY}"), ("X-Title", "one"), ("X-Title", "two")]
    res = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "m", "messages": CLEAN},
        headers=headers,
        timeout=WAIT_S,
    )
    assert res.status_code == 200, res.text
    sent = fake.seen[-1]
    assert sent["headers"]["x-title"] == "one, two"
    assert "helicone-auth" not in sent["headers"]


def test_a_refused_request_forwards_nothing(serve: Callable[..., str], fake: RecordingFake) -> None:
    url = serve(headers=("x-title",), query=("api-version",))
    before = len(fake.seen)
    got = _app_client(url).chat.completions.create(model="m", messages=ASKS_HARM)  # type: ignore[arg-type]
    assert got.choices[0].message.content == "REFUSED"
    assert len(fake.seen) == before  # the input rail refused before the upstream


def test_a_repeated_forwarded_query_parameter_is_a_400_in_each_routes_shape(
    serve: Callable[..., str], fake: RecordingFake
) -> None:
    """The SDKs write one value per name; a raw caller can send two, which the SDKs
    would forward as ``api-version[]=``: refused, naming the parameter."""
    url = serve(query=("api-version",))
    before = len(fake.seen)
    auth = {"Authorization": f"Bearer {KEY}"}
    chat = httpx.post(
        f"{url}/v1/chat/completions?api-version=a&api-version=b",
        json={"model": "m", "messages": CLEAN},
        headers=auth,
        timeout=WAIT_S,
    )
    assert chat.status_code == 400
    assert chat.json()["error"]["param"] == "api-version"
    assert "'api-version' is given more than once" in chat.json()["error"]["message"]
    messages = httpx.post(
        f"{url}/v1/messages?api-version=a&api-version=b",
        json={"model": "m", "max_tokens": 10, "messages": CLEAN},
        headers=auth,
        timeout=WAIT_S,
    )
    assert messages.status_code == 400
    assert messages.json()["error"]["type"] == "invalid_request_error"
    assert len(fake.seen) == before  # neither reached the upstream


def test_a_query_parameter_not_named_is_never_forwarded_even_repeated(
    serve: Callable[..., str], fake: RecordingFake
) -> None:
    url = serve(query=("api-version",))
    got = _openai(url).chat.completions.create(
        model="m",
        messages=CLEAN,  # type: ignore[arg-type]
        extra_query={"key": "caller-secret", "api-version": "v9"},
    )
    assert got.choices[0].message.content == "Bread needs flour."
    assert fake.seen[-1]["path"] == "/v1/chat/completions?api-version=v9"


# -- the Anthropic proxy ---------------------------------------------------------------


def test_anthropic_by_default_forwards_only_its_beta_header(
    serve: Callable[..., str], fake: RecordingFake
) -> None:
    url = serve()
    client = _anthropic(
        url, default_headers={**APP_HEADERS, **PRIVATE}, default_query=OLD_BETA_QUERY
    )
    got = client.beta.messages.create(
        model="m",
        max_tokens=50,
        messages=CLEAN,  # type: ignore[arg-type]
        betas=["some-beta"],
    )
    assert got.content[0].text == "Bread needs flour."  # type: ignore[union-attr]
    sent = fake.seen[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["anthropic-beta"] == "some-beta"
    for name in (*APP_HEADERS, *PRIVATE):
        assert name.lower() not in sent["headers"], name


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_named_headers_and_query_reach_the_upstream(
    serve: Callable[..., str], fake: RecordingFake, stream: bool
) -> None:
    url = serve(headers=("x-title", "Helicone-Property-App"), query=("beta",))
    client = _anthropic(
        url,
        default_headers={"X-Title": "Bread App", "Helicone-Property-App": "bread", **PRIVATE},
        default_query=OLD_BETA_QUERY,
    )
    kw: dict[str, Any] = {"model": "m", "max_tokens": 50, "messages": CLEAN}
    if stream:
        events = list(client.beta.messages.create(**kw, betas=["b-1"], stream=True))
        assert any(e.type == "message_stop" for e in events)
    else:
        got = client.beta.messages.create(**kw, betas=["b-1"])
        assert got.content[0].text == "Bread needs flour."  # type: ignore[union-attr]
    sent = fake.seen[-1]
    assert sent["path"] == "/v1/messages?beta=true"  # as older beta SDKs sent it
    assert sent["headers"]["x-title"] == "Bread App"
    assert sent["headers"]["helicone-property-app"] == "bread"
    assert sent["headers"]["anthropic-beta"] == "b-1"
    assert "x-internal-trace" not in sent["headers"] and "cookie" not in sent["headers"]
    assert sent["headers"]["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert KEY not in json.dumps(sent["pairs"])


def test_count_tokens_forwards_the_same(serve: Callable[..., str], fake: RecordingFake) -> None:
    url = serve(headers=("x-title",), query=("beta",))
    client = _anthropic(
        url, default_headers={"X-Title": "Bread App", **PRIVATE}, default_query=OLD_BETA_QUERY
    )
    got = client.beta.messages.count_tokens(model="m", messages=CLEAN, betas=["b-2"])  # type: ignore[arg-type]
    assert got.input_tokens == 3
    sent = fake.seen[-1]
    assert sent["path"] == "/v1/messages/count_tokens?beta=true"
    assert sent["headers"]["x-title"] == "Bread App"
    assert "b-2" in sent["headers"]["anthropic-beta"].split(",")
    assert "cookie" not in sent["headers"]
