"""The LangChain output rail reads a reply's tool calls: ``AIMessage.tool_calls[i]["args"]``
(parsed by LangChain from the provider's JSON) is what an agent's ``ToolNode`` runs, so
its string values are checked with the reply's text. Before, only the text content was
read: a harmful argument passed whole. Real chains, a langchain-core fake chat model, a
guard on the shipped fake scorer ("knife" -> violence 0.9)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableGenerator

from guardrail_dro.integrations.langchain import guarded, output_rail
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

REFUSAL = "Sorry, I can't help with that."
CLEAN = {"to": "bob@example.com", "body": {"lines": ["Lunch at noon?"]}, "fork": 1}
HARMFUL = {"to": "bob@example.com", "body": {"lines": ["Hi Bob,", "bring a knife."]}}


@pytest.fixture(scope="module")
def guard() -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "violence"}, labels=("safe", "violence"))
    return Guard.from_scorer(scorer, policy=Policy(refusal=REFUSAL))


def _reply(args: dict) -> AIMessage:
    call = {"name": "send_email", "args": args, "id": "call_1", "type": "tool_call"}
    return AIMessage(content="Sending it now.", tool_calls=[call])


def test_guarded_chat_model_checks_tool_call_args(guard: Guard) -> None:
    llm = FakeMessagesListChatModel(responses=[_reply(CLEAN), _reply(HARMFUL)])
    chain = guarded(llm, guard, input=False)
    clean = chain.invoke("email Bob")
    assert clean.tool_calls[0]["args"] == CLEAN  # keys are read too: none names it
    refused = chain.invoke("email Bob")
    assert refused.content == REFUSAL and refused.tool_calls == []


def test_async_output_rail_checks_tool_call_args(guard: Guard) -> None:
    rail = output_rail(guard)
    assert asyncio.run(rail.ainvoke(_reply(CLEAN))) == _reply(CLEAN)
    refused = asyncio.run(rail.ainvoke(_reply(HARMFUL)))
    assert refused.content == REFUSAL and refused.tool_calls == []


def _chunks(args_json: str) -> Iterator[AIMessageChunk]:
    """A streamed tool call: LangChain's ``tool_call_chunks``, the arguments in pieces."""
    yield AIMessageChunk(content="Sending it now.")
    for k in range(0, len(args_json), 5):
        piece = args_json[k : k + 5]
        head = {"name": "send_email", "id": "call_1"} if k == 0 else {"name": None, "id": None}
        yield AIMessageChunk(
            content="",
            tool_call_chunks=[{**head, "args": piece, "index": 0, "type": "tool_call_chunk"}],
        )


def _model(args_json: str) -> RunnableGenerator:
    """A Runnable that streams ``_chunks(args_json)`` whatever its input."""

    def stream(_: Iterator[object]) -> Iterator[AIMessageChunk]:
        yield from _chunks(args_json)

    return RunnableGenerator(stream)


def test_streamed_output_rail_checks_the_joined_tool_call_args(guard: Guard) -> None:
    """``llm | output_rail(guard)`` streamed: the rail gets the chunks joined (their
    ``tool_call_chunks`` parsed into ``tool_calls``), a keyword split across chunks
    included."""
    (got,) = list((_model('{"body": "Lunch at noon?"}') | output_rail(guard)).stream("hi"))
    assert got.tool_calls[0]["args"] == {"body": "Lunch at noon?"}
    (refused,) = list((_model('{"body": "Bring a knife."}') | output_rail(guard)).stream("hi"))
    assert refused.content == REFUSAL and refused.tool_calls == []


def test_a_chat_anthropic_message_is_read_once() -> None:
    """ChatAnthropic's AIMessage holds each call twice: a ``tool_use`` block in its content
    and the parsed call in ``tool_calls`` (same id); the arguments were read twice."""
    from guardrail_dro.serve.rails.messages import reply_text

    block = {"type": "tool_use", "id": "toolu_1", "name": "send_email", "input": CLEAN}
    call = {"name": "send_email", "args": CLEAN, "id": "toolu_1", "type": "tool_call"}
    message = AIMessage(content=[{"type": "text", "text": "Sending it."}, block], tool_calls=[call])
    assert reply_text(message) == (
        "Sending it.\nto\nbob@example.com\nbody\nlines\nLunch at noon?\nfork"
    )
