"""The ``POST /v1/responses`` proxy against odd requests and a misbehaving upstream, for
real: the server on uvicorn in a thread, the upstream the shipped fake OpenAI server or
canned on pytest-httpserver, called with raw httpx.

Each case was a defect found in review: a caller's lone surrogate answered 502 and
logged as the upstream's fault (on every proxied route: the body is read by one
function), and a Response whose output items are no objects (strings) passed the output
rail unread, where the chat proxy answers a choice it cannot read 502."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

UPSTREAM_KEY = "sk-upstream-SECRET-4567"
RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
            "output": [], "status": "completed", "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": []}  # fmt: skip


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


def _serve(guard: Guard, url: str) -> BackgroundServer:
    up = Upstream(url=url, api_key=SecretStr(UPSTREAM_KEY), timeout_s=10.0)
    return BackgroundServer(create_app(guard, upstream=up))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: "Bread needs flour.") as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(guard: Guard, fake: FakeLLMServer) -> Iterator[str]:
    with _serve(guard, fake.openai_base_url) as url:
        yield url


@pytest.fixture(scope="module")
def canned(make_httpserver: HTTPServer) -> HTTPServer:
    return make_httpserver


@pytest.fixture(scope="module")
def canned_proxy(guard: Guard, canned: HTTPServer) -> Iterator[str]:
    with _serve(guard, canned.url_for("/v1")) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", b'{"model": "m", "input": "bake bread \\ud83d"}'),
        ("/v1/chat/completions",
         b'{"model": "m", "messages": [{"role": "user", "content": "bake bread \\ud83d"}]}'),
    ],
    ids=["responses", "chat"],
)  # fmt: skip
def test_a_lone_surrogate_is_the_callers_400_and_never_sent(
    proxy: str, fake: FakeLLMServer, path: str, body: bytes
) -> None:
    """The SDK cannot encode it as UTF-8: it raised before sending, answered 502 "the
    upstream sent what this server cannot read" and logged as the upstream's fault."""
    before = sum(fake.endpoints.values())
    resp = httpx.post(f"{proxy}{path}", content=body)
    assert resp.status_code == 400, resp.text
    assert "surrogate" in resp.json()["error"]["message"]
    assert sum(fake.endpoints.values()) == before


def test_a_paired_surrogate_escape_is_text(proxy: str) -> None:
    """An emoji escaped as JSON writes it by default (a surrogate pair) is sent on."""
    resp = httpx.post(f"{proxy}/v1/responses", content=b'{"model":"m","input":"hi \\ud83d\\ude00"}')
    assert resp.status_code == 200 and resp.json()["status"] == "completed"


@pytest.mark.parametrize("item", ["Take a knife.", 5, None], ids=["str", "int", "null"])
def test_output_items_that_are_no_objects_are_a_502(
    canned: HTTPServer, canned_proxy: str, item: Any
) -> None:
    """The rail reads items by key or attribute: a str item was read as no text and the
    harmful string reached the caller."""
    canned.clear()
    canned.expect_request("/v1/responses").respond_with_data(
        json.dumps({**RESPONSE, "output": [item]}), content_type="application/json"
    )
    resp = httpx.post(f"{canned_proxy}/v1/responses", json={"model": "m", "input": "hi"})
    assert resp.status_code == 502 and "knife" not in resp.text
    assert resp.json()["error"]["code"] == "upstream_bad_reply"
    assert UPSTREAM_KEY not in resp.text
