"""``protect(guard)``: a decorator for any chat callable ``fn(messages, ...) -> reply``,
sync or async, whose reply is a str, a message, an SDK response (a Responses API
``Response`` too), or a stream (of str chunks, or the OpenAI / Anthropic SDK's own
``Stream`` / ``AsyncStream``, a Responses stream included).

What a violation does (``GuardResult.action``): ``replace`` puts the policy's refusal in
place of the content, ``block`` withholds it (empty content), ``flag`` lets it through;
a blocked input never reaches the model. With ``Policy(raise_on_violation=True)`` the
rails raise ``GuardViolation`` instead. ``on_check(rail, result)`` sees every result
(``rail`` is ``input`` or ``output``): the place to log flags.

Streams are checked as they arrive (``guardrail_dro.serve.rails.streams``); SDK replies
and streams are recognised and rebuilt by ``guardrail_dro.serve.rails.replies``.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from guardrail_dro.serve.policy import GuardResult
from guardrail_dro.serve.rails.decide import (
    OnCheck,
    RailGuard,
    adecide,
    adecide_input,
    decide,
    decide_input,
    rail_guard,
)
from guardrail_dro.serve.rails.messages import listed, reply_text
from guardrail_dro.serve.rails.replies import (
    OpenAIAdapter,
    iter_items,
    replaced_reply,
    stream_events,
)
from guardrail_dro.serve.rails.responses import ResponsesAdapter
from guardrail_dro.serve.rails.streams import (
    AsyncGuardedStream,
    Events,
    GuardedStream,
    acloser,
    aguard_stream,
    closer,
    guard_stream,
)

__all__ = ["output_text", "protect"]


def output_text(reply: Any) -> str:
    """The text the output rail reads in a reply: ``messages.reply_text``'s, and a
    Responses API ``Response``'s (``ResponsesAdapter.reply_text``; ``reply_text`` raised
    ``TypeError`` on one, and cannot import it: ``rails.responses`` reads messages)."""
    if getattr(reply, "object", None) == "response":
        return ResponsesAdapter.reply_text(reply)
    return reply_text(reply)


class _OpenAIStreamEvents(Events):
    """The events of an openai ``Stream``, which is a chat completion's or a Responses
    API's (``responses.create(stream=True)``): its first item says which reader reads
    it. ``stream_events`` took every openai stream for chat's, and a Responses stream
    failed on its first event (no ``choices``)."""

    accounted = True

    def __init__(self) -> None:
        self.inner: Events | None = None

    def _of(self, item: Any = None) -> Events:
        if self.inner is None:
            responses = str(getattr(item, "type", "")).startswith("response.")
            self.inner = (ResponsesAdapter if responses else OpenAIAdapter).events()
        return self.inner

    def text(self, item: Any) -> str:
        return self._of(item).text(item)

    def texts(self, item: Any) -> list[tuple[Any, str]]:
        return self._of(item).texts(item)

    def tool_texts(self, item: Any) -> list[tuple[Any, str]]:
        return self._of(item).tool_texts(item)

    @property
    def holding(self) -> bool:
        return self.inner is not None and self.inner.holding

    def rest(self) -> list[tuple[Any, str]]:
        return self._of().rest()

    def released(self, items: list[Any]) -> None:
        if items:
            self._of(items[0]).released(items)

    def accounting(self, item: Any) -> bool | None:
        return self._of(item).accounting(item)

    def stop(self, result: GuardResult, tail: Iterable[Any] = ()) -> list[Any]:
        return self._of().stop(result, tail)


def _events(reply: Any) -> Events:
    """The events reader for a streamed reply (``replies.stream_events``), an openai
    stream's chosen by its first item (``_OpenAIStreamEvents``)."""
    sdk = sys.modules.get("openai")
    if sdk is not None and isinstance(reply, sdk.Stream | sdk.AsyncStream):
        return _OpenAIStreamEvents()
    return stream_events(reply)


def _messages_at(fn: Callable[..., Any]) -> int:
    """Where the messages are among ``fn``'s positional arguments: after ``self`` /
    ``cls`` when ``fn`` is a method decorated in its class body, else first."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin or a C callable: no signature to read
        return 0
    return 1 if params[:1] in (["self"], ["cls"]) else 0


def _with_messages(
    at: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The messages, and the call's arguments with them as a list: an iterator (which
    the SDKs accept) would otherwise be used up by the input rail and reach the model
    empty."""
    if "messages" in kwargs:
        kwargs = {**kwargs, "messages": listed(kwargs["messages"])}
        return kwargs["messages"], args, kwargs
    if len(args) <= at:
        raise TypeError("a protected chat callable takes the messages first or as messages=")
    messages = listed(args[at])
    return messages, (*args[:at], messages, *args[at + 1 :]), kwargs


def protect(
    guard: RailGuard,
    fn: Callable[..., Any] | None = None,
    *,
    input: bool | RailGuard = True,
    output: bool | RailGuard = True,
    on_check: OnCheck | None = None,
    blocked: Callable[[GuardResult], Any] | None = None,
) -> Any:
    """Guard a chat callable ``fn(messages, ...) -> reply`` (also ``guard.protect``).

    Given ``fn`` (``@guard.protect``, no parentheses) it returns the guarded callable;
    without it (``@guard.protect(...)``) the decorator.

    The input rail checks the last user turn (or the turns the guard's
    ``Policy.input_turns`` names) before ``fn`` runs; a blocked input does
    not call ``fn`` and returns ``blocked(result)``: by default the replacement str (a
    generator function yields it once). A function whose caller reads an SDK object
    passes ``blocked=openai_refusal`` / ``anthropic_refusal`` (``rails.replies``; with
    ``functools.partial(..., stream=True)`` for a stream) to get one. The output rail
    checks the reply (a str, a message dict, an OpenAI ChatCompletion, an Anthropic
    Message, an iterator / async iterator of str chunks, or an OpenAI / Anthropic SDK
    ``Stream`` / ``AsyncStream``, checked as it streams; a stream yielding anything else
    raises TypeError). ``input`` / ``output`` turn a rail off (False) or give it its own
    guard (a ``Guard``, e.g. ``guard.with_policy(Policy(toxic_threshold=0.3))``). An
    async generator function stays one: its input rail is awaited off the event loop.
    The input rail finds the messages first or as ``messages=`` (after ``self`` / ``cls``
    for a method); an iterator of them is listed once, so the rail and ``fn`` both see
    them (without an input rail the call is passed as it is).

    Raises:
        TypeError: ``input`` / ``output`` is neither a bool nor a guard, or ``fn`` is
            not callable (e.g. ``@guard.protect(False)``: the options are keywords).

    Example:
        >>> @guard.protect
        ... def chat(messages): return llm(messages)
    """
    if fn is not None and not callable(fn):
        raise TypeError(
            f"protect() takes the function to guard, not {type(fn).__name__}; give "
            "input / output / on_check as keywords"
        )

    gin, gout = rail_guard(guard, input), rail_guard(guard, output)

    def refused(r: GuardResult) -> Any:
        return r.replacement if blocked is None else blocked(r)

    def refused_items(r: GuardResult) -> list[Any]:
        """What a generator yields for a blocked input: the refusal once (none when the
        policy's replacement is empty, as with ``block``)."""
        return [blocked(r)] if blocked is not None else [r.replacement] if r.replacement else []

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        at = _messages_at(fn)

        def _astream(out: RailGuard, reply: Any) -> AsyncGuardedStream:
            gen = aguard_stream(out, reply, _events(reply), on_check, acloser(reply))
            return AsyncGuardedStream(gen, reply)

        def _stream(out: RailGuard, reply: Any) -> GuardedStream:
            gen = guard_stream(out, reply, _events(reply), on_check, closer(reply))
            return GuardedStream(gen, reply)

        async def _aoutput(reply: Any) -> Any:
            if gout is None:
                return reply
            if isinstance(reply, AsyncIterator):
                return _astream(gout, reply)
            if isinstance(reply, Iterator):  # a sync stream from an async callable
                return _stream(gout, reply)
            r = await adecide(gout, "output", output_text(reply), on_check)
            return reply if r.allowed else replaced_reply(reply, r.replacement or "")

        async def _ainput(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[GuardResult | None, tuple[Any, ...], dict[str, Any]]:
            if gin is None:  # no rail reads the messages: the call is left as it is
                return None, args, kwargs
            messages, args, kwargs = _with_messages(at, args, kwargs)
            r = await adecide_input(gin, messages, on_check)
            return (None if r.allowed else r), args, kwargs

        if inspect.isasyncgenfunction(fn):
            # An async generator: the input rail runs off the loop before the first item.

            @functools.wraps(fn)
            async def agen_guarded(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                stop, args, kwargs = await _ainput(args, kwargs)
                if stop is not None:
                    for item in refused_items(stop):
                        yield item
                    return
                reply = fn(*args, **kwargs)
                stream = _astream(gout, reply) if gout is not None else reply
                try:
                    async for item in stream:
                        yield item
                finally:
                    await acloser(stream)()

            return agen_guarded

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def aguarded(*args: Any, **kwargs: Any) -> Any:
                stop, args, kwargs = await _ainput(args, kwargs)
                if stop is not None:
                    return refused(stop)
                reply = await fn(*args, **kwargs)
                return await _aoutput(reply)

            return aguarded

        generator = inspect.isgeneratorfunction(fn)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if gin is not None:
                messages, args, kwargs = _with_messages(at, args, kwargs)
                r = decide_input(gin, messages, on_check)
                if not r.allowed and generator:
                    # its caller iterates what it returns: the refusal is yielded once (a
                    # str returned would be iterated character by character)
                    return GuardedStream(iter_items(refused_items(r)))
                if not r.allowed:
                    return refused(r)
            reply = fn(*args, **kwargs)
            if gout is None:
                return reply
            if isinstance(reply, AsyncIterator):
                return _astream(gout, reply)
            if isinstance(reply, Iterator):
                return _stream(gout, reply)
            r = decide(gout, "output", output_text(reply), on_check)
            return reply if r.allowed else replaced_reply(reply, r.replacement or "")

        return guarded

    return deco if fn is None else deco(fn)
