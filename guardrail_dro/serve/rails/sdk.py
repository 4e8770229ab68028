"""Guarded OpenAI and Anthropic clients: ``wrap_openai`` / ``wrap_anthropic`` (or
``wrap``) return the client with ``chat.completions.create`` / ``messages.create``
guarded, sync and async, ``stream=True`` included; every other path that makes model
output is refused and the rest is the client's own (``rails.coverage`` has the table).

Everything that knows the SDKs' shapes lives here: their stream events (``Events``
for ``guard_stream``), rebuilding a reply around a refusal (``replaced_reply``), and
telling an SDK stream from a plain one (``stream_events``, used by ``protect``). The
SDKs are imported only when a response is rebuilt, so importing this module imports
neither.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Mapping
from typing import Any

from guardrail_dro.serve.policy import GuardResult
from guardrail_dro.serve.rails.coverage import ANTHROPIC, OPENAI, guarded_view
from guardrail_dro.serve.rails.decide import OnCheck, RailGuard, adecide, decide, rail_guard
from guardrail_dro.serve.rails.messages import content_text, last_user_text, reply_text
from guardrail_dro.serve.rails.streams import (
    AsyncGuardedStream,
    Events,
    GuardedStream,
    acloser,
    aguard_stream,
    closer,
    guard_stream,
)

__all__ = ["replaced_reply", "stream_events", "wrap", "wrap_anthropic", "wrap_openai"]


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


class _OpenAIEvents(Events):
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


class _AnthropicEvents(Events):
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
        return reply_text(resp)

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


def replaced_reply(reply: Any, text: str) -> Any:
    """``reply`` with its text replaced by ``text``, keeping its shape: a str, an OpenAI
    ``ChatCompletion`` (``finish_reason="content_filter"``), an Anthropic ``Message``
    (``stop_reason="refusal"``), a message dict; anything else becomes the str."""
    if isinstance(reply, str):
        return text
    if getattr(reply, "choices", None) is not None:
        return _openai_replaced(reply, text)
    if getattr(reply, "type", None) == "message":
        return _anthropic_replaced(reply, text)
    if isinstance(reply, Mapping):
        return {**reply, "content": text}
    return text


def stream_events(reply: Any) -> Events:
    """The events reader for a streamed reply: the SDK's own for an OpenAI / Anthropic
    ``Stream`` / ``AsyncStream`` (found in ``sys.modules``, so the SDKs are never
    imported here), str chunks otherwise."""
    readers: tuple[tuple[str, type[Events]], ...] = (
        ("openai", _OpenAIEvents),
        ("anthropic", _AnthropicEvents),
    )
    for package, events in readers:
        sdk = sys.modules.get(package)
        if sdk is not None and isinstance(reply, sdk.Stream | sdk.AsyncStream):
            return events()
    return Events()


def _iter(items: Iterable[Any]) -> Generator[Any, None, None]:
    yield from items  # a generator: it has close(), like a guarded stream


async def _aiter(items: Iterable[Any]) -> AsyncGenerator[Any, None]:
    for item in items:
        yield item


_Adapter = type[_OpenAIAdapter] | type[_AnthropicAdapter]


def _guarded_create(
    create: Callable[..., Any],
    guard: RailGuard,
    adapter: _Adapter,
    *,
    is_async: bool,
    input: bool | RailGuard,
    output: bool | RailGuard,
    on_check: OnCheck | None,
) -> Callable[..., Any]:
    gin, gout = rail_guard(guard, input), rail_guard(guard, output)
    if is_async:
        acreate: Callable[..., Awaitable[Any]] = create

        async def guarded_acreate(*args: Any, **kwargs: Any) -> Any:
            stream = bool(kwargs.get("stream"))
            if gin is not None:
                text = last_user_text(kwargs.get("messages") or [])
                r = await adecide(gin, "input", text, on_check)
                if not r.allowed:
                    if stream:
                        return AsyncGuardedStream(_aiter(adapter.blocked_stream(kwargs, r)))
                    return adapter.blocked(kwargs, r)
            resp = await acreate(*args, **kwargs)
            if gout is None:
                return resp
            if stream:
                gen = aguard_stream(gout, resp, adapter.events(), on_check, acloser(resp))
                return AsyncGuardedStream(gen, resp)
            r = await adecide(gout, "output", adapter.reply_text(resp), on_check)
            return resp if r.allowed else adapter.replaced(resp, r.replacement or "")

        return functools.wraps(create)(guarded_acreate)

    def guarded_create(*args: Any, **kwargs: Any) -> Any:
        stream = bool(kwargs.get("stream"))
        if gin is not None:
            r = decide(gin, "input", last_user_text(kwargs.get("messages") or []), on_check)
            if not r.allowed:
                if stream:
                    return GuardedStream(_iter(adapter.blocked_stream(kwargs, r)))
                return adapter.blocked(kwargs, r)
        resp = create(*args, **kwargs)
        if gout is None:
            return resp
        if stream:
            gen = guard_stream(gout, resp, adapter.events(), on_check, closer(resp))
            return GuardedStream(gen, resp)
        r = decide(gout, "output", adapter.reply_text(resp), on_check)
        return resp if r.allowed else adapter.replaced(resp, r.replacement or "")

    return functools.wraps(create)(guarded_create)


def _is_async(client: Any) -> bool:
    return type(client).__name__.startswith("Async")


def wrap_openai(
    client: Any,
    guard: RailGuard,
    *,
    input: bool | RailGuard = True,
    output: bool | RailGuard = True,
    on_check: OnCheck | None = None,
) -> Any:
    """An ``openai.OpenAI`` / ``AsyncOpenAI`` whose ``chat.completions.create`` is guarded
    and every other path that would make model output unchecked refused
    (``UnguardedPathError``; see ``guardrail_dro.serve.rails.coverage``).
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
    return guarded_view(
        client,
        OPENAI,
        {"chat.completions.create": create},
        lambda c: wrap_openai(c, guard, input=input, output=output, on_check=on_check),
    )


def wrap_anthropic(
    client: Any,
    guard: RailGuard,
    *,
    input: bool | RailGuard = True,
    output: bool | RailGuard = True,
    on_check: OnCheck | None = None,
) -> Any:
    """An ``anthropic.Anthropic`` / ``AsyncAnthropic`` whose ``messages.create`` is guarded
    and every other path that would make model output unchecked refused (``messages.stream``
    among them: use ``create(stream=True)``)."""
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
    return guarded_view(
        client,
        ANTHROPIC,
        {"messages.create": create},
        lambda c: wrap_anthropic(c, guard, input=input, output=output, on_check=on_check),
    )


def wrap(client: Any, guard: RailGuard, **options: Any) -> Any:
    """``wrap_openai`` or ``wrap_anthropic``, by the client's package."""
    package = type(client).__module__.split(".")[0]
    if package == "openai":
        return wrap_openai(client, guard, **options)
    if package == "anthropic":
        return wrap_anthropic(client, guard, **options)
    raise TypeError(f"wrap() knows openai and anthropic clients, not {type(client)!r}")
