"""Hooks around chat pipelines.

- reading OpenAI / Anthropic message lists (``content_text``, ``last_user_text``);
- ``protect(guard)``: a decorator for any chat callable ``fn(messages, ...) -> reply``,
  sync or async, whose reply is a str, a message, an SDK response, or a stream of str;
- ``wrap_openai`` / ``wrap_anthropic`` (or ``wrap``): a client whose
  ``chat.completions.create`` / ``messages.create`` is guarded, sync and async,
  ``stream=True`` included; every other attribute is the client's own, unguarded.

What a violation does (``GuardResult.action``): ``replace`` puts the policy's refusal in
place of the content, ``block`` withholds it (empty content), ``flag`` lets it through;
a blocked input never reaches the model. With ``Policy(raise_on_violation=True)`` the
hooks raise ``GuardViolation`` instead. ``on_check(rail, result)`` sees every result
(``rail`` is ``input`` or ``output``): the place to log flags.

Streams: chunks are held back until the text they carry has been checked, at sentence
ends or every ``max_chars`` characters, so nothing unchecked reaches the caller. Each
check scores the new sentence and the rolling window of the reply so far (its last
``max_length`` tokens), and the whole reply is checked before the last chunk is
released; a violation closes the upstream response and ends the stream with the refusal
(``finish_reason="content_filter"`` / ``stop_reason="refusal"``).
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from guardrail_dro.policy import GuardResult, GuardViolation

if TYPE_CHECKING:
    from guardrail_dro.guard import Guard

__all__ = [
    "AsyncGuardedStream",
    "GuardedStream",
    "OnCheck",
    "StreamRail",
    "content_text",
    "last_user_text",
    "protect",
    "wrap",
    "wrap_anthropic",
    "wrap_openai",
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
    from guardrail_dro.guard import Guard

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


# ---- the decorator ------------------------------------------------------------------


def _messages(args: tuple, kwargs: dict) -> Any:
    if "messages" in kwargs:
        return kwargs["messages"]
    if not args:
        raise TypeError("a protected chat callable takes the messages first or as messages=")
    return args[0]


def _reply_text(reply: Any) -> str:
    choices = getattr(reply, "choices", None)
    if choices is not None:  # an OpenAI ChatCompletion
        return "\n".join(c.message.content or "" for c in choices)
    return content_text(reply)


def _replace_reply(reply: Any, text: str) -> Any:
    if isinstance(reply, str):
        return text
    if getattr(reply, "choices", None) is not None:
        return _openai_replaced(reply, text)
    if getattr(reply, "type", None) == "message":
        return _anthropic_replaced(reply, text)
    if isinstance(reply, Mapping):
        return {**reply, "content": text}
    return text


def _stream_events(reply: Any) -> _Events:
    """The events reader for a streamed reply: the SDK's own for an OpenAI / Anthropic
    ``Stream`` / ``AsyncStream`` (found in ``sys.modules``, so the SDKs are never
    imported here), str chunks otherwise."""
    for package, events in (("openai", _OpenAIEvents), ("anthropic", _AnthropicEvents)):
        sdk = sys.modules.get(package)
        if sdk is not None and isinstance(reply, sdk.Stream | sdk.AsyncStream):
            return events()
    return _Events()


def protect(
    guard: Guard,
    *,
    input: bool | Guard = True,
    output: bool | Guard = True,
    on_check: OnCheck | None = None,
) -> Callable[[Callable], Callable]:
    """Guard a chat callable ``fn(messages, ...) -> reply`` (also ``guard.protect``).

    The input rail checks the last user turn before ``fn`` runs (a blocked input returns
    the replacement without calling ``fn``); the output rail checks the reply (a str, a
    message dict, an OpenAI ChatCompletion, an Anthropic Message, an iterator / async
    iterator of str chunks, or an OpenAI / Anthropic SDK ``Stream`` / ``AsyncStream``,
    checked as it streams; a stream yielding anything else raises TypeError).
    ``input`` / ``output`` turn a rail off (False) or give it its own guard (a ``Guard``,
    e.g. ``guard.with_policy(Policy(toxic_threshold=0.3))``). An async
    generator function stays one: its input rail is awaited off the event loop.

    Example:
        >>> @guard.protect()
        ... def chat(messages): return llm(messages)
    """

    gin, gout = _rail_guard(guard, input), _rail_guard(guard, output)

    def deco(fn: Callable) -> Callable:
        def _astream(reply: Any) -> AsyncGuardedStream:
            gen = _aguard_stream(gout, reply, _stream_events(reply), on_check, _acloser(reply))
            return AsyncGuardedStream(gen, reply)

        def _stream(reply: Any) -> GuardedStream:
            gen = _guard_stream(gout, reply, _stream_events(reply), on_check, _closer(reply))
            return GuardedStream(gen, reply)

        async def _aoutput(reply: Any) -> Any:
            if gout is None:
                return reply
            if isinstance(reply, AsyncIterator):
                return _astream(reply)
            r = await _adecide(gout, "output", _reply_text(reply), on_check)
            return reply if r.allowed else _replace_reply(reply, r.replacement or "")

        async def _ainput(args: tuple, kwargs: dict) -> GuardResult | None:
            if gin is None:
                return None
            text = last_user_text(_messages(args, kwargs))
            r = await _adecide(gin, "input", text, on_check)
            return None if r.allowed else r

        if inspect.isasyncgenfunction(fn):
            # An async generator: the input rail runs off the loop before the first item.

            @functools.wraps(fn)
            async def agen_guarded(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                blocked = await _ainput(args, kwargs)
                if blocked is not None:
                    if blocked.replacement:
                        yield blocked.replacement
                    return
                reply = fn(*args, **kwargs)
                stream = _astream(reply) if gout is not None else reply
                try:
                    async for item in stream:
                        yield item
                finally:
                    await _acloser(stream)()

            return agen_guarded

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def aguarded(*args: Any, **kwargs: Any) -> Any:
                blocked = await _ainput(args, kwargs)
                if blocked is not None:
                    return blocked.replacement
                reply = await fn(*args, **kwargs)
                return await _aoutput(reply)

            return aguarded

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if gin is not None:
                r = _decide(gin, "input", last_user_text(_messages(args, kwargs)), on_check)
                if not r.allowed:
                    return r.replacement
            reply = fn(*args, **kwargs)
            if gout is None:
                return reply
            if isinstance(reply, AsyncIterator):
                return _astream(reply)
            if isinstance(reply, Iterator):
                return _stream(reply)
            r = _decide(gout, "output", _reply_text(reply), on_check)
            return reply if r.allowed else _replace_reply(reply, r.replacement or "")

        return guarded

    return deco


# ---- OpenAI and Anthropic clients ---------------------------------------------------


def _openai_replaced(resp: Any, text: str) -> Any:
    choices = [
        c.model_copy(
            update={
                "message": c.message.model_copy(update={"content": text}),
                "finish_reason": "content_filter",
            }
        )
        for c in resp.choices
    ]
    return resp.model_copy(update={"choices": choices})


def _anthropic_replaced(msg: Any, text: str) -> Any:
    from anthropic.types import TextBlock

    content = [TextBlock(type="text", text=text)] if text else []
    return msg.model_copy(update={"content": content, "stop_reason": "refusal"})


class _OpenAIEvents(_Events):
    def __init__(self, model: str = "guard") -> None:
        self.first: Any = None
        self.model = model

    def text(self, chunk: Any) -> str:
        if self.first is None:
            self.first = chunk
        return "".join((c.delta.content or "") for c in chunk.choices if c.delta is not None)

    def stop(self, result: GuardResult) -> list[Any]:
        from openai.types.chat import ChatCompletionChunk

        base = self.first
        delta = {"content": result.replacement} if result.replacement else {}
        return [
            ChatCompletionChunk.model_validate(
                {
                    "id": getattr(base, "id", "guard-refusal"),
                    "object": "chat.completion.chunk",
                    "created": getattr(base, "created", int(time.time())),
                    "model": getattr(base, "model", self.model),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": "content_filter"}],
                }
            )
        ]


class _AnthropicEvents(_Events):
    def __init__(self) -> None:
        self.index = 0

    def text(self, event: Any) -> str:
        kind = getattr(event, "type", None)
        if kind == "content_block_start":
            self.index = event.index
        elif kind == "content_block_delta" and getattr(event.delta, "type", None) == "text_delta":
            return event.delta.text
        return ""

    def stop(self, result: GuardResult) -> list[Any]:
        from anthropic.types import (
            RawContentBlockDeltaEvent,
            RawContentBlockStopEvent,
            RawMessageDeltaEvent,
            RawMessageStopEvent,
        )

        out: list[Any] = []
        if result.replacement:
            out.append(
                RawContentBlockDeltaEvent.model_validate(
                    {
                        "type": "content_block_delta",
                        "index": self.index,
                        "delta": {"type": "text_delta", "text": result.replacement},
                    }
                )
            )
        out.append(RawContentBlockStopEvent(type="content_block_stop", index=self.index))
        out.append(
            RawMessageDeltaEvent.model_validate(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "refusal", "stop_sequence": None},
                    "usage": {"output_tokens": 0},
                }
            )
        )
        out.append(RawMessageStopEvent(type="message_stop"))
        return out


class _OpenAIAdapter:
    events = _OpenAIEvents

    @staticmethod
    def reply_text(resp: Any) -> str:
        return _reply_text(resp)

    replaced = staticmethod(_openai_replaced)

    @staticmethod
    def blocked(kwargs: dict, result: GuardResult) -> Any:
        from openai.types.chat import ChatCompletion

        return ChatCompletion.model_validate(
            {
                "id": "guard-refusal",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(kwargs.get("model", "guard")),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "content_filter",
                        "message": {"role": "assistant", "content": result.replacement},
                    }
                ],
            }
        )

    @staticmethod
    def blocked_stream(kwargs: dict, result: GuardResult) -> list[Any]:
        return _OpenAIEvents(str(kwargs.get("model", "guard"))).stop(result)


class _AnthropicAdapter:
    events = _AnthropicEvents

    @staticmethod
    def reply_text(msg: Any) -> str:
        return content_text(msg.content)

    replaced = staticmethod(_anthropic_replaced)

    @staticmethod
    def _message(kwargs: dict, text: str, stop: str | None) -> Any:
        from anthropic.types import Message

        return Message.model_validate(
            {
                "id": "msg_guard_refusal",
                "type": "message",
                "role": "assistant",
                "model": str(kwargs.get("model", "guard")),
                "content": [{"type": "text", "text": text}] if text else [],
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
        )

    @classmethod
    def blocked(cls, kwargs: dict, result: GuardResult) -> Any:
        return cls._message(kwargs, result.replacement or "", "refusal")

    @classmethod
    def blocked_stream(cls, kwargs: dict, result: GuardResult) -> list[Any]:
        from anthropic.types import RawContentBlockStartEvent, RawMessageStartEvent

        start = RawMessageStartEvent(type="message_start", message=cls._message(kwargs, "", None))
        block = RawContentBlockStartEvent.model_validate(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        )
        return [start, block, *_AnthropicEvents().stop(result)]


def _iter(items: Iterable[Any]) -> Iterator[Any]:
    yield from items  # a generator: it has close(), like a guarded stream


async def _aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def _guarded_create(create, guard, adapter, *, is_async, input, output, on_check):
    gin, gout = _rail_guard(guard, input), _rail_guard(guard, output)
    if is_async:

        async def acreate(*args: Any, **kwargs: Any) -> Any:
            stream = bool(kwargs.get("stream"))
            if gin is not None:
                text = last_user_text(kwargs.get("messages") or [])
                r = await _adecide(gin, "input", text, on_check)
                if not r.allowed:
                    if stream:
                        return AsyncGuardedStream(_aiter(adapter.blocked_stream(kwargs, r)))
                    return adapter.blocked(kwargs, r)
            resp = await create(*args, **kwargs)
            if gout is None:
                return resp
            if stream:
                gen = _aguard_stream(gout, resp, adapter.events(), on_check, _acloser(resp))
                return AsyncGuardedStream(gen, resp)
            r = await _adecide(gout, "output", adapter.reply_text(resp), on_check)
            return resp if r.allowed else adapter.replaced(resp, r.replacement or "")

        return functools.wraps(create)(acreate)

    def screate(*args: Any, **kwargs: Any) -> Any:
        stream = bool(kwargs.get("stream"))
        if gin is not None:
            r = _decide(gin, "input", last_user_text(kwargs.get("messages") or []), on_check)
            if not r.allowed:
                if stream:
                    return GuardedStream(_iter(adapter.blocked_stream(kwargs, r)))
                return adapter.blocked(kwargs, r)
        resp = create(*args, **kwargs)
        if gout is None:
            return resp
        if stream:
            gen = _guard_stream(gout, resp, adapter.events(), on_check, _closer(resp))
            return GuardedStream(gen, resp)
        r = _decide(gout, "output", adapter.reply_text(resp), on_check)
        return resp if r.allowed else adapter.replaced(resp, r.replacement or "")

    return functools.wraps(create)(screate)


class _Proxy:
    """The wrapped object with some attributes replaced; everything else is its own."""

    def __init__(self, target: Any, **overrides: Any) -> None:
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def __repr__(self) -> str:
        return f"<guarded {self._target!r}>"


def _is_async(client: Any) -> bool:
    return type(client).__name__.startswith("Async")


def wrap_openai(
    client: Any,
    guard: Guard,
    *,
    input: bool | Guard = True,
    output: bool | Guard = True,
    on_check: OnCheck | None = None,
) -> Any:
    """An ``openai.OpenAI`` / ``AsyncOpenAI`` whose ``chat.completions.create`` is guarded.
    ``input`` / ``output``: a rail off (False), on (True), or on under its own ``Guard``.

    Example:
        >>> client = wrap_openai(OpenAI(max_retries=0), guard)
        >>> client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
    """
    completions = client.chat.completions
    create = _guarded_create(
        completions.create,
        guard,
        _OpenAIAdapter,
        is_async=_is_async(client),
        input=input,
        output=output,
        on_check=on_check,
    )
    chat = _Proxy(client.chat, completions=_Proxy(completions, create=create))
    return _Proxy(client, chat=chat)


def wrap_anthropic(
    client: Any,
    guard: Guard,
    *,
    input: bool | Guard = True,
    output: bool | Guard = True,
    on_check: OnCheck | None = None,
) -> Any:
    """An ``anthropic.Anthropic`` / ``AsyncAnthropic`` whose ``messages.create`` is guarded
    (``messages.stream`` is not: use ``create(stream=True)``)."""
    messages = client.messages
    create = _guarded_create(
        messages.create,
        guard,
        _AnthropicAdapter,
        is_async=_is_async(client),
        input=input,
        output=output,
        on_check=on_check,
    )

    def _unguarded(*_a: Any, **_k: Any) -> Any:
        raise NotImplementedError(
            "the guarded client does not guard messages.stream(); use "
            "messages.create(..., stream=True)"
        )

    return _Proxy(client, messages=_Proxy(messages, create=create, stream=_unguarded))


def wrap(client: Any, guard: Guard, **options: Any) -> Any:
    """``wrap_openai`` or ``wrap_anthropic``, by the client's package."""
    package = type(client).__module__.split(".")[0]
    if package == "openai":
        return wrap_openai(client, guard, **options)
    if package == "anthropic":
        return wrap_anthropic(client, guard, **options)
    raise TypeError(f"wrap() knows openai and anthropic clients, not {type(client)!r}")
