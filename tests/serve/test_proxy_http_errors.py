"""The chat-completions proxy classifies its SDK's own HTTP errors.

The openai SDK (3.x) runs on ``httpx2`` (``DefaultAsyncHttpxClient`` is an
``httpx2.AsyncClient``, and ``UpstreamCall`` builds its pool with ``httpx2.Limits``),
but ``ChatProxy`` matched timeouts and transport errors against ``httpx``'s classes,
which nothing it calls raises: a raw ``httpx2`` read timeout was "unreadable answer"
(502 ``upstream_bad_reply``, logged with a traceback) where the messages proxy, and
the README, say 504, and a dropped connection was a bad reply, not unreachable.
"""

from __future__ import annotations

import httpx2
import pytest
from pydantic import SecretStr

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http.proxy import ChatProxy, Upstream
from guardrail_dro.serve.scorer import FakeScorer


@pytest.fixture()
def proxy() -> ChatProxy:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"))
    up = Upstream(url="http://127.0.0.1:9/v1", api_key=SecretStr("sk-x"), timeout_s=5)
    return ChatProxy(Guard.from_scorer(scorer), up)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (httpx2.ReadTimeout("timed out"), 504, "upstream_timeout"),
        (httpx2.RemoteProtocolError("peer closed connection"), 502, "upstream_unreachable"),
        (httpx2.ReadError("connection reset"), 502, "upstream_unreachable"),
    ],
    ids=["read-timeout", "cut-mid-body", "reset"],
)
def test_httpx2_errors_are_the_upstreams(
    proxy: ChatProxy, exc: Exception, status: int, code: str
) -> None:
    err = proxy._upstream_error(exc)
    assert (err.status, err.code) == (status, code), err.message


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("x", "max_tokens: x must be an integer"),  # a placeholder: left as written
        ("sk-upstream-SECRET-4567", "bad key *** in max_tokens"),  # a real key: scrubbed
    ],
    ids=["placeholder", "real"],
)
def test_only_a_real_key_is_scrubbed(key: str, said: str) -> None:
    """A key of ``x`` (an upstream without auth: any value) garbled every message it
    scrubbed (``ma***_tokens``); a key of API length is still replaced everywhere."""
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"))
    up = Upstream(url="http://127.0.0.1:9/v1", api_key=SecretStr(key), timeout_s=5)
    proxy = ChatProxy(Guard.from_scorer(scorer), up)
    text = said.replace("***", key)
    assert proxy._scrubbed({"message": [text]}) == {"message": [said]}
