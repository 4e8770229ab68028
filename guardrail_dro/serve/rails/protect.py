"""Hooks around chat pipelines.

- reading OpenAI / Anthropic message lists (``content_text``, ``last_user_text``);
- ``protect(guard)``: a decorator for any chat callable ``fn(messages, ...) -> reply``,
  sync or async, whose reply is a str, a message, an SDK response, or a stream (of str
  chunks, or the OpenAI / Anthropic SDK's own ``Stream`` / ``AsyncStream``);
- ``wrap_openai`` / ``wrap_anthropic`` (or ``wrap``): a client whose
  ``chat.completions.create`` / ``messages.create`` is guarded, sync and async,
  ``stream=True`` included; every other attribute is the client's own, unguarded.

What a violation does (``GuardResult.action``): ``replace`` puts the policy's refusal in
place of the content, ``block`` withholds it (empty content), ``flag`` lets it through;
a blocked input never reaches the model. With ``Policy(raise_on_violation=True)`` the
hooks raise ``GuardViolation`` instead. ``on_check(rail, result)`` sees every result
(``rail`` is ``input`` or ``output``): the place to log flags.

The rails themselves live in ``guardrail_dro.serve.rails.streams``, the clients in
``guardrail_dro.serve.rails.sdk``; this module is the public face of both.

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
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from guardrail_dro.serve.policy import GuardResult
from guardrail_dro.serve.rails.sdk import (
    _anthropic_replaced,
    _AnthropicEvents,
    _openai_replaced,
    _OpenAIEvents,
    wrap,
    wrap_anthropic,
    wrap_openai,
)
from guardrail_dro.serve.rails.streams import (
    AsyncGuardedStream,
    GuardedStream,
    OnCheck,
    StreamRail,
    _acloser,
    _adecide,
    _aguard_stream,
    _closer,
    _decide,
    _Events,
    _guard_stream,
    _rail_guard,
    _reply_text,
    content_text,
    last_user_text,
)

if TYPE_CHECKING:
    from guardrail_dro.serve.guard import Guard

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


def _messages(args: tuple, kwargs: dict) -> Any:
    if "messages" in kwargs:
        return kwargs["messages"]
    if not args:
        raise TypeError("a protected chat callable takes the messages first or as messages=")
    return args[0]


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
            if isinstance(reply, Iterator):  # a sync stream from an async callable
                return _stream(reply)
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
