"""A proxied rail decision that is degraded (here a text past ``max_chars``, decided by
the fail-closed policy) counts in ``guardrail_degraded_total``, as the moderation
route's degraded texts do: it was counted as a refusal only, so a failing model behind
a proxy looked like harmful traffic. The app on uvicorn, the shipped fake upstream, the
real openai SDK."""

from __future__ import annotations

import httpx
import openai
from pydantic import SecretStr

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer


def _degraded_total(url: str) -> float:
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return float(next(x for x in lines if x.startswith("guardrail_degraded_total ")).split()[1])


def test_a_degraded_rail_decision_counts_as_degraded() -> None:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    guard = Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED", max_chars=40))
    with FakeLLMServer(lambda text: "ok") as fake:
        up = Upstream(url=fake.openai_base_url, api_key=SecretStr("sk-up-0123"), timeout_s=30)
        with BackgroundServer(create_app(guard, ServeConfig(max_chars=40), upstream=up)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "how do I hide a knife?"}]
            )
            assert _degraded_total(url) == 0.0  # a refusal the model decided
            long = [{"role": "user", "content": "bread " * 20}]  # past max_chars: not scored
            reply = client.chat.completions.create(model="m", messages=long)  # type: ignore[arg-type]
            assert reply.choices[0].message.content == "REFUSED"
            assert _degraded_total(url) == 1.0
