"""The OpenAI and Anthropic SDKs' shapes, for the rails: their stream events
(``Events`` for ``guard_stream``, one channel per OpenAI choice), rebuilding a reply
around a refusal (``replaced_reply``: the text replaced, tool calls and reasoning dropped; their
arguments are read by ``tool_args``), the reply a blocked input gets
(``openai_refusal`` / ``anthropic_refusal``), and telling an SDK stream from a plain one
(``stream_events``).

The SDKs are imported only when a response is built, so importing this module imports
neither; ``sys.modules`` tells whether a reply can be one of theirs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from typing import Any

from guardrail_dro.serve.policy import GuardResult
from guardrail_dro.serve.rails.messages import (
    REASONING_FIELDS,
    reasoning_text,
    reply_text,
    spoken_text,
)
from guardrail_dro.serve.rails.responses import ResponsesAdapter
from guardrail_dro.serve.rails.streams import Events, GuardedStream
from guardrail_dro.serve.rails.tool_args import AnthropicToolStream, OpenAIToolStream

__all__ = [
    "AnthropicAdapter",
    "OpenAIAdapter",
    "aiter_items",
    "anthropic_refusal",
    "iter_items",
    "openai_refusal",
    "replaced_reply",
    "stream_events",
]


#: What a refused reply loses besides its text: the tool calls an agent loop would run,
#: the speech of an audio reply (its transcript is the text that was refused), and the
#: model's own ``refusal`` text (model output like the rest, read with it).
_OPENAI_DROPPED = {"tool_calls": None, "function_call": None, "audio": None, "refusal": None}


def _unreasoned(message: Any) -> dict[str, None]:
    """The reasoning fields ``message`` carries, each set to None for a refused reply
    (its reasoning is model text like the rest); a message without them gains none, so
    a plain reply keeps the SDK's own shape."""
    extra = getattr(message, "model_extra", None) or {}
    return {k: None for k in REASONING_FIELDS if k in extra}


def _openai_replaced(resp: Any, text: str) -> Any:
    """``resp`` with every choice refused; its ``logprobs`` go too: their tokens spell
    the refused text out (``"".join`` of them was the reply, refusal or not)."""
    choices = [
        c.model_copy(
            update={
                "message": c.message.model_copy(
                    update={"content": text, **_OPENAI_DROPPED, **_unreasoned(c.message)}
                ),
                "finish_reason": "content_filter",
                "logprobs": None,
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
    accounted = True

    def __init__(self, model: str = "guard") -> None:
        self.first: Any = None
        self.model = model
        self.indices: dict[int, None] = {0: None}  # the choices seen, in order
        self.tools = OpenAIToolStream()
        self.thinking: set[int] = set()  # the choices whose last text was reasoning

    def texts(self, chunk: Any) -> list[tuple[Any, str]]:
        if self.first is None:
            self.first = chunk
        out = []
        for c in chunk.choices:
            self.indices.setdefault(c.index)
            if c.delta is not None:
                # a choice's reasoning, on its channel: its delta is held until checked;
                # a line break where the answer follows it, so their words stay apart
                thought = reasoning_text(c.delta)
                said = (c.delta.content or "") + (c.delta.refusal or "") + spoken_text(c.delta)
                if said and c.index in self.thinking and not thought:
                    self.thinking.discard(c.index)
                    said = "\n" + said
                if thought:
                    self.thinking.add(c.index)
                out.append((c.index, thought + said))
        return out

    def tool_texts(self, chunk: Any) -> list[tuple[Any, str]]:
        return [piece for c in chunk.choices for piece in self.tools.feed(c)]

    @property
    def holding(self) -> bool:
        return self.tools.holding

    def rest(self) -> list[tuple[Any, str]]:
        return self.tools.rest()

    def accounting(self, chunk: Any) -> bool | None:
        """A chunk without choices is accounting (the usage chunk of
        ``stream_options={"include_usage": True}``, Azure's prompt filter results); one
        whose choices carry nothing but a role or a finish is neither."""
        if not chunk.choices:
            return True
        quiet = all(
            getattr(c, "logprobs", None) is None
            and not any(v for k, v in dict(c.delta or {}).items() if k != "role")
            for c in chunk.choices
        )
        return False if quiet else None

    def stop(self, result: GuardResult, tail: Iterable[Any] = ()) -> list[Any]:
        """Every choice ended by the refusal, then the usage chunk(s) as sent."""
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
                    "choices": [
                        {"index": i, "delta": delta, "finish_reason": "content_filter"}
                        for i in self.indices
                    ],
                }
            ),
            *tail,
        ]


class _AnthropicEvents(Events):
    """Text deltas on one channel, tool-use input by block (``AnthropicToolStream``);
    thinking deltas are not read (not shown to users, run by no agent)."""

    accounted = True

    def __init__(self) -> None:
        self.blocks: dict[int, str] = {}  # the blocks the caller was given: index -> type
        self.open: int | None = None  # the one of them whose stop the caller has not had
        self.tools = AnthropicToolStream()

    def text(self, event: Any) -> str:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta" and getattr(event.delta, "type", None) == "text_delta":
            return event.delta.text
        return ""

    def tool_texts(self, event: Any) -> list[tuple[Any, str]]:
        return self.tools.feed(event)

    @property
    def holding(self) -> bool:
        return self.tools.holding

    def rest(self) -> list[tuple[Any, str]]:
        return self.tools.rest()

    def released(self, items: list[Any]) -> None:
        for event in items:
            kind = getattr(event, "type", None)
            if kind == "content_block_start":
                self.blocks[event.index] = getattr(event.content_block, "type", "")
                self.open = event.index
            elif kind == "content_block_stop" and event.index == self.open:
                self.open = None

    def accounting(self, event: Any) -> bool | None:
        """``message_delta`` is accounting (the output tokens); a block's or the
        message's stop is neither; a block's start or delta is output."""
        kind = getattr(event, "type", None)
        if kind == "message_delta":
            return True
        return False if kind in ("content_block_stop", "message_stop", "ping") else None

    def stop(self, result: GuardResult, tail: Iterable[Any] = ()) -> list[Any]:
        """The refusal, in step with what the caller was given: into the text block it
        has open, else in a new text block (a tool-use block held back never reached
        it, so the refusal takes its index). The message ends with the upstream's own
        ``message_delta`` when ``tail`` has it (its usage as sent, ``stop_reason``
        "refusal"); when the upstream was closed before it sent one, the output tokens
        are unknown and reported as 0 (the type requires a number)."""
        from anthropic.types import (
            RawContentBlockDeltaEvent,
            RawContentBlockStartEvent,
            RawContentBlockStopEvent,
            RawMessageDeltaEvent,
            RawMessageStopEvent,
        )

        out: list[Any] = []
        if self.open is not None and self.blocks[self.open] == "text":
            index = self.open
        else:
            if self.open is not None:
                out.append(RawContentBlockStopEvent(type="content_block_stop", index=self.open))
            index = max(self.blocks, default=-1) + 1
            out.append(
                RawContentBlockStartEvent.model_validate(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
            )
        if result.replacement:
            out.append(
                RawContentBlockDeltaEvent.model_validate(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": result.replacement},
                    }
                )
            )
        out.append(RawContentBlockStopEvent(type="content_block_stop", index=index))
        ended = {"stop_reason": "refusal", "stop_sequence": None}
        sent = [ev for ev in tail if getattr(ev, "type", None) == "message_delta"]
        if sent:
            delta = sent[-1].delta.model_copy(update=ended)
            out.append(sent[-1].model_copy(update={"delta": delta}))
        else:
            out.append(
                RawMessageDeltaEvent.model_validate(
                    {"type": "message_delta", "delta": ended, "usage": {"output_tokens": 0}}
                )
            )
        out.append(RawMessageStopEvent(type="message_stop"))
        return out


class OpenAIAdapter:
    """What the guarded ``create`` needs to know of OpenAI's replies and streams."""

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


class AnthropicAdapter:
    """What the guarded ``create`` needs to know of Anthropic's replies and streams."""

    events = _AnthropicEvents

    @staticmethod
    def reply_text(msg: Any) -> str:
        return reply_text(msg)

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
        from anthropic.types import RawMessageStartEvent

        start = RawMessageStartEvent(type="message_start", message=cls._message(kwargs, "", None))
        return [start, *_AnthropicEvents().stop(result)]  # opens text block 0 for it


def openai_refusal(result: GuardResult, *, model: str = "guard", stream: bool = False) -> Any:
    """What a guarded OpenAI client answers for a blocked input: a ``ChatCompletion``
    with the refusal (``finish_reason="content_filter"``), or with ``stream=True`` a
    stream of its chunks. For ``protect(blocked=...)`` around code that returns the
    SDK's objects."""
    kwargs = {"model": model}
    if stream:
        return GuardedStream(iter_items(OpenAIAdapter.blocked_stream(kwargs, result)))
    return OpenAIAdapter.blocked(kwargs, result)


def anthropic_refusal(result: GuardResult, *, model: str = "guard", stream: bool = False) -> Any:
    """``openai_refusal`` for Anthropic: a ``Message`` (``stop_reason="refusal"``) or its
    stream of events."""
    kwargs = {"model": model}
    if stream:
        return GuardedStream(iter_items(AnthropicAdapter.blocked_stream(kwargs, result)))
    return AnthropicAdapter.blocked(kwargs, result)


def replaced_reply(reply: Any, text: str) -> Any:
    """``reply`` with its text replaced by ``text``, keeping its shape: a str, an OpenAI
    ``ChatCompletion`` (``finish_reason="content_filter"``), a Responses ``Response``
    (``status="incomplete"``), an Anthropic ``Message``
    (``stop_reason="refusal"``), a message dict; anything else becomes the str."""
    if isinstance(reply, str):
        return text
    if getattr(reply, "choices", None) is not None:
        return _openai_replaced(reply, text)
    if getattr(reply, "object", None) == "response":
        return ResponsesAdapter.replaced(reply, text)
    if getattr(reply, "type", None) == "message":
        return _anthropic_replaced(reply, text)
    if isinstance(reply, Mapping):  # a message dict: its tool calls go with its text
        dropped = (*_OPENAI_DROPPED, *REASONING_FIELDS)
        kept = {k: v for k, v in reply.items() if k not in dropped}
        extra = kept.get("additional_kwargs")
        if isinstance(extra, Mapping):  # LangChain's place for them, read by reasoning_text
            kept["additional_kwargs"] = {k: v for k, v in extra.items() if k not in dropped}
        return {**kept, "content": text}
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


def iter_items(items: Iterable[Any]) -> Generator[Any, None, None]:
    """``items`` as a generator: it has ``close()``, like a guarded stream."""
    yield from items


async def aiter_items(items: Iterable[Any]) -> AsyncGenerator[Any, None]:
    """``items`` as an async generator (a blocked async stream's refusal events)."""
    for item in items:
        yield item
