"""The guarding proxy of ``POST /v1/responses`` (OpenAI's Responses API), for real: the
moderation server on uvicorn in a thread with ``upstream`` pointing at the shipped fake
OpenAI server (which counts each endpoint it is called on), called with the real
``openai`` SDK's ``responses.create``, JSON and streamed. It answered 404 (no route)
before the proxy served the Responses API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from annotators.testing import FakeLLMServer
from annotators.testing.rules import Fault
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

KEY = "proxy-key-0123"
UPSTREAM_KEY = "sk-upstream-SECRET-4567"
CLEAN_REPLY = "Bread needs flour, water, salt and yeast; knead it well."
HARMFUL_REPLY = "Take a knife."


def _reply(text: str) -> str:
    return HARMFUL_REPLY if "dark" in text else CLEAN_REPLY


def _guard(turns: str = "last") -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED", input_turns=turns))


def _upstream(url: str) -> Upstream:
    return Upstream(url=url, api_key=SecretStr(UPSTREAM_KEY), timeout_s=30.0)


def _serve(guard: Guard, url: str) -> BackgroundServer:
    config = ServeConfig(api_keys=(SecretStr(KEY),), max_body_bytes=20_000)
    return BackgroundServer(create_app(guard, config, upstream=_upstream(url)))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(_reply) as srv:
        yield srv


@pytest.fixture(scope="module")
def proxy(fake: FakeLLMServer) -> Iterator[str]:
    with _serve(_guard(), fake.openai_base_url) as url:
        yield url


@pytest.fixture(scope="module")
def proxy_all(fake: FakeLLMServer) -> Iterator[str]:
    """A proxy whose guard reads every turn (``--input-turns all``)."""
    with _serve(_guard("all"), fake.openai_base_url) as url:
        yield url


def _client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def _called(fake: FakeLLMServer) -> int:
    return fake.endpoints["responses"]


def _text(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_a_clean_request_round_trips(proxy: str, fake: FakeLLMServer) -> None:
    before = _called(fake)
    resp = _client(proxy).responses.create(model="m", input="how do I bake bread?", top_p=0.5)
    assert resp.output_text == CLEAN_REPLY and resp.status == "completed"
    assert resp.usage is not None and resp.usage.output_tokens > 0
    assert _called(fake) == before + 1
    assert fake.requests[-1]["body"]["top_p"] == 0.5  # passed through
    assert fake.received[-1]["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_clean_stream_round_trips_with_its_usage(proxy: str) -> None:
    with _client(proxy).responses.create(model="m", input="bake bread", stream=True) as stream:
        events = list(stream)
    assert _text(events) == CLEAN_REPLY
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.usage.total_tokens > 0
    raw = httpx.post(
        f"{proxy}/v1/responses",
        json={"model": "m", "input": "bake bread", "stream": True},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert raw.text.startswith("event: response.created\ndata: {")  # as OpenAI writes them
    assert "[DONE]" not in raw.text


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_harmful_input_never_reaches_the_upstream(
    proxy: str, fake: FakeLLMServer, stream: bool
) -> None:
    before = _called(fake)
    items = [{"role": "user", "content": [{"type": "input_text", "text": "hide a knife"}]}]
    client = _client(proxy)
    if stream:
        events = list(client.responses.create(model="m", input=items, stream=True))
        assert _text(events) == "REFUSED"
        end = events[-1].response
    else:
        end = client.responses.create(model="m", input=items)
    assert end.output_text == "REFUSED" and end.status == "incomplete"
    assert end.incomplete_details.reason == "content_filter"
    assert _called(fake) == before


def test_a_harmful_reply_is_replaced(proxy: str, fake: FakeLLMServer) -> None:
    before = _called(fake)
    resp = _client(proxy).responses.create(model="m", input="tell me something dark")
    assert resp.output_text == "REFUSED" and resp.status == "incomplete"
    assert resp.incomplete_details.reason == "content_filter"
    assert resp.usage.output_tokens > 0  # the upstream's usage is kept
    assert _called(fake) == before + 1  # it was asked


def test_a_harmful_stream_is_cut_before_the_harm(proxy: str) -> None:
    client = _client(proxy)
    events = list(client.responses.create(model="m", input="something dark", stream=True))
    assert "knife" not in _text(events) and _text(events).endswith("REFUSED")
    end = events[-1]
    assert end.type == "response.incomplete"
    assert end.response.incomplete_details.reason == "content_filter"
    assert end.response.usage is not None  # the upstream's, kept
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"not json", None),
        (b"[1]", None),
        ({"model": "m", "input": [["hi"]]}, "input"),
        ({"model": "m", "input": ["hi"]}, "input"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": [{"role": "user", "content": 5}]}, "input"),
        ({"input": "hi"}, "model"),
        ({"model": "m", "input": "hi", "stream": "yes"}, "stream"),
        ({"model": "m", "input": "hi", "background": True}, "background"),
        ({"model": "m", "input": "hi", "prompt": {"id": "p", "variables": [1]}}, "prompt"),
    ],
    ids=[
        "not-json", "not-object", "list-of-lists", "list-of-str", "input-int",
        "content-int", "no-model", "stream-str", "background", "prompt-variables-list",
    ],
)  # fmt: skip
def test_bad_requests_are_400_naming_the_field(
    proxy: str, fake: FakeLLMServer, body: Any, param: str | None
) -> None:
    before = _called(fake)
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    auth = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    resp = httpx.post(f"{proxy}/v1/responses", headers=auth, **kw)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    assert _called(fake) == before
    if param == "background":
        assert "GET /v1/responses/{id}" in resp.json()["error"]["message"]


def test_a_body_nested_too_deep_is_400(proxy: str) -> None:
    deep = {"model": "m", "input": "hi", "metadata": json.loads("[" * 200 + "]" * 200)}
    auth = {"authorization": f"Bearer {KEY}"}
    resp = httpx.post(f"{proxy}/v1/responses", json=deep, headers=auth)
    assert resp.status_code == 400 and "deeper than" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"tools": {"type": "function"}}, "tools"), ({"instructions": 5}, "instructions")],
    ids=["tools-object", "instructions-int"],
)
def test_under_all_unreadable_tools_and_instructions_are_400(
    proxy_all: str, fake: FakeLLMServer, extra: dict, param: str
) -> None:
    before = _called(fake)
    body = {"model": "m", "input": "hi", **extra}
    resp = httpx.post(
        f"{proxy_all}/v1/responses", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    assert _called(fake) == before


def test_under_all_the_instructions_are_checked(proxy_all: str, fake: FakeLLMServer) -> None:
    before = _called(fake)
    resp = _client(proxy_all).responses.create(
        model="m", input="hi", instructions="answer with a knife"
    )
    assert resp.output_text == "REFUSED" and _called(fake) == before


def test_without_an_upstream_the_route_says_the_proxy_is_off() -> None:
    with BackgroundServer(create_app(_guard())) as url:
        resp = httpx.post(f"{url}/v1/responses", json={"model": "m", "input": "hi"})
    assert resp.status_code == 404 and "--upstream" in resp.json()["error"]["message"]


def test_auth_applies_and_the_upstream_is_not_called(proxy: str, fake: FakeLLMServer) -> None:
    before = _called(fake)
    with pytest.raises(openai.AuthenticationError):
        _client(proxy, "wrong").responses.create(model="m", input="hi")
    bare = httpx.post(f"{proxy}/v1/responses", json={"model": "m", "input": "hi"})
    assert bare.status_code == 401 and _called(fake) == before


def test_metrics_count_the_route_and_refusals_by_rail(proxy: str) -> None:
    client = _client(proxy)
    client.responses.create(model="m", input="hide a knife")
    client.responses.create(model="m", input="something dark")
    text = httpx.get(f"{proxy}/metrics").text
    assert 'guardrail_requests_total{path="/v1/responses",status="200"}' in text
    assert 'guardrail_rail_refusals_total{path="/v1/responses",rail="input"}' in text
    assert 'guardrail_rail_refusals_total{path="/v1/responses",rail="output"}' in text


def test_an_upstream_4xx_passes_through(proxy: str, fake: FakeLLMServer) -> None:
    fake.add_fault(Fault(kind="content_filter", match="pass me"))
    with pytest.raises(openai.BadRequestError) as exc:
        _client(proxy).responses.create(model="m", input="pass me through")
    assert exc.value.status_code == 400 and exc.value.code == "content_filter"


def test_a_failure_mid_stream_is_a_responses_error_event(httpserver: HTTPServer) -> None:
    created = {
        "type": "response.created",
        "sequence_number": 0,
        "response": {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
                     "output": [], "status": "in_progress", "parallel_tool_calls": True,
                     "tool_choice": "auto", "tools": []},
    }  # fmt: skip
    body = f"event: response.created\ndata: {json.dumps(created)}\n\ndata: {{not json\n\n"
    httpserver.expect_request("/v1/responses").respond_with_data(
        body, content_type="text/event-stream"
    )
    with _serve(_guard(), httpserver.url_for("/v1")) as url:
        events = list(_client(url).responses.create(model="m", input="hi", stream=True))
    assert [e.type for e in events] == ["response.created", "error"]
    error = events[-1]
    assert error.sequence_number == 1 and error.code == "upstream_bad_reply"
    assert httpserver.url_for("/v1") in error.message and UPSTREAM_KEY not in error.message


def test_an_upstream_error_event_reaches_the_caller_without_the_key(
    httpserver: HTTPServer,
) -> None:
    said = {"type": "error", "code": "server_error", "message": f"bad key {UPSTREAM_KEY}",
            "param": None, "sequence_number": 0}  # fmt: skip
    httpserver.expect_request("/v1/responses").respond_with_data(
        f"event: error\ndata: {json.dumps(said)}\n\n", content_type="text/event-stream"
    )
    with _serve(_guard(), httpserver.url_for("/v1")) as url:
        events = list(_client(url).responses.create(model="m", input="hi", stream=True))
    assert [(e.type, e.code, e.message) for e in events] == [
        ("error", "server_error", "bad key ***")
    ]


def test_a_harmful_prompt_variable_never_reaches_the_upstream(
    proxy: str, fake: FakeLLMServer
) -> None:
    """A template's variables are the caller's words, read under every scope."""
    before = _called(fake)
    prompt = {"id": "pmpt_1", "variables": {"topic": "hide a knife"}}
    resp = _client(proxy).responses.create(model="m", input="hi", prompt=prompt)
    assert resp.output_text == "REFUSED" and _called(fake) == before
