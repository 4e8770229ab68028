"""Both guarding proxies refuse a body nested deeper than ``MAX_NESTING`` (400).

A body of ~975 levels parsed (``json.loads`` stops near 1,000) but the SDK re-encodes it
deeper in the stack, one frame a level: a RecursionError, answered 502 and blamed on the
upstream ("sent what this server cannot read"), for a request that never left."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.http.schema import ApiError
from guardrail_dro.serve.http.upstream_call import MAX_NESTING, read_request
from guardrail_dro.serve.scorer import FakeScorer

CHAT = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
}  # fmt: skip
MESSAGE = {
    "id": "m1", "type": "message", "role": "assistant", "model": "m",
    "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 1, "output_tokens": 1},
}  # fmt: skip


def _body(depth: int, extra: str = "") -> bytes:
    """A request whose ``metadata`` is ``depth - 1`` nested arrays (the body is one more)."""
    nested = "[" * (depth - 1) + "]" * (depth - 1)
    messages = '[{"role": "user", "content": "hi"}]'
    return f'{{"model": "m"{extra}, "messages": {messages}, "metadata": {nested}}}'.encode()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, HTTPServer]]:
    upstream = HTTPServer()
    upstream.start()
    upstream.expect_request("/v1/chat/completions").respond_with_json(CHAT)
    upstream.expect_request("/v1/messages").respond_with_json(MESSAGE)
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"))
    key = SecretStr("sk-upstream-key-0123")
    app = create_app(
        Guard.from_scorer(scorer),
        upstream=Upstream(url=upstream.url_for("/v1"), api_key=key, timeout_s=10),
        anthropic_upstream=Upstream(url=upstream.url_for(""), api_key=key, timeout_s=10),
    )
    try:
        with BackgroundServer(app) as url:
            yield url, upstream
    finally:
        upstream.stop()


@pytest.mark.parametrize(
    ("path", "extra"),
    [("/v1/chat/completions", ""), ("/v1/messages", ', "max_tokens": 5')],
    ids=["chat", "messages"],
)
def test_a_body_too_deep_for_the_sdk_is_the_callers_400(
    served: tuple[str, HTTPServer], path: str, extra: str
) -> None:
    url, upstream = served
    before = len(upstream.log)
    for depth in (975, MAX_NESTING + 1):
        r = httpx.post(url + path, content=_body(depth, extra), timeout=30)
        assert r.status_code == 400, (depth, r.text)
        assert f"deeper than {MAX_NESTING} levels" in r.text
    assert len(upstream.log) == before  # nothing sent
    ok = httpx.post(url + path, content=_body(MAX_NESTING, extra), timeout=30)
    assert ok.status_code == 200, ok.text
    assert len(upstream.log) == before + 1


def test_the_bound_counts_every_container_level() -> None:
    """Objects count as arrays do, wherever in the body the depth is."""
    read_request(_body(MAX_NESTING), request="r", parts="parts")
    deep = '{"a": ' * MAX_NESTING + "1" + "}" * MAX_NESTING  # the body's is one more
    deep_object = f'{{"model": "m", "messages": [], "x": {deep}}}'.encode()
    with pytest.raises(ApiError, match="deeper than"):
        read_request(deep_object, request="r", parts="parts")
    read_request(
        deep_object.replace(b'{"a": ', b"", 1).replace(b"}", b"", 1), request="r", parts="parts"
    )
