"""A Responses stream whose text arrives outside the deltas the rail reads, for real: the
openai SDK through ``guard.wrap`` (and once the ``POST /v1/responses`` proxy), the
upstream raw SSE on pytest-httpserver.

Each case was found in review: text sent only in a message's ``output_item.done`` or
the end event's ``output``, a ``.done`` event whose text differs from its deltas, an
audio transcript's deltas, and an output item of a type the rail did not know (stream
and not) reached the caller unchecked. OpenAI repeats the deltas' text in those events,
so a clean stream must cost no more model windows than before."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.rails import wrap
from guardrail_dro.serve.scorer import FakeScorer

HARM = "Take a knife."
RESP = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m", "output": [],
        "status": "in_progress", "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": []}  # fmt: skip
AT = {"item_id": "msg_1", "output_index": 0, "content_index": 0}


def _msg(text: str) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip


def _sse(*events: dict[str, Any]) -> str:
    numbered = [{**e, "sequence_number": n} for n, e in enumerate(events)]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in numbered)


def _end(*output: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.completed",
            "response": {**RESP, "status": "completed", "output": list(output)}}  # fmt: skip


CREATED = {"type": "response.created", "response": RESP}
ADDED = {"type": "response.output_item.added", "output_index": 0,
         "item": {**_msg(""), "content": [], "status": "in_progress"}}  # fmt: skip
WEIRD = {"id": "w_1", "type": "weird_call", "status": "completed", "note": HARM}

STREAMS = {
    "item-done-only": _sse(CREATED, ADDED,
                           {"type": "response.output_item.done", "output_index": 0,
                            "item": _msg(HARM)}, _end(_msg(HARM))),
    "end-only": _sse(CREATED, _end(_msg(HARM))),
    "text-done-differs": _sse(
        CREATED, ADDED,
        {"type": "response.output_text.delta", **AT, "delta": "Hello.", "logprobs": []},
        {"type": "response.output_text.done", **AT, "text": HARM, "logprobs": []},
        _end(_msg("Hello."))),
    "part-done-differs": _sse(
        CREATED, ADDED,
        {"type": "response.refusal.delta", **AT, "delta": "No."},
        {"type": "response.content_part.done", **AT,
         "part": {"type": "refusal", "refusal": HARM}}),
    "audio-transcript": _sse(
        CREATED, {"type": "response.audio.transcript.delta", "delta": HARM}, _end()),
    "unknown-item": _sse(
        CREATED, {"type": "response.output_item.added", "output_index": 0,
                  "item": {**WEIRD, "note": "", "status": "in_progress"}},
        {"type": "response.output_item.done", "output_index": 0, "item": WEIRD}, _end(WEIRD)),
}  # fmt: skip


class Counted:
    """A keyword scorer that counts the windows it scores."""

    def __init__(self) -> None:
        self.windows = 0

    def __call__(self, text: str) -> dict[str, float]:
        self.windows += 1
        return {"toxic": 0.9} if "knife" in text.lower() else {}


@pytest.fixture
def count() -> Counted:
    return Counted()


@pytest.fixture
def guard(count: Counted) -> Guard:
    scorer = FakeScorer(count, labels=("safe", "toxic"))
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.fixture(scope="module")
def canned(make_httpserver: HTTPServer) -> HTTPServer:
    return make_httpserver


def _serve(canned: HTTPServer, body: str, content_type: str = "text/event-stream") -> None:
    canned.clear()
    canned.expect_request("/v1/responses").respond_with_data(body, content_type=content_type)


def _client(guard: Guard, url: str) -> Any:
    return wrap(openai.OpenAI(base_url=url, api_key="sk-test", max_retries=0), guard)


def _refused(events: list[Any]) -> None:
    dumped = json.dumps([e.model_dump(mode="json") for e in events])
    assert "knife" not in dumped.lower()
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output_text == "REFUSED"


@pytest.mark.parametrize("name", list(STREAMS))
def test_text_outside_the_deltas_is_checked(guard: Guard, canned: HTTPServer, name: str) -> None:
    _serve(canned, STREAMS[name])
    stream = _client(guard, canned.url_for("/v1")).responses.create(
        model="m", input="hi", stream=True
    )
    _refused(list(stream))


@pytest.mark.asyncio
async def test_async_end_only_is_checked(guard: Guard, canned: HTTPServer) -> None:
    _serve(canned, STREAMS["end-only"])
    client = wrap(openai.AsyncOpenAI(base_url=canned.url_for("/v1"), api_key="sk-test"), guard)
    _refused([e async for e in await client.responses.create(model="m", input="hi", stream=True)])


def test_an_unknown_item_type_is_read_unstreamed(guard: Guard, canned: HTTPServer) -> None:
    body = json.dumps({**RESP, "status": "completed", "output": [WEIRD]})
    _serve(canned, body, "application/json")
    resp = _client(guard, canned.url_for("/v1")).responses.create(model="m", input="hi")
    assert "knife" not in resp.model_dump_json().lower()
    assert resp.output_text == "REFUSED" and resp.status == "incomplete"


def test_the_proxy_checks_an_item_sent_only_whole(guard: Guard, canned: HTTPServer) -> None:
    _serve(canned, STREAMS["item-done-only"])
    up = Upstream(url=canned.url_for("/v1"), api_key=SecretStr("sk-up"), timeout_s=10.0)
    with BackgroundServer(create_app(guard, upstream=up)) as url:
        r = httpx.post(f"{url}/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    assert r.status_code == 200 and "knife" not in r.text.lower()
    assert "REFUSED" in r.text and "response.incomplete" in r.text


def _same(ev: Any) -> dict[str, Any]:
    """An event's dump but for its response's time."""
    dump = ev.model_dump()
    if "response" in dump:
        dump["response"] = {k: v for k, v in dump["response"].items()
                            if k != "created_at"}  # fmt: skip
    return dump


REPLY = (
    "Bread needs flour, water, salt and yeast. Mix them and knead the dough well. "
    "Let it rise for an hour in a warm place, then shape the loaf gently. "
    "Bake it at two hundred degrees until the crust is brown and it sounds hollow."
)


def test_a_clean_stream_is_unchanged_and_costs_no_more(guard: Guard, count: Counted) -> None:
    """Its done events and end repeat its deltas: no window more than the deltas' own
    (7, counted before the done events were read)."""
    with FakeLLMServer(lambda text: REPLY) as one, FakeLLMServer(lambda text: REPLY) as two:
        plain = _client(guard, one.openai_base_url).unguarded.responses.create
        guarded = _client(guard, two.openai_base_url).responses.create
        plain, guarded = (list(c(model="m", input="hi", stream=True)) for c in (plain, guarded))
    assert [_same(e) for e in guarded] == [_same(e) for e in plain]
    assert guarded[-1].response.output_text == REPLY
    assert count.windows == 7
