"""What both guarding proxies do around one upstream call: ``UpstreamCall``, the base of
``proxy.ChatProxy`` (OpenAI) and ``anthropic_proxy.MessagesProxy`` (Anthropic), and
``read_request`` / ``upstream_key``, the checks they share, and ``answering``, the guard
their rails decide with.

Both SDKs are Stainless-generated: the same client options and the same exception tree
(``APITimeoutError`` < ``APIConnectionError`` < ``APIError`` > ``APIStatusError``), so
the pool sizing, the deadline, the classification of an upstream failure, the key
scrubbing and the bad-reply error live here once, parametrized by the SDK module and
the option names. What differs stays with each proxy: the request's other fields, the
SSE format, the refusal, the error JSON and how a passed-through 4xx is read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar

from pydantic import SecretStr

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.http.forwarding import caller_headers, caller_query
from guardrail_dro.serve.http.schema import ApiError
from guardrail_dro.serve.policy import GuardResult, Policy
from guardrail_dro.serve.rails import RailGuard, input_texts

__all__ = [
    "MAX_NESTING",
    "MIN_SCRUBBED_KEY",
    "UpstreamCall",
    "answering",
    "read_body",
    "read_request",
    "sdk_kwargs",
    "upstream_key",
]

#: Upstream keys shorter than this are not scrubbed from what the upstream says: real
#: API keys are tens of characters; a short one is a placeholder for an upstream
#: without auth, and its letters occur in ordinary words.
MIN_SCRUBBED_KEY = 8

#: A request body nested deeper than this (arrays and objects) is refused (400). The
#: SDK re-encodes the body one stack frame a level, deeper in the stack than the parse:
#: a body of ~975 levels parsed, then failed its encoding as a RecursionError answered
#: 502 and blamed on the upstream. Real bodies (tool schemas included) nest a few dozen.
MAX_NESTING = 128


def upstream_key(option: str, key_env: str | None) -> SecretStr:
    """The upstream's key, read from the variable ``key_env`` that ``{option}-key-env``
    names (never from the command line, where ``ps`` and shell history show it).

    Raises:
        ConfigError: no variable named, or the variable unset or empty.
    """
    if not key_env:
        raise ConfigError(
            f"{option} needs {option}-key-env VAR: the name of an environment variable "
            "holding the upstream's API key (any value for an upstream without auth)"
        )
    key = os.environ.get(key_env, "").strip()
    if not key:
        raise ConfigError(f"{option}-key-env {key_env}: the variable is unset or empty")
    return SecretStr(key)


def read_body(raw: bytes, request: str) -> dict[str, Any]:
    """The caller's JSON body as every proxied route needs it, whatever its API's fields
    (``read_request`` reads a chat's or a Messages request's; ``responses_proxy`` a
    Responses request's, which has no ``messages``): ``request`` names what it should be.

    Raises:
        ApiError: 400: not JSON, not a JSON object, nested deeper than ``MAX_NESTING``, or
            a string escaping a lone UTF-16 surrogate (``"\\ud83d"``, JSON yet not
            text): the SDK cannot send it on as UTF-8 and raised before sending, which
            was answered 502 and logged as the upstream's fault.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object ({request})")
    if _nested_deeper(body, MAX_NESTING):
        raise ApiError(400, f"the body nests arrays and objects deeper than {MAX_NESTING} levels")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        why = "the body escapes a lone UTF-16 surrogate (a cut emoji?): send valid Unicode"
        raise ApiError(400, why) from None
    return body


def read_request(raw: bytes, *, request: str, parts: str, turns: str = "last") -> dict[str, Any]:
    """The caller's JSON body, checked as far as both proxies rely on it: ``request``
    names what it should be, ``parts`` what a user turn's list content holds, ``turns``
    the guard's ``Policy.input_turns`` (the turns its input rail reads).

    Raises:
        ApiError: 400 naming the field: not a JSON object, nested deeper than
            ``MAX_NESTING``, ``messages`` not a list of objects, a message the input
            rail cannot read (no role, a turn it reads
            whose content is neither text nor a list: wrap raises ``TypeError`` on it,
            the proxy answered 500, and under ``all`` a 502 for another role's turn),
            ``model`` not a string.
    """
    body = read_body(raw, request)
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "messages: give a list of message objects", param="messages")
    try:
        input_texts(messages, turns)
    except TypeError as exc:
        why = f"messages: {exc} (a turn's content is a string or a list of {parts})"
        raise ApiError(400, why, param="messages") from None
    if not isinstance(body.get("model"), str):
        raise ApiError(400, "model: give the upstream model's name (a string)", param="model")
    return body


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` holds containers more than ``limit`` deep: one pass over the
    parsed body, without recursion (the depth is what is in question)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def sdk_kwargs(
    body: dict[str, Any],
    names: Iterable[str],
    headers: dict[str, str] | None,
    query: dict[str, str] | None,
) -> dict[str, Any]:
    """A request body as SDK keyword arguments: the fields ``names`` lists (the SDK's
    parameters) as they are, every other field untouched through ``extra_body`` (so
    ``tools``, ``n``... reach the upstream), and the caller's forwarded ``headers`` and
    ``query`` (``UpstreamCall.sent_on``); both proxies build their calls so."""
    names = set(names)
    return {
        **{k: v for k, v in body.items() if k in names},
        "extra_body": {k: v for k, v in body.items() if k not in names} or None,
        "extra_headers": headers or None,
        "extra_query": query or None,
    }


class _Answering:
    """A guard's decisions under its Policy with ``raise_on_violation`` off."""

    def __init__(self, guard: RailGuard) -> None:
        self._guard = guard
        self.policy: Policy = dataclasses.replace(guard.policy, raise_on_violation=False)

    def decide(self, text: str) -> GuardResult:
        return self._guard.decide(text)

    def decide_many(self, texts: Sequence[str]) -> list[GuardResult]:
        return self._guard.decide_many(texts)

    async def adecide(self, text: str) -> GuardResult:
        return await self._guard.adecide(text)

    async def adecide_many(self, texts: Sequence[str]) -> list[GuardResult]:
        return await self._guard.adecide_many(texts)

    def last_window(self, text: str) -> str:
        return self._guard.last_window(text)


def answering(guard: RailGuard) -> RailGuard:
    """``guard`` as the proxies' rails decide with it: the same decisions, never raised.

    An HTTP caller cannot catch a ``GuardViolation``: under a raising Policy the proxies
    answered a refusal of their own, which lost what the rails keep around a refusal (a
    stream's usage chunk or ``message_delta``, read on after the refusal and closed with
    it inside the rails' generator, out of the proxy's reach; a reply's id and usage).
    Deciding without raising, the rails answer a raising Policy's refusal exactly as a
    replacing one's; ``on_check`` still sees every decision.
    """
    return _Answering(guard) if guard.policy.raise_on_violation else guard


class UpstreamCall:
    """One SDK client to ``upstream`` and the errors of calling it.

    A subclass names its SDK and options in the class attributes, builds the guarded
    ``_create`` and reads a passed-through 4xx (``_passed_through``). ``max_calls``:
    the server's bound on proxied calls in flight; the connection pool is sized to it,
    so that no admitted call waits unseen inside httpx for a connection (the SDKs' own
    pool is 1,000).
    """

    #: the SDK's module name (``openai``, ``anthropic``): its exceptions classify failures
    sdk: ClassVar[str]
    #: the HTTP library whose timeout and transport errors count as the upstream's
    http: ClassVar[str]
    #: the option that names the upstream; ``{option}-key-env`` names its key's variable
    option: ClassVar[str]
    #: what a good reply is (``a chat completion``) and what API the upstream should be
    reply: ClassVar[str]
    api: ClassVar[str]
    #: the proxy module's logger
    log: ClassVar[logging.Logger]
    #: the caller's headers forwarded whatever ``--forward-header`` names (lower case)
    always_forwarded: ClassVar[tuple[str, ...]] = ()

    def __init__(self, upstream: Any, client_cls: Any, http_client_cls: Any, max_calls: int):
        import httpx2  # the SDKs' HTTP client (httpx's successor)

        self.upstream = upstream
        pool = httpx2.Limits(
            max_connections=max_calls, max_keepalive_connections=min(max_calls, 100)
        )
        self._client = client_cls(
            base_url=upstream.url,
            api_key=upstream.api_key.get_secret_value(),
            timeout=upstream.timeout_s,
            max_retries=0,  # the caller's SDK owns retries; stacking them multiplies waits
            http_client=http_client_cls(limits=pool),
        )
        self._create: Callable[..., Any]

    def sent_on(
        self, headers: Iterable[tuple[str, str]], query: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Of the caller's ``headers`` (name, value pairs) and raw ``query`` string, the
        headers and query parameters forwarded to the upstream: ``always_forwarded`` and
        what ``upstream.forward_headers`` / ``forward_query`` name, where sent.

        Raises:
            ApiError: 400: a forwarded query parameter given twice (``caller_query``),
                or a forwarded header whose value is not ASCII (``caller_headers``).
        """
        names = (*self.always_forwarded, *self.upstream.forward_headers)
        return caller_headers(headers, names), caller_query(query, self.upstream.forward_query)

    async def aclose(self) -> None:
        """Close the upstream connections (on the loop that opened them)."""
        await self._client.close()

    async def _within(self, deadline: float, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()``'s result by the loop time ``deadline``; its failure (a timeout, or
        an error raised as it is called) as the ``ApiError`` the caller answers
        (``_upstream_error``)."""
        try:
            async with asyncio.timeout_at(deadline):
                return await call()
        except Exception as exc:
            raise self._upstream_error(exc) from None

    async def _call(self, deadline: float, **kwargs: Any) -> Any:
        """The guarded create's reply, by the loop time ``deadline``.

        Raises:
            ApiError: the upstream failed, or answered a stream request with JSON (the
                SDK reads no event of a JSON body: an empty reply).
        """
        reply = await self._within(deadline, functools.partial(self._create, **kwargs))
        if kwargs.get("stream"):
            sent = getattr(getattr(reply, "response", None), "headers", {})
            if sent.get("content-type", "").split(";")[0].strip().endswith("json"):
                await reply.close()
                raise self._bad_reply("JSON to a stream request (does it stream?)")
        return reply

    async def _released(self, stream: Any, deadline: float) -> AsyncGenerator[Any]:
        """``stream``'s chunks as the rail releases them, each read by the loop time
        ``deadline`` (httpx bounds each read only: a trickling upstream held the call
        for ever). The caller closes ``stream`` and this (``contextlib.aclosing``) and
        turns what this raises into its ``error`` event."""
        chunks = aiter(stream)
        while True:
            try:
                async with asyncio.timeout_at(deadline):  # no yield inside it
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            yield chunk

    def _upstream_error(self, exc: Exception) -> ApiError:
        """What the caller is answered for an upstream failure (naming the upstream's URL,
        never its key).

        An exception that is no HTTP or SDK error was raised reading what the upstream
        sent (the SDK's SSE parser on a malformed event, the rails on a reply of another
        shape): the request the rails read was checked and a guard decides without
        raising, so it is a 502 (``_unreadable``), rather than a 500 and a connection
        cut mid-stream.
        """
        import importlib

        sdk, http = importlib.import_module(self.sdk), importlib.import_module(self.http)
        name = self.upstream.name
        if isinstance(exc, TimeoutError | sdk.APITimeoutError | http.TimeoutException):
            why = f"the upstream {name} did not answer within {self.upstream.timeout_s:g} s"
            return ApiError(504, why, type="server_error", code="upstream_timeout")
        if isinstance(exc, sdk.APIConnectionError | http.TransportError):
            why = f"cannot reach the upstream {name}: is it running, and is {self.option} right?"
            return ApiError(502, why, type="server_error", code="upstream_unreachable")
        if not isinstance(exc, sdk.APIStatusError):
            return self._unreadable(exc)
        status = exc.status_code
        if status in (401, 403):
            why = (
                f"the upstream {name} refused this server's key ({status}): check the "
                f"variable {self.option}-key-env names"
            )
            return ApiError(502, why, type="server_error", code="upstream_auth")
        if 400 <= status < 500:
            return self._passed_through(exc)
        return self._failed(exc)

    def _unreadable(self, exc: Exception) -> ApiError:
        """A failure that is no HTTP status: logged with its traceback, a 502."""
        self.log.warning("unreadable answer from the upstream %s", self.upstream.name, exc_info=exc)
        return self._bad_reply(f"what this server cannot read ({type(exc).__name__})")

    def _failed(self, exc: Any) -> ApiError:
        """An upstream status that is no 4xx (a 5xx; an SDK's error for a 200 stream)."""
        why = f"the upstream {self.upstream.name} failed ({exc.status_code}); retry later"
        return ApiError(502, why, type="server_error", code="upstream_error")

    def _passed_through(self, exc: Any) -> ApiError:
        """An upstream 4xx as the upstream said it, in the proxy's error shape."""
        raise NotImplementedError

    def _bad_reply(self, what: str, *, reply: str | None = None) -> ApiError:
        """A 502: the upstream sent ``what``, not ``reply`` (default: ``self.reply``)."""
        why = (
            f"the upstream {self.upstream.name} sent {what}, not {reply or self.reply}: is "
            f"{self.option} {self.api} API root?"
        )
        return ApiError(502, why, type="server_error", code="upstream_bad_reply")

    def _scrubbed(self, value: Any) -> Any:
        """``value`` with every copy of the upstream's key replaced by ``***``, in nested
        objects and lists too (an error's ``message`` or ``param`` may be one: its
        ``str()`` showed the key). A key under ``MIN_SCRUBBED_KEY`` characters is a
        placeholder for an upstream without auth (README: "any value"), not a secret:
        replacing it garbled every message (key ``x``: ``ma***_tokens``)."""
        key = self.upstream.api_key.get_secret_value()
        if len(key) < MIN_SCRUBBED_KEY:
            return value
        if isinstance(value, str):
            return value.replace(key, "***")
        if isinstance(value, dict):
            return {self._scrubbed(k): self._scrubbed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrubbed(v) for v in value]
        return value
