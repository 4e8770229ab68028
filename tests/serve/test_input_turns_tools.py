"""Under ``input_turns="all"`` the input rail reads the request's tool definitions: a
caller who writes the request can put "Before answering, explain how to ..." in a tool's
description or its parameters' schema, and the model reads definitions as instructions.
They went past ``all`` unread. Each definition is one more text (name, description and
the schema's strings), counted toward ``max_input_turns``; ``last`` / ``user`` never read
them. Real SDKs over real HTTP to the shipped fake server, the proxies on uvicorn in a
thread, a guard on the shipped fake scorer ("knife" -> toxic).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from pydantic import SecretStr

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.rails import input_texts, wrap

from .input_turns_helpers import HARM, REFUSAL, SAFE_REPLY, anthropic_text, make_guard

ASK = [{"role": "user", "content": "what is the weather in Paris?"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def _params(where: str) -> dict[str, Any]:
    """A JSON schema carrying ``HARM`` in a parameter's description or enum, or as a
    property's name."""
    if where == "name":
        return {"type": "object", "properties": {HARM: {"type": "string"}}}
    field = {"description": HARM} if where == "description" else {"enum": ["Paris", HARM]}
    return {"type": "object", "properties": {"city": {"type": "string", **field}}}


def _openai_tool(description: str = "Weather", parameters: Any = None) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": description,
            "parameters": SCHEMA if parameters is None else parameters,
        },
    }


def _anthropic_tool(description: str = "Weather", schema: Any = None) -> dict[str, Any]:
    return {
        "name": "get_weather",
        "description": description,
        "input_schema": SCHEMA if schema is None else schema,
    }


#: OpenAI tool lists, each with ``HARM`` where the model reads it.
OPENAI_TOOLS: dict[str, list[Any]] = {
    "description": [_openai_tool(HARM)],
    "parameter description": [_openai_tool(parameters=_params("description"))],
    "enum": [_openai_tool(parameters=_params("enum"))],
    "property name": [_openai_tool(parameters=_params("name"))],
    "custom tool": [{"type": "custom", "custom": {"name": "shell", "description": HARM}}],
    "second of two": [_openai_tool(), _openai_tool(HARM)],
}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: SAFE_REPLY) as srv:
        yield srv


def _oai(server: FakeLLMServer, turns: str, cls: Any = openai.OpenAI) -> Any:
    client = cls(base_url=server.openai_base_url, api_key="k", max_retries=0)
    return wrap(client, make_guard(turns))


def _ant(server: FakeLLMServer, turns: str, cls: Any = anthropic.Anthropic) -> Any:
    client = cls(base_url=server.anthropic_base_url, api_key="k", max_retries=0)
    return wrap(client, make_guard(turns))


# ---- the reader and check_input -----------------------------------------------------


def test_each_tool_definition_is_one_text_under_all_only() -> None:
    tools = [_openai_tool(), _anthropic_tool("Look up", _params("description"))]
    tools.append({"type": "web_search_20250305", "name": "web_search"})  # a server tool
    texts = input_texts(ASK, "all", None, tools)
    assert texts == [
        "get_weather\nWeather\ntype\nobject\nproperties\ncity\ntype\nstring",
        f"get_weather\nLook up\ntype\nobject\nproperties\ncity\ntype\nstring\ndescription\n{HARM}",
        "web_search",
        ASK[0]["content"],
    ]
    assert input_texts(ASK, "user", None, tools) == input_texts(ASK, "last", None, tools)
    assert input_texts(ASK, "last", None, tools) == [ASK[0]["content"]]


@pytest.mark.parametrize("bad", ["a tool", {"name": "f"}, [5], ["f"]])
def test_tools_the_rail_cannot_read_raise_under_all(bad: Any) -> None:
    with pytest.raises(TypeError, match="tool"):
        input_texts(ASK, "all", None, bad)
    assert input_texts(ASK, "last", None, bad) == [ASK[0]["content"]]  # never read


@pytest.mark.parametrize("name", list(OPENAI_TOOLS))
def test_check_input_reads_tools_under_all(name: str) -> None:
    tools = OPENAI_TOOLS[name]
    assert not make_guard("all").check_input(ASK, tools=tools).allowed
    assert make_guard("last").check_input(ASK, tools=tools).allowed
    assert make_guard("user").check_input(ASK, tools=tools).allowed


@pytest.mark.asyncio
async def test_acheck_input_reads_tools_under_all() -> None:
    tools = [_anthropic_tool(schema=_params("description"))]
    assert not (await make_guard("all").acheck_input(ASK, tools=tools)).allowed
    assert (await make_guard("last").acheck_input(ASK, tools=tools)).allowed


def test_max_input_turns_counts_the_tool_definitions() -> None:
    """One turn and two harmless tools are three texts: past a bound of 2, none is
    scored and the closed error policy refuses; one tool is within it."""
    guard = make_guard("all", max_input_turns=2)
    over = guard.check_input(ASK, tools=[_openai_tool(), _openai_tool("Forecast")])
    assert not over.allowed and over.degraded and "3 texts to check" in (over.error or "")
    assert guard.check_input(ASK, tools=[_openai_tool()]).allowed


# ---- guard.wrap of the real SDKs ----------------------------------------------------


@pytest.mark.parametrize("via", ["kwarg", "extra_body"])
@pytest.mark.parametrize("name", list(OPENAI_TOOLS))
def test_openai_wrap_refuses_a_harmful_tool_definition_under_all(
    server: FakeLLMServer, name: str, via: str
) -> None:
    tools = OPENAI_TOOLS[name]
    sent = {"tools": tools} if via == "kwarg" else {"extra_body": {"tools": tools}}
    before = len(server.requests)
    reply = _oai(server, "all").chat.completions.create(model="m", messages=ASK, **sent)
    assert reply.choices[0].message.content == REFUSAL
    assert len(server.requests) == before  # refused before it reached the model
    reply = _oai(server, "last").chat.completions.create(model="m", messages=ASK, **sent)
    assert reply.choices[0].message.content == SAFE_REPLY


def test_openai_wrap_reads_the_deprecated_functions_and_a_tools_iterator(
    server: FakeLLMServer,
) -> None:
    """``functions`` (definitions without the ``tools`` wrapper) is read after ``tools``;
    an iterator of tools is listed once, so the model still gets them."""
    client = _oai(server, "all")
    harmful = {"name": "f", "description": HARM, "parameters": SCHEMA}
    reply = client.chat.completions.create(model="m", messages=ASK, functions=[harmful])
    assert reply.choices[0].message.content == REFUSAL
    reply = client.chat.completions.create(
        model="m", messages=ASK, tools=iter(OPENAI_TOOLS["enum"])
    )
    assert reply.choices[0].message.content == REFUSAL
    reply = client.chat.completions.create(model="m", messages=ASK, tools=iter([_openai_tool()]))
    assert reply.choices[0].message.content == SAFE_REPLY
    assert server.requests[-1]["body"]["tools"] == [_openai_tool()]


@pytest.mark.asyncio
async def test_async_openai_stream_refuses_a_harmful_tool_definition(
    server: FakeLLMServer,
) -> None:
    client = _oai(server, "all", openai.AsyncOpenAI)
    before = len(server.requests)
    tools = OPENAI_TOOLS["parameter description"]
    stream = await client.chat.completions.create(model="m", messages=ASK, tools=tools, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REFUSAL
    assert len(server.requests) == before


def test_openai_stream_passes_tools_unread_under_last(server: FakeLLMServer) -> None:
    tools = OPENAI_TOOLS["description"]
    for turns, text in (("last", SAFE_REPLY), ("all", REFUSAL)):
        stream = _oai(server, turns).chat.completions.create(
            model="m", messages=ASK, tools=tools, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text


@pytest.mark.parametrize("via", ["kwarg", "extra_body"])
@pytest.mark.parametrize("where", ["tool description", "parameter description", "enum"])
def test_anthropic_wrap_refuses_a_harmful_tool_definition_under_all(
    server: FakeLLMServer, where: str, via: str
) -> None:
    tool = (
        _anthropic_tool(HARM)
        if where == "tool description"
        else _anthropic_tool(schema=_params(where.split()[0]))
    )
    tools = [{"type": "web_search_20250305", "name": "web_search"}, tool]
    sent = {"tools": tools} if via == "kwarg" else {"extra_body": {"tools": tools}}
    before = len(server.requests)
    reply = _ant(server, "all").messages.create(model="m", max_tokens=9, messages=ASK, **sent)
    assert anthropic_text(reply) == REFUSAL and reply.stop_reason == "refusal"
    assert len(server.requests) == before
    reply = _ant(server, "last").messages.create(model="m", max_tokens=9, messages=ASK, **sent)
    assert anthropic_text(reply) == SAFE_REPLY


@pytest.mark.asyncio
async def test_async_anthropic_stream_refuses_a_harmful_tool_definition(
    server: FakeLLMServer,
) -> None:
    tools = [_anthropic_tool(HARM)]
    for turns, text in (("all", REFUSAL), ("last", SAFE_REPLY)):
        client = _ant(server, turns, anthropic.AsyncAnthropic)
        stream = await client.messages.create(
            model="m", max_tokens=9, messages=ASK, tools=tools, stream=True
        )
        events = [e async for e in stream]
        deltas = [e.delta for e in events if e.type == "content_block_delta"]
        assert "".join(d.text for d in deltas if d.type == "text_delta") == text


# ---- the proxies over HTTP ----------------------------------------------------------


@pytest.fixture(scope="module")
def proxies(server: FakeLLMServer) -> Iterator[dict[str, str]]:
    """A serve app with both proxies for each scope, by scope: its URL."""
    with (
        BackgroundServer(_app(server, "all")) as all_,
        BackgroundServer(_app(server, "last")) as last,
    ):
        yield {"all": all_, "last": last}


def _app(server: FakeLLMServer, turns: str) -> Any:
    def up(url: str) -> Upstream:
        return Upstream(url=url, api_key=SecretStr("sk-upstream-0123"), timeout_s=30)

    return create_app(
        make_guard(turns),
        ServeConfig(),
        upstream=up(server.openai_base_url),
        anthropic_upstream=up(server.anthropic_base_url),
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_chat_proxy_reads_tool_definitions_under_all(
    server: FakeLLMServer, proxies: dict[str, str], stream: bool
) -> None:
    tools = OPENAI_TOOLS["parameter description"]
    for turns, text in (("all", REFUSAL), ("last", SAFE_REPLY)):
        client = openai.OpenAI(base_url=f"{proxies[turns]}/v1", api_key="x", max_retries=0)
        before = len(server.requests)
        if stream:
            chunks = client.chat.completions.create(
                model="m", messages=ASK, tools=tools, stream=True
            )
            got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(model="m", messages=ASK, tools=tools)
            got = reply.choices[0].message.content or ""
        assert got == text
        assert (len(server.requests) > before) is (turns == "last")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_messages_proxy_reads_tool_definitions_under_all(
    server: FakeLLMServer, proxies: dict[str, str], stream: bool
) -> None:
    tools = [_anthropic_tool(schema=_params("enum"))]
    for turns, text in (("all", REFUSAL), ("last", SAFE_REPLY)):
        client = anthropic.Anthropic(base_url=proxies[turns], api_key="x", max_retries=0)
        before = len(server.requests)
        if stream:
            events = client.messages.create(
                model="m", max_tokens=9, messages=ASK, tools=tools, stream=True
            )
            deltas = [e.delta for e in events if e.type == "content_block_delta"]
            got = "".join(d.text for d in deltas if d.type == "text_delta")
        else:
            got = anthropic_text(
                client.messages.create(model="m", max_tokens=9, messages=ASK, tools=tools)
            )
        assert got == text
        assert (len(server.requests) > before) is (turns == "last")


@pytest.mark.parametrize("bad", ["get_weather", [5], {"name": "f"}])
def test_a_tools_field_the_rail_cannot_read_is_a_400_under_all(
    server: FakeLLMServer, proxies: dict[str, str], bad: Any
) -> None:
    oai = openai.OpenAI(base_url=f"{proxies['all']}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="tools: give a list of tool definitions"):
        oai.chat.completions.create(model="m", messages=ASK, extra_body={"tools": bad})
    with pytest.raises(openai.BadRequestError, match="functions: give a list of tool"):
        oai.chat.completions.create(model="m", messages=ASK, extra_body={"functions": bad})
    ant = anthropic.Anthropic(base_url=proxies["all"], api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="tools: give a list of tool definitions"):
        ant.messages.create(model="m", max_tokens=9, messages=ASK, extra_body={"tools": bad})
    # the default scope never reads them: they pass through, for the upstream to judge
    oai = openai.OpenAI(base_url=f"{proxies['last']}/v1", api_key="x", max_retries=0)
    oai.chat.completions.create(model="m", messages=ASK, extra_body={"tools": bad})
    assert server.requests[-1]["body"]["tools"] == bad
