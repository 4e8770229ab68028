"""The chat proxy's OpenAI SDK client reads ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``
from the server's environment; they mean something only to OpenAI's own API, and were
sent to whatever ``--upstream`` was (a local vLLM, a third party). For real: the server
on uvicorn, its upstream the shipped fake recording each request's headers, the caller
the real ``openai`` SDK."""

from __future__ import annotations

import openai
import pytest
from pydantic import SecretStr

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.proxy import ChatProxy, Upstream, openai_account
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

from .forwarding_helpers import RecordingFake

KEY = "proxy-key-0123"
ORG, PROJECT = "org-OPERATOR-1", "proj-OPERATOR-2"
CLEAN = [{"role": "user", "content": "how do I bake bread?"}]


@pytest.fixture
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED"))


@pytest.fixture
def operator_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", ORG)
    monkeypatch.setenv("OPENAI_PROJECT_ID", PROJECT)


def _ask(guard: Guard, fake: RecordingFake, forward: tuple[str, ...] = (), **client: str) -> dict:
    upstream = Upstream(
        url=fake.openai_base_url, api_key=SecretStr("sk-up"), forward_headers=forward
    )
    app = create_app(guard, ServeConfig(api_keys=(SecretStr(KEY),)), upstream=upstream)
    with BackgroundServer(app) as url:
        caller = openai.OpenAI(
            base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=30.0, **client
        )
        reply = caller.chat.completions.create(model="m", messages=CLEAN)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "Bread needs flour."
    chats = [s for s in fake.seen if s["path"].endswith("/chat/completions")]
    assert len(chats) == 1
    return chats[0]["headers"]


@pytest.mark.usefixtures("operator_ids")
def test_the_operators_openai_ids_never_reach_another_upstream(guard: Guard) -> None:
    with RecordingFake() as fake:
        headers = _ask(guard, fake)
    assert "openai-organization" not in headers
    assert "openai-project" not in headers
    assert ORG not in str(headers) and PROJECT not in str(headers)


@pytest.mark.usefixtures("operator_ids")
def test_a_callers_own_organization_still_travels_where_forwarded(guard: Guard) -> None:
    with RecordingFake() as fake:
        headers = _ask(guard, fake, ("openai-organization",), organization="org-caller-9")
    assert headers["openai-organization"] == "org-caller-9"
    assert "openai-project" not in headers


@pytest.mark.usefixtures("operator_ids")
def test_openais_own_api_keeps_the_operators_ids(guard: Guard) -> None:
    """No network here: the client built for api.openai.com is read, not called."""
    up = Upstream(url="https://api.openai.com/v1", api_key=SecretStr("sk-up"))
    sent = ChatProxy(guard, up)._client.default_headers
    assert sent["OpenAI-Organization"] == ORG
    assert sent["OpenAI-Project"] == PROJECT
    other = ChatProxy(guard, Upstream(url="http://127.0.0.1:9/v1", api_key=SecretStr("k")))
    assert isinstance(other._client.default_headers["OpenAI-Organization"], openai.Omit)


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://api.openai.com/v1", True),
        ("https://API.OpenAI.com/v1/", True),
        ("https://openrouter.ai/api/v1", False),
        ("http://127.0.0.1:8000/v1", False),
        ("https://api.openai.com.evil.example/v1", False),
        ("https://my.openai.azure.com/openai/v1", False),
    ],
)
def test_only_openais_api_is_an_openai_account(url: str, kept: bool) -> None:
    assert openai_account(url) is kept
