"""Guarded OpenAI and Anthropic clients: the real SDKs against the shipped fake server
(``annotators.testing.FakeLLMServer``) over loopback HTTP, streaming included; the
guard runs on the shipped fake scorer (``guard_helpers.keyword_guard``)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.policy import GuardResult, GuardViolation, Policy
from guardrail_dro.serve.rails import wrap

from .guard_helpers import Calibrated, keyword_guard, run_of

REFUSAL = "Sorry, I can't continue with that."


@pytest.fixture(scope="module")
def cal() -> Calibrated:
    return keyword_guard(refusal=REFUSAL)


@pytest.fixture(scope="module")
def replies(cal: Calibrated) -> dict[str, str]:
    filler = " ".join([cal.filler + "."] * 10)
    return {
        "clean": filler,
        "toxic": f"{filler} {run_of(cal.target)}. {filler}",
        "attack": run_of(cal.target),  # as a prompt: the input rail's case
    }


@pytest.fixture(scope="module")
def server(replies: dict[str, str]) -> Iterator[FakeLLMServer]:
    # The fake answers each prompt with the reply of that name (the prompt itself otherwise).
    with FakeLLMServer(lambda text: replies.get(text, "ok.")) as srv:
        yield srv


def ask(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def oai(server: FakeLLMServer, cls=openai.OpenAI):
    return cls(base_url=server.openai_base_url, api_key="k", max_retries=0)


def ant(server: FakeLLMServer, cls=anthropic.Anthropic):
    return cls(base_url=server.anthropic_base_url, api_key="k", max_retries=0)


# ---- OpenAI ---------------------------------------------------------------------------


def test_openai_clean_reply_passes(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(oai(server), cal.guard)
    resp = client.chat.completions.create(model="m", messages=ask("clean"))
    assert resp.choices[0].message.content == replies["clean"]
    assert resp.choices[0].finish_reason == "stop"
    assert client.models is client._target.models  # everything else is the client's own


def test_openai_toxic_reply_is_replaced(cal: Calibrated, server: FakeLLMServer) -> None:
    seen: list[tuple[str, GuardResult]] = []
    client = wrap(oai(server), cal.guard, on_check=lambda rail, r: seen.append((rail, r)))
    resp = client.chat.completions.create(model="m", messages=ask("toxic"))
    assert resp.choices[0].message.content == REFUSAL
    assert resp.choices[0].finish_reason == "content_filter"
    assert [rail for rail, _ in seen] == ["input", "output"] and not seen[1][1].allowed


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_openai_blocked_input_never_reaches_the_model(
    cal: Calibrated, server: FakeLLMServer, replies, stream: bool
) -> None:
    server.reset_counts()
    client = wrap(oai(server), cal.guard)
    resp = client.chat.completions.create(model="m", messages=ask(replies["attack"]), stream=stream)
    if stream:
        chunks = list(resp)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == REFUSAL
        assert chunks[-1].choices[0].finish_reason == "content_filter"
    else:
        assert resp.choices[0].message.content == REFUSAL
    assert server.calls == {}


def _openai_text(chunks) -> tuple[str, str | None]:
    text, finish = "", None
    for c in chunks:
        for ch in c.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    return text, finish


def test_openai_stream_is_stopped_midway(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(oai(server), cal.guard)
    with client.chat.completions.create(model="m", messages=ask("toxic"), stream=True) as s:
        text, finish = _openai_text(s)
    assert finish == "content_filter" and text.endswith(REFUSAL)
    released = text.removesuffix(REFUSAL)
    assert replies["toxic"].startswith(released)  # only checked text, in order
    assert len(released) < len(replies["toxic"]) - len(replies["clean"])  # stopped mid-way


def test_openai_clean_stream_passes_whole(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(oai(server), cal.guard)
    text, finish = _openai_text(
        client.chat.completions.create(model="m", messages=ask("clean"), stream=True)
    )
    assert (text, finish) == (replies["clean"], "stop")


def test_openai_stream_can_raise(cal: Calibrated, server: FakeLLMServer) -> None:
    g = cal.guard.with_policy(Policy(toxic_threshold=cal.threshold, raise_on_violation=True))
    client = wrap(oai(server), g)
    stream = client.chat.completions.create(model="m", messages=ask("toxic"), stream=True)
    with pytest.raises(GuardViolation) as info:
        list(stream)
    assert info.value.rail == "output"


@pytest.mark.asyncio
async def test_async_openai_stream(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(oai(server, openai.AsyncOpenAI), cal.guard)
    stream = await client.chat.completions.create(model="m", messages=ask("toxic"), stream=True)
    text, finish = _openai_text([c async for c in stream])
    assert finish == "content_filter" and text.endswith(REFUSAL)
    resp = await client.chat.completions.create(model="m", messages=ask("clean"))
    assert resp.choices[0].message.content == replies["clean"]
    await client.close()


# ---- Anthropic ------------------------------------------------------------------------


def test_anthropic_plain(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(ant(server), cal.guard)
    ok = client.messages.create(model="m", max_tokens=100, messages=ask("clean"))
    assert ok.content[0].text == replies["clean"] and ok.stop_reason == "end_turn"
    bad = client.messages.create(model="m", max_tokens=100, messages=ask("toxic"))
    assert [b.text for b in bad.content] == [REFUSAL] and bad.stop_reason == "refusal"
    server.reset_counts()
    blocked = client.messages.create(
        model="m",
        max_tokens=100,
        messages=[{"role": "user", "content": [{"type": "text", "text": replies["attack"]}]}],
    )
    assert blocked.content[0].text == REFUSAL and server.calls == {}
    with pytest.raises(NotImplementedError):
        client.messages.stream(model="m", max_tokens=10, messages=ask("clean"))


def _anthropic_text(events) -> tuple[str, str | None, list[str]]:
    text, stop, kinds = "", None, []
    for ev in events:
        kinds.append(ev.type)
        if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
            text += ev.delta.text
        elif ev.type == "message_delta":
            stop = ev.delta.stop_reason
    return text, stop, kinds


def test_anthropic_stream_is_stopped_midway(
    cal: Calibrated, server: FakeLLMServer, replies
) -> None:
    client = wrap(ant(server), cal.guard)
    events = client.messages.create(model="m", max_tokens=100, messages=ask("toxic"), stream=True)
    text, stop, kinds = _anthropic_text(events)
    assert stop == "refusal" and text.endswith(REFUSAL)
    assert replies["toxic"].startswith(text.removesuffix(REFUSAL))
    assert kinds[0] == "message_start" and kinds[-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    clean = client.messages.create(model="m", max_tokens=100, messages=ask("clean"), stream=True)
    assert _anthropic_text(clean)[:2] == (replies["clean"], "end_turn")


@pytest.mark.asyncio
async def test_async_anthropic(cal: Calibrated, server: FakeLLMServer, replies) -> None:
    client = wrap(ant(server, anthropic.AsyncAnthropic), cal.guard)
    stream = await client.messages.create(
        model="m", max_tokens=100, messages=ask("toxic"), stream=True
    )
    text, stop, _ = _anthropic_text([ev async for ev in stream])
    assert stop == "refusal" and text.endswith(REFUSAL)
    blocked = await client.messages.create(
        model="m", max_tokens=100, messages=ask(replies["attack"]), stream=True
    )
    text, stop, _ = _anthropic_text([ev async for ev in blocked])
    assert (text, stop) == (REFUSAL, "refusal")
    await client.close()
