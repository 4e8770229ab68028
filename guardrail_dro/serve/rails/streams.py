"""Checking a stream as it arrives: ``StreamRail`` (when to check, what to score), the
event protocol (``Events``: how a stream's items carry text, what ends a stream on a
violation), guarded iteration (``guard_stream`` / ``aguard_stream``) and the objects the
caller iterates (``GuardedStream`` / ``AsyncGuardedStream``).

Chunks are held back until the text they carry has been checked, at sentence ends or
every ``max_chars`` characters, so nothing unchecked reaches the caller. Each check
scores the new sentence and the rolling window of the reply so far (its last
``max_length`` tokens), and the whole reply is checked before the last chunk is
released; a violation closes the upstream response and ends the stream with what the
stream's ``Events`` say ends it (the refusal, then the call's accounting: see
``guard_stream``). A tool call's argument fragments are held
until the call is complete (``Events.holding``), then its arguments are checked on a
channel of their own, through the same windows, before any of its chunks is released.
The SDKs' own events live in ``guardrail_dro.serve.rails.replies``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Generator, Iterable
from typing import Any

from guardrail_dro.serve.policy import GuardResult
from guardrail_dro.serve.rails.decide import OnCheck, RailGuard, adecide_stream, decide_stream

__all__ = [
    "AsyncGuardedStream",
    "Events",
    "GuardedStream",
    "StreamRail",
    "acloser",
    "aguard_stream",
    "closer",
    "guard_stream",
]


class StreamRail:
    """The output rail of a stream: accumulates text, says when a check is due (a
    sentence end, or ``max_chars`` unchecked characters), and checks the unchecked text
    from the start of the sentence it continues (at most ``context_chars`` before it),
    so each check sees whole sentences rather than a diluted long tail, together with
    the rolling window of the reply so far (``due_texts``)."""

    _BOUNDARY = re.compile(r"[.!?;:\n]")

    def __init__(
        self,
        *,
        max_chars: int = 200,
        min_chars: int = 40,
        context_chars: int = 400,
        final_whole: bool = True,
    ) -> None:
        self.text = ""
        # False for a text fed whole and checked at once (a tool call's arguments): its
        # first check's segment is all of it, and the final check scored it a second time.
        self.final_whole = final_whole
        self.checked = 0
        self.max_chars = max_chars
        # A sentence end makes a check due only once this much text waits: code and
        # lists end a "sentence" every few characters, and a check per line made a
        # 2,180-character JSON reply cost 241 checks (35.6 s on a loaded CPU).
        self.min_chars = min_chars
        self.context_chars = context_chars

    @property
    def pending(self) -> bool:
        return len(self.text) > self.checked

    def feed(self, piece: str) -> bool:
        """Add a piece of text; True when the unchecked text should be checked now."""
        self.text += piece
        unchecked = len(self.text) - self.checked
        if unchecked >= self.max_chars:
            return True
        return unchecked >= self.min_chars and bool(
            self._BOUNDARY.search(self.text, len(self.text) - len(piece))
        )

    def segment(self) -> str:
        """The text to check: the unchecked part, from the start of its sentence."""
        floor = max(0, self.checked - self.context_chars)
        ends = [m.end() for m in self._BOUNDARY.finditer(self.text, floor, self.checked)]
        return self.text[ends[-1] if ends else floor :]

    def passed(self) -> None:
        self.checked = len(self.text)

    def due_texts(self, guard: RailGuard, *, final: bool = False) -> list[str]:
        """What a check scores, in one batch: the unchecked segment and the rolling
        window of the whole reply so far (its last ``max_length`` tokens: a statement
        split across sentences is seen whole), and, before the last chunk is released,
        the whole reply (every window of it)."""
        texts = [self.segment(), guard.last_window(self.text)] if self.pending else []
        if final and self.text and self.final_whole:
            texts.append(self.text)
        return list(dict.fromkeys(texts))


class _Rails:
    """One ``StreamRail`` per text channel of a stream (an OpenAI choice when ``n > 1``:
    interleaved choices joined into one text would split a statement across them)."""

    def __init__(self) -> None:
        self.rails: dict[Any, StreamRail] = {}

    @property
    def pending(self) -> bool:
        return any(r.pending for r in self.rails.values())

    def feed(self, pieces: Iterable[tuple[Any, str]], *, whole: bool = False) -> bool:
        """Add pieces by channel; True when a check is due. A ``whole`` piece (a tool
        call's complete arguments) is due at once: its call waits on nothing more."""
        due = False
        for channel, piece in pieces:
            rail = self.rails.get(channel) or self.rails.setdefault(
                channel, StreamRail(final_whole=not whole)
            )
            due |= rail.feed(piece) or (whole and rail.pending)
        return due

    def due_texts(self, guard: RailGuard, *, final: bool = False) -> list[str]:
        texts = [t for r in self.rails.values() for t in r.due_texts(guard, final=final)]
        return list(dict.fromkeys(texts))

    def passed(self) -> None:
        for r in self.rails.values():
            r.passed()


class Events:
    """How a stream's items carry text, and what ends a stream on a violation.

    The plain events are str chunks; anything else is refused (fail closed) rather
    than passed through as text the rail cannot read. The SDK streams subclass it."""

    #: True when a stream may end with accounting after its output (``accounting``),
    #: which a refused stream reads on for; str chunks have none, and are not pulled.
    accounted = False

    def text(self, item: Any) -> str:
        """The text an item carries.

        Raises:
            TypeError: the item is not a str (this reader knows nothing else).
        """
        if not isinstance(item, str):
            raise TypeError(
                "a protected stream must yield str chunks (or be an OpenAI / Anthropic "
                f"SDK stream), not {type(item).__module__}.{type(item).__qualname__}"
            )
        return item

    def texts(self, item: Any) -> list[tuple[Any, str]]:
        """The (channel, text) pieces an item carries: one channel unless a stream
        interleaves several replies (OpenAI's ``n > 1``), each then checked alone."""
        return [(0, self.text(item))]

    def tool_texts(self, item: Any) -> list[tuple[Any, str]]:
        """The (channel, text) of the tool calls an item completes, each checked whole
        on a channel of its own (``rails.tool_args``); plain chunks carry none."""
        return []

    @property
    def holding(self) -> bool:
        """True while a tool call's arguments are still arriving: the items wait until
        the call is complete and checked (only a complete call is runnable)."""
        return False

    def rest(self) -> list[tuple[Any, str]]:
        """The tool calls the stream ended without completing, checked on what came."""
        return []

    def released(self, items: list[Any]) -> None:
        """Told the items the caller is given, so that ``stop`` can end the stream in
        step with what the caller has seen (which content block is open)."""

    def accounting(self, item: Any) -> bool | None:
        """What an item is to a refused stream: True for the call's accounting (it
        carries no model output and reaches the caller after the refusal: OpenAI's usage
        chunk, Anthropic's ``message_delta``), False for an item that carries neither (a
        choice's finish: skipped), None for model output (the rail reads no further).
        Plain chunks are all output."""
        return None

    def stop(self, result: GuardResult, tail: Iterable[Any] = ()) -> list[Any]:
        """The items that end the stream on a violation: the refusal, if any, and what
        ``tail`` (the accounting items read, in order) says of the call."""
        return [result.replacement] if result.replacement else []


def _accounts(events: Events, held: Iterable[Any]) -> list[Any]:
    """The accounting items among items already read (none of them released)."""
    return [item for item in held if events.accounting(item)]


def _read_on(events: Events, upstream: Iterable[Any]) -> list[Any]:
    """After a refusal, the accounting items the upstream still sends before any more
    model output (at which reading stops)."""
    tail: list[Any] = []
    if not events.accounted:
        return tail
    for item in upstream:
        kind = events.accounting(item)
        if kind is None:
            break
        if kind:
            tail.append(item)
    return tail


async def _aread_on(events: Events, upstream: AsyncIterable[Any]) -> list[Any]:
    tail: list[Any] = []
    if not events.accounted:
        return tail
    async for item in upstream:
        kind = events.accounting(item)
        if kind is None:
            break
        if kind:
            tail.append(item)
    return tail


def guard_stream(
    guard: RailGuard,
    items: Iterable[Any],
    events: Events,
    on_check: OnCheck | None,
    close: Callable[[], None],
) -> Generator[Any, None, None]:
    """The items of ``items``, each released once the text up to it has passed (and any
    tool call it belongs to is complete and has passed); on a violation ``close()`` the
    upstream and yield ``events.stop(result, tail)`` instead.

    ``tail`` is the call's accounting (``Events.accounting``): the usage the upstream
    sent, and what it still sends before any more model output. Reading on stops at the
    first item that carries output, and the upstream is closed then, before the refusal
    is yielded: a model still writing would be paid for every token of a reply no one
    will see, and a slow caller would let it write on. So a refusal after the model
    finished (the final check, a tool call checked at its choice's finish) keeps the
    usage chunk, which a caller's token accounting reads; one mid-reply has none to keep
    (the provider bills what it made until the close, which no chunk reports)."""
    rail, held = _Rails(), []
    upstream = iter(items)
    try:
        for item in upstream:
            held.append(item)
            due = rail.feed(events.texts(item)) | rail.feed(events.tool_texts(item), whole=True)
            if due:
                r = decide_stream(guard, rail.due_texts(guard), on_check)
                if not r.allowed:
                    tail = _accounts(events, held) + _read_on(events, upstream)
                    close()
                    yield from events.stop(r, tail)
                    return
                rail.passed()
            if rail.pending or events.holding:
                continue
            events.released(held)
            yield from held
            held.clear()
        rail.feed(events.rest(), whole=True)
        texts = rail.due_texts(guard, final=True)
        if texts:
            r = decide_stream(guard, texts, on_check)
            if not r.allowed:
                yield from events.stop(r, _accounts(events, held))
                return
        yield from held
    finally:
        close()


async def aguard_stream(
    guard: RailGuard,
    items: AsyncIterable[Any],
    events: Events,
    on_check: OnCheck | None,
    aclose: Callable[[], Awaitable[None]],
) -> AsyncGenerator[Any, None]:
    """``guard_stream`` for an async stream, the model off the event loop (the same tail)."""
    rail, held = _Rails(), []
    upstream = aiter(items)
    try:
        async for item in upstream:
            held.append(item)
            due = rail.feed(events.texts(item)) | rail.feed(events.tool_texts(item), whole=True)
            if due:
                r = await adecide_stream(guard, rail.due_texts(guard), on_check)
                if not r.allowed:
                    tail = _accounts(events, held) + await _aread_on(events, upstream)
                    await aclose()
                    for ev in events.stop(r, tail):
                        yield ev
                    return
                rail.passed()
            if rail.pending or events.holding:
                continue
            events.released(held)
            for ev in held:
                yield ev
            held.clear()
        rail.feed(events.rest(), whole=True)
        texts = rail.due_texts(guard, final=True)
        if texts:
            r = await adecide_stream(guard, texts, on_check)
            if not r.allowed:
                for ev in events.stop(r, _accounts(events, held)):
                    yield ev
                return
        for ev in held:
            yield ev
    finally:
        await aclose()


class GuardedStream:
    """A guarded stream: iterate it (or ``with`` it) like the SDK's own ``Stream``."""

    def __init__(self, gen: Generator[Any, None, None], upstream: Any = None) -> None:
        self._gen, self._upstream = gen, upstream

    def __iter__(self) -> Generator[Any, None, None]:
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
        return _upstream_attr(self._upstream, name)


class AsyncGuardedStream:
    """The async counterpart: ``async for`` / ``async with``."""

    def __init__(self, gen: AsyncGenerator[Any, None], upstream: Any = None) -> None:
        self._gen, self._upstream = gen, upstream

    def __aiter__(self) -> AsyncGenerator[Any, None]:
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
        return _upstream_attr(self._upstream, name)


def _upstream_attr(upstream: Any, name: str) -> Any:
    if upstream is None:  # the input rail refused: no request was made
        raise AttributeError(
            f"this guarded stream has no {name!r}: the input rail refused the request, "
            "so no model call was made (the stream holds the refusal only)"
        )
    return getattr(upstream, name)


def closer(obj: Any) -> Callable[[], None]:
    """``obj.close`` when it has one, else a no-op: what ends an upstream response."""
    close = getattr(obj, "close", None)
    return close if callable(close) else (lambda: None)


def acloser(obj: Any) -> Callable[[], Awaitable[None]]:
    """An async closer for ``obj``: its ``aclose`` or ``close``, awaited when it returns
    an awaitable (the SDKs' async streams), else a no-op."""
    close = getattr(obj, "aclose", None) or getattr(obj, "close", None)

    async def aclose() -> None:
        if close is not None:
            out = close()
            if inspect.isawaitable(out):
                await out

    return aclose
