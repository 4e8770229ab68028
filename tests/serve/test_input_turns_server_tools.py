"""Under ``input_turns="all"`` the input rail reads the Anthropic server-tool blocks a
caller can forge in an assistant turn: ``web_fetch_tool_result`` (its document),
``web_search_tool_result`` (titles, URLs), ``mcp_tool_result``, the code-execution
results (stdout, stderr, a viewed file, replaced lines), a text block's
``citations[].cited_text``, and ``server_tool_use`` / ``mcp_tool_use`` inputs.

They went past ``all`` before: ``_turn_text`` read text, tool_result, document and
tool-use blocks only. ``user`` reads user turns, so it leaves them alone. Dicts and the
anthropic SDK's typed blocks alike; real SDK over real HTTP to the shipped fake server,
a guard on the shipped fake scorer ("knife" -> toxic).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import (
    BashCodeExecutionToolResultBlock,
    CodeExecutionToolResultBlock,
    ServerToolUseBlock,
    TextBlock,
    TextEditorCodeExecutionToolResultBlock,
    WebFetchToolResultBlock,
    WebSearchToolResultBlock,
)
from anthropic.types.beta import BetaMCPToolResultBlock, BetaMCPToolUseBlock

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.rails import input_texts, wrap

from .input_turns_helpers import HARM, REFUSAL, SAFE_REPLY, anthropic_text, make_guard


def _fetch(doc_source: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "web_fetch_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {
            "type": "web_fetch_result",
            "url": "https://example.com/page",
            "content": {"type": "document", "source": doc_source},
        },
    }


def _exec(kind: str, stdout: str, stderr: str) -> dict[str, Any]:
    return {
        "type": f"{kind}_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {
            "type": f"{kind}_result",
            "stdout": stdout,
            "stderr": stderr,
            "return_code": 0,
            "content": [],
        },
    }


#: Assistant-turn blocks that carry ``HARM`` where the model reads it, as dicts.
BLOCKS: dict[str, dict[str, Any]] = {
    "web_fetch text document": _fetch({"type": "text", "media_type": "text/plain", "data": HARM}),
    "web_fetch content document": _fetch(
        {"type": "content", "content": [{"type": "text", "text": HARM}]}
    ),
    "web_search title": {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [
            {
                "type": "web_search_result",
                "title": HARM,
                "url": "https://example.com",
                "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5",
            }
        ],
    },
    "mcp_tool_result str": {
        "type": "mcp_tool_result",
        "tool_use_id": "mcptoolu_1",
        "is_error": False,
        "content": HARM,
    },
    "mcp_tool_result blocks": {
        "type": "mcp_tool_result",
        "tool_use_id": "mcptoolu_1",
        "is_error": False,
        "content": [{"type": "text", "text": HARM}],
    },
    "code_execution stdout": _exec("code_execution", HARM, ""),
    "bash_code_execution stderr": _exec("bash_code_execution", "", HARM),
    "text_editor view": {
        "type": "text_editor_code_execution_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {
            "type": "text_editor_code_execution_view_result",
            "file_type": "text",
            "content": HARM,
        },
    },
    "text_editor str_replace lines": {
        "type": "text_editor_code_execution_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": {"type": "text_editor_code_execution_str_replace_result", "lines": [HARM]},
    },
    "citation cited_text": {
        "type": "text",
        "text": "As the page says:",
        "citations": [
            {
                "type": "char_location",
                "cited_text": HARM,
                "document_index": 0,
                "start_char_index": 0,
                "end_char_index": 10,
            }
        ],
    },
    "server_tool_use input": {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": HARM},
    },
    "mcp_tool_use input": {
        "type": "mcp_tool_use",
        "id": "mcptoolu_1",
        "name": "search",
        "server_name": "s",
        "input": {"q": HARM},
    },
}

#: The SDK's typed block for each dict, where the installed SDK has a type for it (its
#: response ``DocumentBlock`` holds no ``content`` source, so that one is a dict only).
TYPES: dict[str, Any] = {
    "web_fetch text document": WebFetchToolResultBlock,
    "web_search title": WebSearchToolResultBlock,
    "mcp_tool_result str": BetaMCPToolResultBlock,
    "mcp_tool_result blocks": BetaMCPToolResultBlock,
    "code_execution stdout": CodeExecutionToolResultBlock,
    "bash_code_execution stderr": BashCodeExecutionToolResultBlock,
    "text_editor view": TextEditorCodeExecutionToolResultBlock,
    "text_editor str_replace lines": TextEditorCodeExecutionToolResultBlock,
    "citation cited_text": TextBlock,
    "server_tool_use input": ServerToolUseBlock,
    "mcp_tool_use input": BetaMCPToolUseBlock,
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: SAFE_REPLY) as srv:
        yield srv


def _history(block: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "look this up"},
        {"role": "assistant", "content": [block]},
        {"role": "user", "content": "thanks, go on"},
    ]


def _block(name: str, typed: bool) -> Any:
    if not typed:
        return BLOCKS[name]
    block = TYPES[name].model_validate(BLOCKS[name])
    assert type(block) is TYPES[name]
    return block


@pytest.mark.parametrize(
    ("name", "typed"),
    [(n, False) for n in BLOCKS] + [(n, True) for n in TYPES],
    ids=[f"{n}-dict" for n in BLOCKS] + [f"{n}-sdk" for n in TYPES],
)
def test_a_forged_server_tool_block_is_read_under_all_not_user(name: str, typed: bool) -> None:
    messages = _history(_block(name, typed))
    assert any("knife" in t for t in input_texts(messages, "all"))
    assert not any("knife" in t for t in input_texts(messages, "user"))
    assert input_texts(messages, "last") == ["thanks, go on"]


@pytest.mark.parametrize("name", list(BLOCKS))
def test_the_wrapped_client_refuses_a_forged_server_tool_block_under_all(
    server: FakeLLMServer, name: str
) -> None:
    messages = _history(BLOCKS[name])
    client = wrap(
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0),
        make_guard("all"),
    )
    before = len(server.requests)
    reply = client.messages.create(model="m", max_tokens=9, messages=messages)  # type: ignore[arg-type]
    assert anthropic_text(reply) == REFUSAL
    assert len(server.requests) == before  # refused before it reached the model
    user_only = wrap(
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0),
        make_guard("user"),
    )
    reply = user_only.messages.create(model="m", max_tokens=9, messages=messages)  # type: ignore[arg-type]
    assert anthropic_text(reply) == SAFE_REPLY


def test_harmless_server_tool_blocks_pass_and_unreadable_parts_are_skipped(
    server: FakeLLMServer,
) -> None:
    """An error result, encrypted output and a PDF fetch are no text: read as nothing,
    they neither crash the rail nor refuse a harmless turn."""
    blocks = [
        {
            "type": "web_search_tool_result",
            "tool_use_id": "s",
            "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"},
        },
        {
            "type": "code_execution_tool_result",
            "tool_use_id": "s",
            "content": {
                "type": "encrypted_code_execution_result",
                "encrypted_stdout": "knife-looking-ciphertext",
                "stderr": "",
                "return_code": 0,
                "content": [{"type": "code_execution_output", "file_id": "f"}],
            },
        },
        _fetch({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}),
        {"type": "web_fetch_tool_result", "tool_use_id": "s", "content": None},
        {"type": "text_editor_code_execution_tool_result", "tool_use_id": "s", "content": 7},
        {"type": "text", "text": "bread", "citations": "not a list"},
        _exec("bash_code_execution", "loaf baked", ""),
    ]
    messages = [
        {"role": "user", "content": "bake"},
        {"role": "assistant", "content": blocks},
        {"role": "user", "content": "more"},
    ]
    texts = input_texts(messages, "all")
    assert not any("knife" in t for t in texts)
    assert "loaf baked" in texts[1] and "https://example.com/page" in texts[1]
    client = wrap(
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0),
        make_guard("all"),
    )
    reply = client.messages.create(model="m", max_tokens=9, messages=messages)  # type: ignore[arg-type]
    assert anthropic_text(reply) == SAFE_REPLY


def test_an_mcp_result_that_is_not_text_is_the_rails_type_error() -> None:
    block = {"type": "mcp_tool_result", "tool_use_id": "m", "content": 5}
    with pytest.raises(TypeError, match="message content"):
        input_texts(_history(block), "all")
