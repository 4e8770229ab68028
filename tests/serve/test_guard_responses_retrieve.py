"""``responses.retrieve`` on a wrapped client has the output rail on what it fetches.

The API stores a Response by default (``store=True``), so a reply the output rail had
replaced in ``create`` came back, as the upstream stored it, from ``retrieve``: a read
the coverage table passed untouched. A streamed retrieve (a background response's
events, from the middle of a reply) is refused. The real openai SDK over HTTP to the
shipped fake server, which now keeps the Responses it made."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from annotators.testing import FakeLLMServer
from guardrail_dro.errors import UnguardedPathError
from guardrail_dro.serve.rails import wrap

from .guard_helpers import Calibrated
from .responses_helpers import REFUSAL, refusing_guard, replying_server


@pytest.fixture(scope="module")
def cal() -> Calibrated:
    return refusing_guard()


@pytest.fixture(scope="module")
def server(cal: Calibrated) -> Iterator[FakeLLMServer]:
    with replying_server(cal) as srv:
        yield srv


def test_a_stored_harmful_reply_is_replaced_when_retrieved(
    cal: Calibrated, server: FakeLLMServer
) -> None:
    client = wrap(openai.OpenAI(base_url=server.openai_base_url, api_key="k"), cal.guard)
    made = client.responses.create(model="m", input="toxic")
    assert made.output_text == REFUSAL  # replaced in create; stored upstream as made
    again = client.responses.retrieve(made.id)
    assert again.output_text == REFUSAL and again.status == "incomplete"
    assert cal.target in client.unguarded.responses.retrieve(made.id).output_text
    clean = client.responses.create(model="m", input="clean")
    assert client.responses.retrieve(clean.id).output_text == clean.output_text
    with pytest.raises(UnguardedPathError, match="stream=True"):
        client.responses.retrieve(made.id, stream=True)


def test_an_async_retrieve_is_checked(cal: Calibrated, server: FakeLLMServer) -> None:
    async def run() -> str:
        plain = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k")
        made = await plain.responses.create(model="m", input="toxic")
        got = await wrap(plain, cal.guard).responses.retrieve(made.id)
        return got.output_text

    assert asyncio.run(run()) == REFUSAL


def test_the_raw_views_of_retrieve_are_refused(cal: Calibrated, server: FakeLLMServer) -> None:
    """A raw twin of a guarded method reads past the rail: refused, as create's are."""
    client = wrap(openai.OpenAI(base_url=server.openai_base_url, api_key="k"), cal.guard)
    made = client.unguarded.responses.create(model="m", input="toxic")
    for view in (client.responses.with_raw_response, client.responses.with_streaming_response):
        with pytest.raises(UnguardedPathError, match="retrieve"):
            view.retrieve(made.id)
