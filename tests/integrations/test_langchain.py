"""The LangChain integration on real chains: a ChatPromptTemplate, langchain-core's
FakeListChatModel and StrOutputParser, with a guard on the shipped fake scorer ("knife"
in a text -> violence 0.9), sync and async."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from guardrail_dro.errors import GuardViolation
from guardrail_dro.integrations.langchain import (
    guarded,
    input_rail,
    output_rail,
)
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

SAFE_Q = {"question": "what is the history of the printing press"}
BAD_Q = {"question": "how do I hurt someone with a knife"}
SAFE_REPLY = "Gutenberg, around 1440."
BAD_REPLY = "Take a knife and aim for the ribs."
REFUSAL = "Sorry, I can't help with that."


def make_guard(**policy) -> Guard:
    scorer = FakeScorer.from_keywords(
        {"knife": "violence"}, labels=("safe", "violence", "hate"), score=0.9
    )
    return Guard.from_scorer(scorer, policy=Policy(refusal=REFUSAL, **policy))


def make_chain(*replies: str, parse: bool = True):
    """prompt | fake chat model (| StrOutputParser). A last, unused reply keeps the fake's
    call counter ``i`` from wrapping to 0, so ``llm.i`` counts the calls made."""
    llm = FakeListChatModel(responses=[*replies, "(never given)"])
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{question}")])
    chain = prompt | llm | StrOutputParser() if parse else prompt | llm
    return chain, llm


def test_allowed_input_and_output_pass_and_are_seen() -> None:
    chain, llm = make_chain(SAFE_REPLY)
    seen: list[tuple[str, bool]] = []
    g = guarded(chain, make_guard(), on_check=lambda rail, r: seen.append((rail, r.allowed)))
    assert g.invoke(SAFE_Q) == SAFE_REPLY
    assert seen == [("input", True), ("output", True)]
    assert g.OutputType is str and llm.i == 1


def test_a_blocked_input_never_reaches_the_model() -> None:
    chain, llm = make_chain(SAFE_REPLY)
    assert guarded(chain, make_guard()).invoke(BAD_Q) == REFUSAL
    assert llm.i == 0  # the fake model's next-response index: never called

    chat, chat_llm = make_chain(SAFE_REPLY, parse=False)
    out = guarded(chat, make_guard()).invoke(BAD_Q)
    assert isinstance(out, AIMessage) and out.content == REFUSAL  # the chain's own type
    assert chat_llm.i == 0


def test_a_blocked_reply_is_replaced_in_its_own_type() -> None:
    chain, _ = make_chain(BAD_REPLY)
    assert guarded(chain, make_guard()).invoke(SAFE_Q) == REFUSAL
    chat, _ = make_chain(BAD_REPLY, parse=False)
    out = guarded(chat, make_guard()).invoke(SAFE_Q)
    assert isinstance(out, AIMessage) and out.content == REFUSAL and not out.tool_calls


@pytest.mark.parametrize(
    ("policy", "question", "reply", "rail"),
    [
        ({"action": "block"}, BAD_Q, SAFE_REPLY, "input"),
        ({"action": "block"}, SAFE_Q, BAD_REPLY, "output"),
        ({"raise_on_violation": True}, BAD_Q, SAFE_REPLY, "input"),
        ({"raise_on_violation": True}, SAFE_Q, BAD_REPLY, "output"),
    ],
    ids=["block-input", "block-output", "raise-input", "raise-output"],
)
def test_block_or_raise_policies_raise_guard_violation(policy, question, reply, rail) -> None:
    chain, llm = make_chain(reply)
    with pytest.raises(GuardViolation, match=f"guard blocked the {rail}") as info:
        guarded(chain, make_guard(**policy)).invoke(question)
    assert info.value.rail == rail and info.value.result.label == "violence"
    assert llm.i == (0 if rail == "input" else 1)


def test_flag_passes_the_content_and_reports_it() -> None:
    chain, _ = make_chain(BAD_REPLY)
    seen = []
    g = guarded(chain, make_guard(action="flag"), on_check=lambda rail, r: seen.append(r))
    assert g.invoke(BAD_Q) == BAD_REPLY
    assert [r.triggered for r in seen] == [("violence",), ("violence",)]
    assert all(r.allowed and r.violation for r in seen)


def test_rails_can_be_chosen_and_given_their_own_policy() -> None:
    chain, _ = make_chain(BAD_REPLY, BAD_REPLY)
    assert guarded(chain, make_guard(), output=False).invoke(SAFE_Q) == BAD_REPLY
    strict = make_guard(action="block")
    with pytest.raises(GuardViolation):
        guarded(chain, make_guard(), output=strict).invoke(SAFE_Q)


def test_async_invoke_and_batch() -> None:
    async def main():
        chain, llm = make_chain(SAFE_REPLY, BAD_REPLY)
        g = guarded(chain, make_guard())
        assert await g.ainvoke(BAD_Q) == REFUSAL
        assert llm.i == 0
        assert await g.ainvoke(SAFE_Q) == SAFE_REPLY
        assert await g.ainvoke(SAFE_Q) == REFUSAL  # the second reply mentions a knife
        blocked = guarded(chain, make_guard(action="block"))
        with pytest.raises(GuardViolation):
            await blocked.ainvoke(BAD_Q)
        many, _ = make_chain(SAFE_REPLY, SAFE_REPLY)
        return await guarded(many, make_guard()).abatch([SAFE_Q, BAD_Q, SAFE_Q])

    assert asyncio.run(main()) == [SAFE_REPLY, REFUSAL, SAFE_REPLY]


def test_stream_yields_only_the_checked_reply() -> None:
    chain, _ = make_chain(BAD_REPLY)
    assert list(guarded(chain, make_guard()).stream(SAFE_Q)) == [REFUSAL]

    async def collect():
        chain, _ = make_chain(BAD_REPLY)
        return [c async for c in guarded(chain, make_guard()).astream(SAFE_Q)]

    assert asyncio.run(collect()) == [REFUSAL]


def test_pipe_steps() -> None:
    llm = FakeListChatModel(responses=[BAD_REPLY, SAFE_REPLY])
    prompt = ChatPromptTemplate.from_messages([("user", "{question}")])
    chain = input_rail(make_guard()) | prompt | llm | output_rail(make_guard())
    out = chain.invoke(SAFE_Q)
    assert isinstance(out, AIMessage) and out.content == REFUSAL
    assert chain.invoke(SAFE_Q).content == SAFE_REPLY
    # A pipe step cannot skip what follows it: a blocked input raises even under replace.
    with pytest.raises(GuardViolation, match="the input"):
        chain.invoke(BAD_Q)
    assert asyncio.run((prompt | llm | output_rail(make_guard())).ainvoke(SAFE_Q)).content in (
        REFUSAL,
        SAFE_REPLY,
    )


def test_every_prompt_variable_is_checked_alone() -> None:
    prompt = ChatPromptTemplate.from_messages([("user", "{topic}: {question}")])
    llm = FakeListChatModel(responses=[SAFE_REPLY])
    g = guarded(prompt | llm | StrOutputParser(), make_guard())
    assert g.invoke({"topic": "cooking", "question": "which knife for onions"}) == REFUSAL
    assert g.invoke({"topic": "cooking", "question": "which pan for onions"}) == SAFE_REPLY


def test_a_chat_history_variable_is_read_for_its_last_human_turn() -> None:
    from langchain_core.prompts import MessagesPlaceholder

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer in {language}."), MessagesPlaceholder("messages")]
    )
    llm = FakeListChatModel(responses=[SAFE_REPLY, "(never given)"])
    g = guarded(prompt | llm | StrOutputParser(), make_guard())
    bad = {"language": "English", "messages": [HumanMessage("how do I use a knife on him")]}
    assert g.invoke(bad) == REFUSAL and llm.i == 0  # the user's turn was checked
    ok = {"language": "English", "messages": [HumanMessage("knife?"), AIMessage("no"),
                                              HumanMessage("then bread?")]}  # fmt: skip
    assert g.invoke(ok) == SAFE_REPLY


def test_messages_and_prompt_values_read_the_last_human_turn() -> None:
    llm = FakeListChatModel(responses=[SAFE_REPLY])
    g = guarded(llm, make_guard())
    history = [HumanMessage("where is my knife"), AIMessage("drawer"), HumanMessage("thanks")]
    assert g.invoke(history).content == SAFE_REPLY  # an earlier turn does not decide
    assert g.invoke([HumanMessage("hand me the knife")]).content == REFUSAL
    value = ChatPromptTemplate.from_messages([("user", "{q}")]).invoke({"q": "a knife?"})
    assert g.invoke(value).content == REFUSAL


def test_an_unreadable_value_names_text_of() -> None:
    llm = FakeListChatModel(responses=[SAFE_REPLY])
    g = guarded(llm | StrOutputParser(), make_guard(), output=False)
    with pytest.raises(TypeError, match="input rail cannot read a int: pass text_of="):
        g.invoke(42)
    custom = guarded(
        (lambda n: f"number {n}") | llm | StrOutputParser(),
        make_guard(),
        text_of_input=lambda n: f"knife {n}",
    )
    assert custom.invoke(42) == REFUSAL
    with pytest.raises(TypeError, match="LangChain Runnable"):
        guarded(lambda x: x, make_guard())  # type: ignore[arg-type]


def test_a_text_of_that_finds_no_text_is_checked_as_empty() -> None:
    """A ``text_of`` returning no texts crashed with "max() arg is an empty sequence"."""
    chain, llm = make_chain(SAFE_REPLY)
    g = guarded(chain, make_guard(), text_of_input=lambda v: [m for m in v["turns"]])
    assert g.invoke({"question": "hi", "turns": []}) == SAFE_REPLY
    assert llm.i == 1


def test_import_guardrail_dro_does_not_import_langchain() -> None:
    code = (
        "import sys, guardrail_dro, guardrail_dro.integrations, guardrail_dro.serve.guard; "
        "assert 'langchain_core' not in sys.modules, 'langchain imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_example_runs() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "langchain_guard.py"
    proc = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.count("A: I can't help with that.") == 4  # 2 questions x (sync, async)
    assert out.count("A: Gutenberg") == 2
    assert out.count("  input  replace") == 2 and out.count("  output replace") == 2
