"""The rails the hooks run: reading chat messages and replies, deciding one rail
(with ``on_check`` and ``GuardViolation``), and checking a stream as it arrives.

Streams: chunks are held back until the text they carry has been checked, at sentence
ends or every ``max_chars`` characters, so nothing unchecked reaches the caller. Each
check scores the new sentence and the rolling window of the reply so far (its last
``max_length`` tokens), and the whole reply is checked before the last chunk is
released; a violation closes the upstream response and ends the stream with what the
stream's ``_Events`` say ends it (the refusal). Used by ``guardrail_dro.serve.rails.protect``
(``protect``) and ``guardrail_dro.serve.rails.sdk`` (the OpenAI / Anthropic clients).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from guardrail_dro.serve.policy import GuardResult, GuardViolation

if TYPE_CHECKING:
    from guardrail_dro.serve.guard import Guard

__all__ = [
    "AsyncGuardedStream",
    "GuardedStream",
    "OnCheck",
    "StreamRail",
    "content_text",
    "last_user_text",
]

OnCheck = Callable[[str, GuardResult], None]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def content_text(content: Any) -> str:
    """The text of a message content: a string, or a list of content blocks (``text``
    blocks, and the nested content of Anthropic ``tool_result`` blocks); images skipped."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
                continue
            text = _get(block, "text")
            if isinstance(text, str):
                parts.append(text)
            elif _get(block, "type") == "tool_result":
                parts.append(content_text(_get(block, "content")))
        return "\n".join(p for p in parts if p)
    if _get(content, "content") is not None:  # a whole message
        return content_text(_get(content, "content"))
    raise TypeError(f"message content must be a str or a list of blocks, not {type(content)}")


def last_user_text(messages: Iterable[Any]) -> str:
    """The text of the last ``user`` turn ("" when there is none)."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Iterable):
        raise TypeError(f"messages must be a list of chat messages, not {type(messages).__name__}")
    last = None
    for m in messages:
        if _get(m, "role") == "user":
            last = m
    return "" if last is None else content_text(_get(last, "content"))


def _reply_text(reply: Any) -> str:
    choices = getattr(reply, "choices", None)
    if choices is not None:  # an OpenAI ChatCompletion
        return "\n".join(c.message.content or "" for c in choices)
    return content_text(reply)


# ---- one rail -----------------------------------------------------------------------


def _decide(guard: Guard, rail: str, text: str, on_check: OnCheck | None) -> GuardResult:
    # The hooks call the guard's non-raising check and raise here, with the rail named.
    r = guard._check(text)
    return _after(guard, rail, r, on_check)


async def _adecide(guard: Guard, rail: str, text: str, on_check: OnCheck | None) -> GuardResult:
    r = await guard._in_thread(guard._check, text)
    return _after(guard, rail, r, on_check)


def _worst(results: Sequence[GuardResult]) -> GuardResult:
    return next((r for r in results if not r.allowed), None) or max(
        results, key=lambda r: r.toxic_score
    )


def _decide_stream(guard: Guard, texts: list[str], on_check: OnCheck | None) -> GuardResult:
    return _after(guard, "output", _worst(guard._check_many(texts)), on_check)


async def _adecide_stream(guard: Guard, texts: list[str], on_check: OnCheck | None) -> GuardResult:
    results = await guard._in_thread(guard._check_many, texts, many=True)
    return _after(guard, "output", _worst(results), on_check)


def _rail_guard(guard: Guard, option: Any) -> Guard | None:
    """A rail's guard: ``True`` the hook's own, ``False`` none, or a ``Guard`` (typically
    ``guard.with_policy(...)``) when a rail decides under its own policy."""
    if isinstance(option, bool):
        return guard if option else None
    from guardrail_dro.serve.guard import Guard

    if isinstance(option, Guard):
        return option
    raise TypeError(f"input / output must be a bool or a Guard, not {type(option).__name__}")


def _after(guard: Guard, rail: str, r: GuardResult, on_check: OnCheck | None) -> GuardResult:
    if on_check is not None:
        on_check(rail, r)
    if not r.allowed and guard.policy.raise_on_violation:
        raise GuardViolation(r, rail)
    return r


class StreamRail:
    """The output rail of a stream: accumulates text, says when a check is due (a
    sentence end, or ``max_chars`` unchecked characters), and checks the unchecked text
    from the start of the sentence it continues (at most ``context_chars`` before it),
    so each check sees whole sentences rather than a diluted long tail, together with
    the rolling window of the reply so far (``due_texts``)."""

    _BOUNDARY = re.compile(r"[.!?;:\n]")

    def __init__(self, *, max_chars: int = 200, context_chars: int = 400) -> None:
        self.text = ""
        self.checked = 0
        self.max_chars = max_chars
        self.context_chars = context_chars

    @property
    def pending(self) -> bool:
        return len(self.text) > self.checked

    def feed(self, piece: str) -> bool:
        """Add a piece of text; True when the unchecked text should be checked now."""
        self.text += piece
        unchecked = len(self.text) - self.checked
        return unchecked > 0 and (unchecked >= self.max_chars or bool(self._BOUNDARY.search(piece)))

    def segment(self) -> str:
        """The text to check: the unchecked part, from the start of its sentence."""
        floor = max(0, self.checked - self.context_chars)
        ends = [m.end() for m in self._BOUNDARY.finditer(self.text, floor, self.checked)]
        return self.text[ends[-1] if ends else floor :]

    def passed(self) -> None:
        self.checked = len(self.text)

    def due_texts(self, guard: Guard, *, final: bool = False) -> list[str]:
        """What a check scores, in one batch: the unchecked segment and the rolling
        window of the whole reply so far (its last ``max_length`` tokens: a statement
        split across sentences is seen whole), and, before the last chunk is released,
        the whole reply (every window of it)."""
        texts = [self.segment(), guard._tail_text(self.text)] if self.pending else []
        if final and self.text:
            texts.append(self.text)
        return list(dict.fromkeys(texts))


class _Events:
    """How a stream's items carry text, and what ends a stream on a violation.

    The plain events are str chunks; anything else is refused (fail closed) rather
    than passed through as text the rail cannot read."""

    def text(self, item: Any) -> str:
        if not isinstance(item, str):
            raise TypeError(
                "a protected stream must yield str chunks (or be an OpenAI / Anthropic "
                f"SDK stream), not {type(item).__module__}.{type(item).__qualname__}"
            )
        return item

    def stop(self, result: GuardResult) -> list[Any]:
        return [result.replacement] if result.replacement else []


def _guard_stream(guard, items, events: _Events, on_check, close) -> Iterator[Any]:
    rail, held = StreamRail(), []
    try:
        for item in items:
            held.append(item)
            due = rail.feed(events.text(item))
            if rail.pending and not due:
                continue
            if due:
                r = _decide_stream(guard, rail.due_texts(guard), on_check)
                if not r.allowed:
                    close()
                    yield from events.stop(r)
                    return
                rail.passed()
            yield from held
            held.clear()
        texts = rail.due_texts(guard, final=True)
        if texts:
            r = _decide_stream(guard, texts, on_check)
            if not r.allowed:
                yield from events.stop(r)
                return
        yield from held
    finally:
        close()


async def _aguard_stream(guard, items, events: _Events, on_check, aclose) -> AsyncIterator[Any]:
    rail, held = StreamRail(), []
    try:
        async for item in items:
            held.append(item)
            due = rail.feed(events.text(item))
            if rail.pending and not due:
                continue
            if due:
                r = await _adecide_stream(guard, rail.due_texts(guard), on_check)
                if not r.allowed:
                    await aclose()
                    for ev in events.stop(r):
                        yield ev
                    return
                rail.passed()
            for ev in held:
                yield ev
            held.clear()
        texts = rail.due_texts(guard, final=True)
        if texts:
            r = await _adecide_stream(guard, texts, on_check)
            if not r.allowed:
                for ev in events.stop(r):
                    yield ev
                return
        for ev in held:
            yield ev
    finally:
        await aclose()


class GuardedStream:
    """A guarded stream: iterate it (or ``with`` it) like the SDK's own ``Stream``."""

    def __init__(self, gen: Iterator[Any], upstream: Any = None) -> None:
        self._gen, self._upstream = gen, upstream

    def __iter__(self) -> Iterator[Any]:
        return self._gen

    def __next__(self) -> Any:
        return next(self._gen)

    def __enter__(self) -> GuardedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._gen.close()

    def __getattr__(self, name: str) -> Any:  # response, headers... of the SDK stream
        return getattr(self._upstream, name)


class AsyncGuardedStream:
    """The async counterpart: ``async for`` / ``async with``."""

    def __init__(self, gen: AsyncIterator[Any], upstream: Any = None) -> None:
        self._gen, self._upstream = gen, upstream

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._gen

    async def __anext__(self) -> Any:
        return await self._gen.__anext__()

    async def __aenter__(self) -> AsyncGuardedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._gen.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._upstream, name)


def _closer(obj: Any) -> Callable[[], None]:
    close = getattr(obj, "close", None)
    return close if callable(close) else (lambda: None)


def _acloser(obj: Any) -> Callable[[], Any]:
    close = getattr(obj, "aclose", None) or getattr(obj, "close", None)

    async def aclose() -> None:
        if close is not None:
            out = close()
            if inspect.isawaitable(out):
                await out

    return aclose
