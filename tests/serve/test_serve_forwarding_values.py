"""Forwarded header values the SDKs cannot send as the caller sent them, through both
guarding proxies for real: the server on uvicorn in a thread, its upstreams the shipped
fake server recording every request, the caller plain httpx (the SDKs send ASCII only)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

from .forwarding_helpers import RecordingFake

BODY = {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "bread?"}]}


@pytest.fixture
def served() -> Iterator[tuple[str, RecordingFake]]:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    guard = Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))
    with RecordingFake() as fake:

        def up(url: str) -> Upstream:
            key = SecretStr("sk-upstream-SECRET-4567")
            return Upstream(url=url, api_key=key, forward_headers=("x-title",))

        app = create_app(
            guard, upstream=up(fake.openai_base_url), anthropic_upstream=up(fake.anthropic_base_url)
        )
        with BackgroundServer(app) as url:
            yield url, fake


@pytest.mark.parametrize(
    "path",
    ["/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"],
    ids=["chat", "messages", "count_tokens"],
)
def test_a_non_ascii_forwarded_value_is_a_400_naming_the_header(
    served: tuple[str, RecordingFake], path: str
) -> None:
    # Before: the chat proxy answered 502 "the upstream sent what this server cannot
    # read" (openai's client could not encode it), the messages proxy sent the value on
    # re-encoded, garbled ("CafÃ\x83Â© App").
    url, fake = served
    r = httpx.post(url + path, json=BODY, headers={"X-Title": "Café App".encode()})
    assert r.status_code == 400, r.text
    assert "'x-title'" in r.json()["error"]["message"]
    assert fake.seen == []  # the upstream was never called


def test_an_ascii_value_is_still_forwarded(served: tuple[str, RecordingFake]) -> None:
    url, fake = served
    r = httpx.post(url + "/v1/messages", json=BODY, headers={"X-Title": "Cafe App"})
    assert r.status_code == 200, r.text
    assert fake.seen[-1]["headers"]["x-title"] == "Cafe App"
