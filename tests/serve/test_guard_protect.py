"""``@guard.protect``: input and output rails around plain chat callables, on the fake
scorer (decisions, not a model); the stream rail's rolling window on the real tokenizer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import GuardResult, GuardViolation, Policy
from guardrail_dro.serve.rails import StreamRail
from guardrail_dro.serve.scorer import FakeScorer

from .guard_helpers import LABELS, Calibrated, block, full_ids, keyword_guard


@pytest.fixture(scope="module")
def cal() -> Calibrated:
    return keyword_guard(refusal="Sorry, no.")


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_input_rail_skips_the_model(cal: Calibrated) -> None:
    calls = []

    @cal.guard.protect()
    def chat(messages: list[dict]) -> str:
        calls.append(messages)
        return cal.filler

    assert chat(user(block(cal.guard, cal.target))) == "Sorry, no."
    assert calls == []
    assert chat(user(cal.filler)) == cal.filler and len(calls) == 1


def test_output_rail_replaces_the_reply(cal: Calibrated) -> None:
    seen: list[tuple[str, GuardResult]] = []

    @cal.guard.protect(on_check=lambda rail, r: seen.append((rail, r)))
    def chat(messages: list[dict], *, reply: str) -> str:
        return reply

    assert chat(user(cal.filler), reply=cal.filler) == cal.filler
    assert chat(messages=user(cal.filler), reply=block(cal.guard, cal.target)) == "Sorry, no."
    assert [rail for rail, _ in seen] == ["input", "output", "input", "output"]
    assert not seen[-1][1].allowed


def test_rails_can_be_turned_off(cal: Calibrated) -> None:
    target = block(cal.guard, cal.target)

    @cal.guard.protect(input=False, output=False)
    def echo(messages: list[dict]) -> str:
        return messages[-1]["content"]

    assert echo(user(target)) == target


@pytest.mark.parametrize(("action", "expected"), [("block", ""), ("flag", None)])
def test_block_withholds_and_flag_passes(cal: Calibrated, action: str, expected) -> None:
    g = cal.guard.with_policy(Policy(toxic_threshold=cal.threshold, action=action))
    target = block(cal.guard, cal.target)

    @g.protect(input=False)
    def chat(messages: list[dict]) -> str:
        return target

    assert chat(user("hi")) == (target if expected is None else expected)


def test_raise_on_violation(cal: Calibrated) -> None:
    g = cal.guard.with_policy(Policy(toxic_threshold=cal.threshold, raise_on_violation=True))

    @g.protect()
    def chat(messages: list[dict]) -> dict:
        return {"role": "assistant", "content": block(cal.guard, cal.target)}

    with pytest.raises(GuardViolation) as info:
        chat(user(cal.filler))
    assert info.value.rail == "output" and not info.value.result.allowed


def test_message_replies_keep_their_shape(cal: Calibrated) -> None:
    @cal.guard.protect()
    def chat(messages: list[dict]) -> dict:
        return {
            "role": "assistant",
            "content": [{"type": "text", "text": block(cal.guard, cal.target)}],
        }

    assert chat(user(cal.filler)) == {"role": "assistant", "content": "Sorry, no."}


def _chunks(cal: Calibrated) -> list[str]:
    fill = [cal.filler + ". "] * 12
    return [*fill, block(cal.guard, cal.target), *fill]


def test_streamed_reply_is_stopped(cal: Calibrated) -> None:
    pulled = []

    @cal.guard.protect()
    def chat(messages: list[dict]) -> Iterator[str]:
        for c in _chunks(cal):
            pulled.append(c)
            yield c

    out = list(chat(user(cal.filler)))
    assert out[-1] == "Sorry, no."
    assert out[:-1] == [cal.filler + ". "] * 12  # everything before the target, nothing of it
    assert len(pulled) == 13  # the generator was not drained after the violation


def test_streamed_clean_reply_passes_whole(cal: Calibrated) -> None:
    @cal.guard.protect()
    def chat(messages: list[dict]) -> Iterator[str]:
        yield from [cal.filler + ". "] * 20

    assert "".join(chat(user("x"))) == (cal.filler + ". ") * 20


@pytest.mark.asyncio
async def test_async_callables(cal: Calibrated) -> None:
    @cal.guard.protect()
    async def chat(messages: list[dict]) -> str:
        return block(cal.guard, cal.target)

    assert await chat(user(cal.filler)) == "Sorry, no."
    assert await chat(user(block(cal.guard, cal.target))) == "Sorry, no."

    @cal.guard.protect()
    async def stream(messages: list[dict]) -> AsyncIterator[str]:
        async def gen() -> AsyncIterator[str]:
            for c in _chunks(cal):
                yield c

        return gen()

    out = [c async for c in await stream(user("x"))]
    assert out[-1] == "Sorry, no." and len(out) == 13


def test_stream_rail_checks_whole_sentences() -> None:
    rail = StreamRail(max_chars=50, min_chars=0)
    assert not rail.feed("Hello there")  # no sentence end yet
    assert rail.feed(" friend. How ar")
    assert rail.segment() == "Hello there friend. How ar"
    rail.passed()
    assert rail.feed("e you? Fine")
    assert rail.segment() == " How are you? Fine"  # from the start of its sentence
    rail.passed()
    assert rail.feed("x" * 50) and rail.segment() == " Fine" + "x" * 50  # max_chars


def test_stream_rail_waits_for_min_chars_at_sentence_ends() -> None:
    # code and lists end a "sentence" every few characters: one check per 40 at least
    rail = StreamRail()
    assert not rail.feed("a = 1;\n") and not rail.feed("b = 2;\n")
    assert not rail.feed("c" * 30)  # 44 characters wait, but no sentence end in them
    assert rail.feed(";") and rail.segment() == "a = 1;\nb = 2;\n" + "c" * 30 + ";"
    rail.passed()
    assert rail.feed("x" * 199) is False and rail.feed("x")  # max_chars, no sentence end


def _split_statement() -> tuple[Guard, str, str, float, float]:
    """A statement cut in two that the fake scorer flags only whole (a window holding
    both "hurt" and "knife"): ``(guard, first, second, worst half score, whole score)``."""
    both = FakeScorer(
        lambda t: {"violence": 0.9} if "hurt" in t and "knife" in t else {}, labels=LABELS
    )
    guard = Guard.from_scorer(both)
    # each sentence over StreamRail's min_chars (40), so each is checked at its end
    x, y = "how do I hurt someone who lives next door", "with a sharp knife from the kitchen drawer"
    halves = guard.check_many([x + ".", " " + y + "."])
    whole = guard.check_many([f"{x}. {y}."])[0].toxic_score
    low = max(r.toxic_score for r in halves)
    assert whole - low > 0.01
    return guard, x, y, low, whole


def test_statement_split_across_sentences_is_caught() -> None:
    guard, x, y, low, high = _split_statement()
    off = {c: 1.0 for c in guard.rule.categories}
    g = guard.with_policy(
        Policy(toxic_threshold=(low + high) / 2, thresholds=off, refusal="Sorry, no.")
    )
    assert g.check(x + ".").allowed and g.check(" " + y + ".").allowed  # each half passes
    pulled = []

    @g.protect(input=False)
    def chat(messages: list[dict]) -> Iterator[str]:
        for word in f"{x}. {y}. And that is all.".split(" "):
            pulled.append(word)
            yield word + " "

    out = list(chat(user("x")))
    assert out[-1] == "Sorry, no."
    assert "".join(out[:-1]) == x + ". "  # the first sentence alone was released
    assert pulled[-1] == y.split()[-1] + "."  # stopped at the end of the second sentence


def test_stream_rail_due_texts(guard: Guard) -> None:
    # The real guard: the rolling window is the tokenizer's last max_length - 2 tokens.
    rail = StreamRail()
    rail.feed("One. ")
    rail.passed()
    rail.feed("Two.")
    assert rail.due_texts(guard) == [" Two.", "One. Two."]  # the segment, the window
    rail.passed()
    assert rail.due_texts(guard) == []
    assert rail.due_texts(guard, final=True) == ["One. Two."]  # the whole reply, last
    long = " ".join(["word"] * (guard.max_length * 3)) + " end."
    rail = StreamRail()
    rail.feed(long)
    tail = rail.due_texts(guard)[1]
    assert long.endswith(tail) and len(full_ids(guard, tail)) == guard.max_length - 2


def test_bare_protect_without_parentheses(cal: Calibrated) -> None:
    """``@guard.protect`` (no parentheses) guards like ``@guard.protect()``."""
    calls = []

    @cal.guard.protect
    def chat(messages: list[dict]) -> str:
        calls.append(messages)
        return cal.filler

    @cal.guard.protect()
    def chat_called(messages: list[dict]) -> str:
        calls.append(messages)
        return cal.filler

    for fn in (chat, chat_called):
        assert fn.__name__ in ("chat", "chat_called")
        assert fn(user(block(cal.guard, cal.target))) == "Sorry, no."
        assert fn(user(cal.filler)) == cal.filler
    assert len(calls) == 2


@pytest.mark.asyncio
async def test_bare_protect_on_async(cal: Calibrated) -> None:
    @cal.guard.protect
    async def chat(messages: list[dict]) -> str:
        return block(cal.guard, cal.target)

    assert await chat(user(cal.filler)) == "Sorry, no."


def test_protect_options_must_be_keywords(cal: Calibrated) -> None:
    with pytest.raises(TypeError, match="as keywords"):
        cal.guard.protect(False)
