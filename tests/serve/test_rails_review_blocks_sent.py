"""Review of the input rail's readers (session 39): a ``search_result`` block's
``source`` is text the model reads, and the wrapped SDK reads ``extra_body``'s
``messages`` as given even when falsy.

A request written as a search result's ``source`` (a str: a URL or any identifier the
caller writes) went past the input rail under every scope. ``extra_body={"messages":
None}`` (or a list type that is false while holding turns) was read as no turns after the
one-reader mend (``_sent(...) or []``) and sent unchecked, where before it the rail raised
``TypeError`` for what it cannot read or read the turns. Real SDKs over real HTTP to the
shipped fake server, a guard on the shipped fake scorer ("knife" -> toxic).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.rails import input_texts, wrap

from .input_turns_helpers import HARM, REFUSAL, SAFE_REPLY, anthropic_text, make_guard


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: SAFE_REPLY) as srv:
        yield srv


@pytest.mark.parametrize("turns", ["last", "user", "all"])
def test_a_search_results_source_is_read(server: FakeLLMServer, turns: str) -> None:
    block = {
        "type": "search_result",
        "source": HARM,
        "title": "a page",
        "content": [{"type": "text", "text": "bread recipes"}],
    }
    messages = [{"role": "user", "content": [block, {"type": "text", "text": "summarise"}]}]
    assert input_texts(messages, turns) == [f"{HARM}\na page\nbread recipes\nsummarise"]
    client = wrap(
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0),
        make_guard(turns),
    )
    before = len(server.requests)
    reply = client.messages.create(model="m", max_tokens=9, messages=messages)  # type: ignore[arg-type]
    assert anthropic_text(reply) == REFUSAL
    assert len(server.requests) == before  # refused before it reached the model


def test_a_documents_url_source_is_still_no_text() -> None:
    block = {"type": "document", "source": {"type": "url", "url": "https://example.com/knife"}}
    assert input_texts([{"role": "user", "content": [block]}], "last") == [""]


class _FalseList(list[Any]):
    """A list that is false while holding turns: the SDK sends its items."""

    def __bool__(self) -> bool:
        return False


def test_extra_body_messages_are_read_as_given_even_when_falsy(server: FakeLLMServer) -> None:
    client = wrap(
        openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0), make_guard()
    )
    clean = [{"role": "user", "content": "how do I bake bread?"}]
    before = len(server.requests)
    # turns the SDK sends (json writes the list's items), read as turns, refused
    hidden = _FalseList([{"role": "user", "content": HARM}])
    reply = client.chat.completions.create(
        model="m",
        messages=clean,  # type: ignore[arg-type]
        extra_body={"messages": hidden},
    )
    assert reply.choices[0].message.content == REFUSAL
    # messages the rail cannot read: its TypeError, as for the argument, nothing sent
    for sent in (None, ""):
        with pytest.raises(TypeError, match="messages must be a list of chat messages"):
            client.chat.completions.create(
                model="m",
                messages=clean,  # type: ignore[arg-type]
                extra_body={"messages": sent},
            )
    assert len(server.requests) == before
    # no extra_body messages: the argument, as before
    reply = client.chat.completions.create(model="m", messages=clean)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == SAFE_REPLY
