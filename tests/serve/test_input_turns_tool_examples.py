"""Under ``input_turns="all"`` the input rail reads an Anthropic tool's
``input_examples`` (``ToolParam`` and the server tools that take them: ``memory``,
``bash``, ``str_replace_based_edit_tool``): example inputs the model reads beside the
schema, so a caller can hide a request there as well. Before, only the name,
description and ``input_schema`` were read, and a harmful example reached the model
unchecked. Real SDK over real HTTP to the shipped fake server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.rails import wrap

from .input_turns_helpers import HARM, REFUSAL, SAFE_REPLY, anthropic_text, make_guard

ASK = [{"role": "user", "content": "what is the weather in Paris?"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}

TOOLS: dict[str, dict[str, Any]] = {
    "custom tool": {
        "name": "get_weather",
        "description": "Weather",
        "input_schema": SCHEMA,
        "input_examples": [{"city": "Paris"}, {"city": HARM}],
    },
    "memory tool": {
        "type": "memory_20250818",
        "name": "memory",
        "input_examples": [{"command": "view", "path": HARM}],
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: SAFE_REPLY) as srv:
        yield srv


@pytest.mark.parametrize("name", list(TOOLS))
def test_check_input_reads_input_examples_under_all_only(name: str) -> None:
    tools = [TOOLS[name]]
    assert not make_guard("all").check_input(ASK, tools=tools).allowed
    assert make_guard("last").check_input(ASK, tools=tools).allowed


def test_anthropic_wrap_refuses_a_harmful_input_example(server: FakeLLMServer) -> None:
    def client(turns: str) -> Any:
        sdk = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0)
        return wrap(sdk, make_guard(turns))

    sent = {"model": "m", "max_tokens": 9, "messages": ASK, "tools": [TOOLS["custom tool"]]}
    before = len(server.requests)
    assert anthropic_text(client("all").messages.create(**sent)) == REFUSAL
    assert len(server.requests) == before  # never reached the model
    assert anthropic_text(client("last").messages.create(**sent)) == SAFE_REPLY
