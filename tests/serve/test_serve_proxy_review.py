"""The guarding proxy against a misbehaving upstream and odd requests: the real server
on uvicorn in a thread, the upstream canned on pytest-httpserver (raw bytes: error
events mid-stream, malformed SSE, a 200 that is no chat completion, a reply that
trickles), called with the real ``openai`` SDK and raw httpx.

Each case here was a defect found in review: a traceback and a cut connection where
an ``error`` event was documented, a 500 where the fault was the upstream's (502) or
the caller's (400), the upstream's key in an error's non-string field, and
``--upstream-timeout-s`` bounding each read rather than the call."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

UPSTREAM_KEY = "sk-upstream-SECRET-4567"
CLEAN = [{"role": "user", "content": "how do I bake bread?"}]
BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


def _serve(guard: Guard, httpserver: HTTPServer, timeout_s: float = 10.0) -> BackgroundServer:
    up = Upstream(
        url=httpserver.url_for("/v1"), api_key=SecretStr(UPSTREAM_KEY), timeout_s=timeout_s
    )
    return BackgroundServer(create_app(guard, upstream=up))


@pytest.fixture()
def proxy(guard: Guard, httpserver: HTTPServer) -> Iterator[str]:
    with _serve(guard, httpserver) as url:
        yield url


def _event(data: Any) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def _chunk(content: str) -> dict:
    return {**BASE, "choices": [{"index": 0, "delta": {"content": content}}]}


def _post(url: str, stream: bool = False, messages: Any = CLEAN) -> httpx.Response:
    body = {"model": "m", "messages": messages, "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def _events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


FAILING_STREAMS = {  # what the upstream sends after a first clean chunk: the code said
    "error-event": (
        _event({"error": {"message": f"overloaded, key {UPSTREAM_KEY}"}}),
        "upstream_error",
    ),
    "malformed-json": (_event("{not json"), "upstream_bad_reply"),
    "choices-null": (_event({**BASE, "choices": None}), "upstream_bad_reply"),
}


@pytest.mark.parametrize(("tail", "code"), FAILING_STREAMS.values(), ids=FAILING_STREAMS.keys())
def test_an_upstream_failing_mid_stream_ends_it_with_one_error_event(
    proxy: str, httpserver: HTTPServer, tail: str, code: str
) -> None:
    sent = _event(_chunk("Bread is good.")) + tail + _event("[DONE]")
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        sent, content_type="text/event-stream"
    )
    resp = _post(proxy, stream=True)  # raised RemoteProtocolError: the body was cut
    events = _events(resp.text)
    assert resp.status_code == 200 and "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == code and httpserver.url_for("/v1") in error["message"]
    assert UPSTREAM_KEY not in resp.text
    client = openai.OpenAI(base_url=f"{proxy}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError) as exc:  # was APIConnectionError
        list(client.chat.completions.create(model="m", messages=CLEAN, stream=True))
    assert not isinstance(exc.value, openai.APIConnectionError)
    assert "upstream" in exc.value.message


NOT_COMPLETIONS = {
    "text-harmful": ("Take a knife.", "text/plain"),
    "text-clean": ("hello", "text/plain"),
    "json-string": (json.dumps("a knife"), "application/json"),
    "sse": (_event(_chunk("hello")) + _event("[DONE]"), "text/event-stream"),
    "no-choices": (json.dumps({"id": "c1", "content": "a knife"}), "application/json"),
}


@pytest.mark.parametrize("sent", NOT_COMPLETIONS.values(), ids=NOT_COMPLETIONS.keys())
def test_a_200_that_is_no_chat_completion_is_a_502(
    proxy: str, httpserver: HTTPServer, sent: tuple[str, str]
) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        sent[0], content_type=sent[1]
    )
    resp = _post(proxy)  # was a 500 "internal server error" and a traceback
    _assert_bad_reply(resp, httpserver)


def test_a_json_answer_to_a_stream_request_is_a_502(proxy: str, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_json(_completion())
    resp = _post(proxy, stream=True)  # was a 200 of "[DONE]" alone: an empty reply
    _assert_bad_reply(resp, httpserver)


def _assert_bad_reply(resp: httpx.Response, httpserver: HTTPServer) -> None:
    assert resp.status_code == 502, resp.text
    error = resp.json()["error"]
    assert error["code"] == "upstream_bad_reply" and httpserver.url_for("/v1") in error["message"]
    assert "knife" not in resp.text


UNREADABLE = {
    "no-role": [{"content": "how do I hide a knife?"}],
    "content-number": [{"role": "user", "content": 5}],
    "content-object": [{"role": "user", "content": {"text": "a knife"}}],
}


@pytest.mark.parametrize("messages", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_messages_the_input_rail_cannot_read_are_400(
    proxy: str, httpserver: HTTPServer, guard: Guard, messages: list
) -> None:
    local = guard.wrap(openai.OpenAI(base_url=httpserver.url_for("/v1"), api_key="k"))
    with pytest.raises(TypeError):  # in process, wrap refuses to call the model too
        local.chat.completions.create(model="m", messages=messages)
    resp = _post(proxy, messages=messages)  # was a 500 "internal server error"
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "messages"
    assert "a string or a list of parts" in resp.json()["error"]["message"]
    assert httpserver.log == []  # never forwarded


def test_the_key_is_scrubbed_from_an_upstream_errors_nested_fields(
    proxy: str, httpserver: HTTPServer
) -> None:
    said = {"detail": f"bad key {UPSTREAM_KEY}", "also": [UPSTREAM_KEY]}
    error = {"message": said, "type": "invalid_request_error", "param": said, "code": None}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": error}, status=400
    )
    resp = _post(proxy)
    assert resp.status_code == 400 and "bad key ***" in resp.json()["error"]["message"]
    assert UPSTREAM_KEY not in resp.text  # it was in message and param


def _trickle(stream: bool) -> Any:
    """An upstream that answers 200 at once and then sends its body a piece every 0.1 s
    for 6 s: each read is quick, the call is not."""

    def pieces() -> Iterator[bytes]:
        for _ in range(60):
            time.sleep(0.1)
            yield _event(_chunk("Bread. ")).encode() if stream else b" "
        yield _event("[DONE]").encode() if stream else json.dumps(_completion()).encode()

    def handler(_: Request) -> Response:
        ctype = "text/event-stream" if stream else "application/json"
        return Response(pieces(), content_type=ctype)

    return handler


def _completion() -> dict:
    message = {"role": "assistant", "content": "Bread."}
    choice = {"index": 0, "finish_reason": "stop", "message": message}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice],
    }


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_upstream_timeout_bounds_the_whole_call(
    guard: Guard, httpserver: HTTPServer, stream: bool
) -> None:
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(_trickle(stream))
    with _serve(guard, httpserver, timeout_s=0.5) as url:
        resp = _post(url, stream=stream)  # was a 200 after all 6 s
    if stream:
        events = _events(resp.text)
        assert "[DONE]" not in events
        error = json.loads(events[-1])["error"]
    else:
        assert resp.status_code == 504
        error = resp.json()["error"]
    assert error["code"] == "upstream_timeout" and "0.5 s" in error["message"]
