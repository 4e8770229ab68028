"""Guarded OpenAI and Anthropic clients: ``wrap_openai`` / ``wrap_anthropic`` (or
``wrap``) return the client with ``chat.completions.create`` and ``responses.create`` /
``messages.create`` guarded, sync and async, ``stream=True`` included; every other path
that makes model output is refused and the rest is the client's own (``rails.coverage``
has the table).

The SDKs' reply and event shapes live in ``guardrail_dro.serve.rails.replies`` (their
public names are re-exported here, where they were first published), the Responses
API's in ``rails.responses``. Importing this module imports neither SDK.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from guardrail_dro.errors import UnguardedPathError
from guardrail_dro.serve.rails.coverage import ANTHROPIC, OPENAI, guarded_view
from guardrail_dro.serve.rails.decide import (
    OnCheck,
    RailGuard,
    adecide,
    adecide_input_texts,
    decide,
    decide_input_texts,
    rail_guard,
)
from guardrail_dro.serve.rails.messages import input_texts, listed
from guardrail_dro.serve.rails.replies import (
    AnthropicAdapter,
    OpenAIAdapter,
    aiter_items,
    anthropic_refusal,
    iter_items,
    openai_refusal,
    replaced_reply,
    stream_events,
)
from guardrail_dro.serve.rails.responses import (
    ResponsesAdapter,
    prompt_texts,
    responses_input_texts,
)
from guardrail_dro.serve.rails.streams import (
    AsyncGuardedStream,
    GuardedStream,
    acloser,
    aguard_stream,
    closer,
    guard_stream,
)

__all__ = [
    "anthropic_refusal",
    "openai_refusal",
    "replaced_reply",
    "stream_events",
    "wrap",
    "wrap_anthropic",
    "wrap_openai",
]


_Adapter = type[OpenAIAdapter] | type[AnthropicAdapter] | type[ResponsesAdapter]


#: The arguments the input rail reads that the SDKs take as any iterable: an iterator,
#: read once by the rail, would reach the model empty (``messages.listed``); ``input``
#: is the Responses API's list of items.
_LISTED = ("messages", "tools", "functions", "input")


def _listed_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**kwargs, **{k: listed(kwargs[k]) for k in _LISTED if k in kwargs}}


def _sent(kwargs: dict[str, Any], key: str, absent: Any = None) -> Any:
    """``kwargs[key]`` as the SDK sends it: ``extra_body``'s when it has one, as given,
    a falsy value too (the SDK merges ``extra_body``, any mapping, over the request, so
    ``create(messages=[clean], extra_body={"messages": [harmful]})`` sent the harmful list
    while the rail read the clean one, and ``extra_body={"messages": None}`` read as no
    turns went unchecked; the ``/v1/messages`` proxy puts Anthropic's ``system`` there);
    else the argument, ``absent`` when it is not given (None or the SDK's ``NOT_GIVEN``)."""
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping) and key in extra:
        return extra[key]
    return kwargs.get(key) or absent


def _system(adapter: _Adapter, kwargs: dict[str, Any]) -> Any:
    """Anthropic's ``system`` parameter as sent (``_sent``), which
    ``Policy(input_turns="all")`` checks as a turn. None for OpenAI, whose system prompt
    is a message, and for the SDK's ``NOT_GIVEN`` / ``omit`` (only a str or a list of
    blocks is read: an iterator would be used up)."""
    if adapter is not AnthropicAdapter:
        return None
    system = _sent(kwargs, "system")
    return system if isinstance(system, str | list | tuple) else None


def _tools(adapter: _Adapter, kwargs: dict[str, Any]) -> Any:
    """The tool definitions as sent (``_sent``), which ``Policy(input_turns="all")``
    checks, each as a turn: ``tools``, then OpenAI's deprecated ``functions`` (the model
    reads both); None when neither is given. A value that is not a list is passed on as
    it is, for the rail under ``all`` to raise on (``TypeError``) rather than skip."""
    keys = ("tools", "functions") if adapter is OpenAIAdapter else ("tools",)
    given = [v for v in (_sent(kwargs, k) for k in keys) if v is not None]
    odd = [v for v in given if not isinstance(v, list | tuple)]
    if odd:
        return odd[0]
    return [t for v in given for t in v] if given else None


def _args(adapter: _Adapter, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with its iterators listed (``_listed_args``).

    Raises:
        UnguardedPathError: a Responses request with ``background=True``: its reply is
            fetched later by ``responses.retrieve``, which no output rail sees.
        TypeError: ``extra_body`` sets ``stream`` other than the argument: the server
            streams (or not) while the SDK reads the other way, and returns the raw
            SSE text as a str, which the output rail read as no reply.
    """
    if bool(_sent(kwargs, "stream")) != bool(kwargs.get("stream")):
        raise TypeError(
            "stream in extra_body differs from create's stream argument: the SDK would "
            "read the reply the wrong way and it would pass unchecked; pass stream= only"
        )
    if adapter is ResponsesAdapter and _sent(kwargs, "background"):
        raise UnguardedPathError(
            "responses.create(background=True) on a client from guard.wrap() is not "
            "guarded: its reply comes from responses.retrieve, unchecked; call it without "
            "background (stream=True included), or on wrapped.unguarded knowingly.",
            path="responses.create",
        )
    return _listed_args(kwargs)


def _input_texts(adapter: _Adapter, kwargs: dict[str, Any], turns: str) -> list[str]:
    """The texts the input rail scores for a request as sent (``_sent``): a chat's
    (``messages.input_texts``) or a Responses request's (``responses_input_texts``:
    its ``input``, ``instructions`` and ``tools``, and a ``prompt`` template's variables
    under every scope: ``prompt_texts``)."""
    if adapter is ResponsesAdapter:
        given = (_sent(kwargs, "input"), _sent(kwargs, "instructions"), _tools(adapter, kwargs))
        texts = responses_input_texts(*given, turns)
        variables = prompt_texts(_sent(kwargs, "prompt"))
        return [*(t for t in texts if t), *variables] or [""]
    messages, system = _sent(kwargs, "messages", []), _system(adapter, kwargs)
    return input_texts(messages, turns, system, _tools(adapter, kwargs))


def _checked(gout: RailGuard, adapter: _Adapter, resp: Any, on_check: OnCheck | None) -> Any:
    """The output rail on a whole reply: ``resp`` as it is, or replaced (``adapter``)."""
    r = decide(gout, "output", adapter.reply_text(resp), on_check)
    return resp if r.allowed else adapter.replaced(resp, r.replacement or "")


async def _achecked(gout: RailGuard, adapter: _Adapter, resp: Any, on_check: OnCheck | None) -> Any:
    """``_checked`` with the model off the event loop."""
    r = await adecide(gout, "output", adapter.reply_text(resp), on_check)
    return resp if r.allowed else adapter.replaced(resp, r.replacement or "")


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
            kwargs = _args(adapter, kwargs)
            stream = bool(kwargs.get("stream"))
            if gin is not None:
                texts = _input_texts(adapter, kwargs, gin.policy.input_turns)
                r = await adecide_input_texts(gin, texts, on_check)
                if not r.allowed:
                    if stream:
                        return AsyncGuardedStream(aiter_items(adapter.blocked_stream(kwargs, r)))
                    return adapter.blocked(kwargs, r)
            resp = await acreate(*args, **kwargs)
            if gout is None:
                return resp
            if stream:
                gen = aguard_stream(gout, resp, adapter.events(), on_check, acloser(resp))
                return AsyncGuardedStream(gen, resp)
            return await _achecked(gout, adapter, resp, on_check)

        return functools.wraps(create)(guarded_acreate)

    def guarded_create(*args: Any, **kwargs: Any) -> Any:
        kwargs = _args(adapter, kwargs)
        stream = bool(kwargs.get("stream"))
        if gin is not None:
            texts = _input_texts(adapter, kwargs, gin.policy.input_turns)
            r = decide_input_texts(gin, texts, on_check)
            if not r.allowed:
                if stream:
                    return GuardedStream(iter_items(adapter.blocked_stream(kwargs, r)))
                return adapter.blocked(kwargs, r)
        resp = create(*args, **kwargs)
        if gout is None:
            return resp
        if stream:
            gen = guard_stream(gout, resp, adapter.events(), on_check, closer(resp))
            return GuardedStream(gen, resp)
        return _checked(gout, adapter, resp, on_check)

    return functools.wraps(create)(guarded_create)


def _guarded_retrieve(
    retrieve: Callable[..., Any],
    guard: RailGuard,
    *,
    is_async: bool,
    output: bool | RailGuard,
    on_check: OnCheck | None,
) -> Callable[..., Any]:
    """``responses.retrieve`` with the output rail on the ``Response`` it fetches: a
    stored reply (``store=True`` is the API's default) is model output too, and one the
    rail replaced in ``create`` came back as the upstream stored it. A streamed retrieve
    (a background response's events) is refused: the events would start mid-reply."""
    gout = rail_guard(guard, output)

    def refuse_stream(kwargs: dict[str, Any]) -> None:
        if kwargs.get("stream"):
            raise UnguardedPathError(
                "responses.retrieve(stream=True) on a client from guard.wrap() is not "
                "guarded; retrieve without stream, or call wrapped.unguarded knowingly.",
                path="responses.retrieve",
            )

    if is_async:

        async def guarded_aretrieve(*args: Any, **kwargs: Any) -> Any:
            refuse_stream(kwargs)
            resp = await retrieve(*args, **kwargs)
            return resp if gout is None else await _achecked(gout, ResponsesAdapter, resp, on_check)

        return functools.wraps(retrieve)(guarded_aretrieve)

    def guarded_retrieve(*args: Any, **kwargs: Any) -> Any:
        refuse_stream(kwargs)
        resp = retrieve(*args, **kwargs)
        return resp if gout is None else _checked(gout, ResponsesAdapter, resp, on_check)

    return functools.wraps(retrieve)(guarded_retrieve)


def _sdk_of(client: Any) -> tuple[str, bool] | None:
    """(package, is async) of an OpenAI / Anthropic client or a subclass of one (Azure's,
    a user's own), by ``isinstance`` on the SDKs already imported; None otherwise."""
    for package, sync, async_ in (
        ("openai", "OpenAI", "AsyncOpenAI"),
        ("anthropic", "Anthropic", "AsyncAnthropic"),
    ):
        sdk = sys.modules.get(package)
        if sdk is None:
            continue
        if isinstance(client, getattr(sdk, async_)):
            return package, True
        if isinstance(client, getattr(sdk, sync)):
            return package, False
    return None


def _is_async(client: Any) -> bool:
    found = _sdk_of(client)
    return found[1] if found is not None else type(client).__name__.startswith("Async")


def wrap_openai(
    client: Any,
    guard: RailGuard,
    *,
    input: bool | RailGuard = True,
    output: bool | RailGuard = True,
    on_check: OnCheck | None = None,
) -> Any:
    """An ``openai.OpenAI`` / ``AsyncOpenAI`` whose ``chat.completions.create`` and
    ``responses.create`` are guarded (``background=True`` refused), ``responses.retrieve``
    has the output rail on what it fetches, and every other path
    that would make model output unchecked refused (``UnguardedPathError``; see
    ``guardrail_dro.serve.rails.coverage``).
    ``input`` / ``output``: a rail off (False), on (True), or on under its own ``Guard``.

    Example:
        >>> client = wrap_openai(OpenAI(max_retries=0), guard)
        >>> client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
    """
    is_async = _is_async(client)
    chat, responses = (
        _guarded_create(
            create,
            guard,
            adapter,
            is_async=is_async,
            input=input,
            output=output,
            on_check=on_check,
        )
        for create, adapter in (
            (client.chat.completions.create, OpenAIAdapter),
            (client.responses.create, ResponsesAdapter),
        )
    )
    retrieve = _guarded_retrieve(
        client.responses.retrieve, guard, is_async=is_async, output=output, on_check=on_check
    )
    return guarded_view(
        client,
        OPENAI,
        {
            "chat.completions.create": chat,
            "responses.create": responses,
            "responses.retrieve": retrieve,
        },
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
        AnthropicAdapter,
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
    """``wrap_openai`` or ``wrap_anthropic``, by the client's SDK (subclasses too)."""
    found = _sdk_of(client)
    package = found[0] if found is not None else type(client).__module__.split(".")[0]
    if package == "openai":
        return wrap_openai(client, guard, **options)
    if package == "anthropic":
        return wrap_anthropic(client, guard, **options)
    raise TypeError(f"wrap() knows openai and anthropic clients, not {type(client)!r}")
