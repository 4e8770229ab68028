"""The guarding proxy of ``POST /v1/messages`` (Anthropic's Messages API):
``MessagesProxy``, the route's work once auth and the body bound have passed, and
``POST /v1/messages/count_tokens`` beside it, passed through with no guard decision.

The twin of ``proxy.ChatProxy`` for Claude apps, and for the same reason it calls the
very ``wrap_anthropic`` create, on an ``AsyncAnthropic`` whose ``base_url`` is the
upstream: its decisions are ``guard.wrap(client)``'s in process. The input rail refuses
without calling the upstream (wrap's ``anthropic_refusal``, as JSON or as its events);
the output rail replaces a harmful reply, reads ``tool_use`` input and releases a
stream's events only once checked.

Headers: the caller's ``anthropic-beta`` is always forwarded (a beta changes what the
request may hold and what the reply carries: a caller who names one means to use it, and
the upstream would refuse or ignore its fields without it), and those ``serve
--forward-header`` names (``forwarding``); ``anthropic-version`` never is: the SDK sends
the version whose shapes it parses, and the rails read replies with it.

Errors are Anthropic's error JSON (``anthropic_error_body``), with the statuses of
``ChatProxy``: an upstream 4xx passes through (any copy of the key scrubbed), 401 / 403
from the upstream, an unreachable or failing upstream and a 200 that is no message are a
502, a call not done within ``timeout_s`` (a stream's last event included) a 504, each
naming the upstream's URL, never its key. Once a stream has begun, a failure is one
``error`` event, as Anthropic sends it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.responses import JSONResponse, Response

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.http.forwarding import forward_header_names, forward_query_names
from guardrail_dro.serve.http.proxy import ClosingStream, Upstream, check_tools
from guardrail_dro.serve.http.schema import ApiError
from guardrail_dro.serve.http.upstream_call import (
    UpstreamCall,
    answering,
    read_request,
    sdk_kwargs,
    upstream_key,
)
from guardrail_dro.serve.rails import OnCheck, RailGuard, content_text, wrap_anthropic

__all__ = [
    "MessagesProxy",
    "anthropic_error",
    "anthropic_error_body",
    "anthropic_upstream_from_env",
]

log = logging.getLogger(__name__)

#: Passed to ``create`` as arguments; every other field goes through ``extra_body``, so
#: a parameter this SDK version does not know still reaches the upstream and no body
#: field can set the SDK's own ``extra_headers`` or ``timeout``.
_KWARGS = ("model", "messages", "max_tokens", "stream")

#: Anthropic's error type for each status this server answers itself.
_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def anthropic_error_body(err: ApiError) -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}``: what Anthropic answers.

    ``err.type`` is kept where it is not one of the generic OpenAI types this server
    uses (an upstream's own type, passed through); else the type follows the status.
    """
    kind = err.type
    if kind in ("invalid_request_error", "server_error"):
        kind = _TYPES.get(err.status, "api_error" if err.status >= 500 else kind)
    return {"type": "error", "error": {"type": kind, "message": err.message}}


def anthropic_error(err: ApiError) -> JSONResponse:
    """``err`` as the response Anthropic's SDK reads."""
    return JSONResponse(anthropic_error_body(err), status_code=err.status, headers=err.headers)


def anthropic_upstream_from_env(
    url: str,
    key_env: str | None,
    timeout_s: float = 600.0,
    *,
    forward_headers: tuple[str, ...] = (),
    forward_query: tuple[str, ...] = (),
) -> Upstream:
    """The Anthropic-compatible ``Upstream`` at ``url`` (its API root, without ``/v1``:
    the SDK adds ``/v1/messages``), its key read from the variable ``key_env``,
    forwarding the caller's ``forward_headers`` and ``forward_query`` (``forwarding``).

    Raises:
        ConfigError: no variable named, the variable unset or empty, a bad URL, one
            ending in ``/v1``, or a header name that is never forwarded.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "--anthropic-upstream must be an http(s) URL, e.g. https://api.anthropic.com, "
            f"not {url!r}"
        )
    if parts.path.rstrip("/").endswith("/v1"):
        raise ConfigError(
            f"--anthropic-upstream {url!r}: give the API root without /v1 (e.g. "
            "https://api.anthropic.com): the Anthropic SDK adds /v1/messages itself"
        )
    key = upstream_key("--anthropic-upstream", key_env)
    return Upstream(
        url=url,
        api_key=key,
        timeout_s=timeout_s,
        forward_headers=forward_header_names(forward_headers),
        forward_query=forward_query_names(forward_query),
    )


def _check_system(system: Any) -> None:
    """Refuse a ``system`` the input rail under ``all`` cannot read: the rail reads a str
    or a list of blocks only, so a single block object (``{"type": "text", ...}``) went
    to the upstream unchecked, and a block it cannot read answered 502 blaming the
    upstream.

    Raises:
        ApiError: 400 naming ``system``.
    """
    if system is None:
        return
    try:
        if not isinstance(system, str | list):
            raise TypeError(f"got {type(system).__name__}")
        content_text(system)
    except TypeError as exc:
        why = f"system: {exc} (give a string or a list of text blocks)"
        raise ApiError(400, why, param="system") from None


def _params(raw: bytes, turns: str) -> dict[str, Any]:
    """The caller's request, checked as far as the proxy relies on it.

    Raises:
        ApiError: 400 naming the field: ``read_request``'s checks, ``max_tokens`` not an
            integer, ``stream`` not a bool, under ``all`` a ``system`` or ``tools`` the
            input rail cannot read.
    """
    body = read_request(raw, request="a Messages API request", parts="blocks", turns=turns)
    if turns == "all":
        _check_system(body.get("system"))
        check_tools(body, ("tools",))
    tokens = body.get("max_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        raise ApiError(400, "max_tokens: give a whole number", param="max_tokens")
    if not isinstance(body.get("stream", False), bool):
        raise ApiError(400, "stream: give true or false", param="stream")
    return body


def _sse(data: dict[str, Any]) -> bytes:
    """One event as Anthropic writes it: the SDK skips an event with no ``event:`` line."""
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class MessagesProxy(UpstreamCall):
    """``POST /v1/messages`` through ``guard``'s rails to ``upstream``.

    ``on_check(rail, result)`` sees every rail decision (the metrics count refusals);
    ``max_calls`` sizes the upstream connection pool (``UpstreamCall``). A raising Policy
    is answered as a replacing one (``answering``).
    """

    sdk, http, option = "anthropic", "httpx2", "--anthropic-upstream"
    reply, api = "a message", "an Anthropic-compatible"
    log = log
    always_forwarded = ("anthropic-beta",)

    def __init__(
        self,
        guard: RailGuard,
        upstream: Upstream,
        *,
        on_check: OnCheck | None = None,
        max_calls: int = 1000,
    ) -> None:
        from anthropic import AsyncAnthropic, DefaultAsyncHttpxClient

        super().__init__(upstream, AsyncAnthropic, DefaultAsyncHttpxClient, max_calls)
        self._turns = str(guard.policy.input_turns)  # what read_request checks
        rails = wrap_anthropic(self._client, answering(guard), on_check=on_check)
        self._create = rails.messages.create

    async def answer(
        self,
        raw: bytes,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Response:
        """The response to one request body (auth and the size bound already passed);
        ``headers`` and ``query``: the caller's that are forwarded (``sent_on``)."""
        deadline = asyncio.get_running_loop().time() + self.upstream.timeout_s
        try:
            body = _params(raw, self._turns)
            kwargs = sdk_kwargs(body, _KWARGS, headers, query)
            reply = await self._call(deadline, **kwargs)
            # The SDK hands back the body's text when it cannot parse a Message; the
            # output rail read it as text, but it is no reply.
            if not kwargs.get("stream") and getattr(reply, "type", None) != "message":
                raise self._bad_reply(f"a {type(reply).__name__} that is no message")
        except ApiError as err:
            return anthropic_error(err)
        if not kwargs.get("stream"):
            return JSONResponse(reply.to_dict(mode="json"))
        return ClosingStream(self._events(reply, deadline), media_type="text/event-stream")

    async def _events(self, stream: Any, deadline: float) -> AsyncIterator[bytes]:
        """The guarded stream as Anthropic's server-sent events, each as the rail
        releases it, until the loop time ``deadline``; an upstream failure after the
        first byte can change no status, so it is one ``error`` event (the SDK raises)."""
        try:
            async with aclosing(self._released(stream, deadline)) as events:
                async for event in events:
                    yield _sse(event.to_dict(mode="json"))
        except Exception as exc:
            yield _sse(anthropic_error_body(self._upstream_error(exc)))
        finally:
            await stream.close()

    async def count_tokens(
        self,
        raw: bytes,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Response:
        """``POST /v1/messages/count_tokens``: the upstream's count as it sent it, with
        no guard decision (counting makes no model output, and refusing to count a
        prompt would refuse nothing: ``messages`` refuses it when sent), its key, errors
        and deadline those of ``answer``; ``headers`` and ``query`` forwarded as there."""
        deadline = asyncio.get_running_loop().time() + self.upstream.timeout_s
        try:
            body = read_request(raw, request="a token-counting request", parts="blocks")
            kwargs = {k: body[k] for k in ("model", "messages")}
            extra = {k: v for k, v in body.items() if k not in kwargs}
            count = functools.partial(
                self._client.messages.count_tokens,
                **kwargs,
                extra_body=extra or None,
                extra_headers=headers or None,
                extra_query=query or None,
            )
            reply = await self._within(deadline, count)
            if not isinstance(getattr(reply, "input_tokens", None), int):
                what = f"a {type(reply).__name__} without input_tokens"
                raise self._bad_reply(what, reply="a token count")
        except ApiError as err:
            return anthropic_error(err)
        return JSONResponse(reply.to_dict(mode="json"))

    def _failed(self, exc: Any) -> ApiError:
        """An ``error`` event in a 200 stream (Anthropic's ``overloaded_error``...) names
        what the upstream said; a 5xx is ``UpstreamCall``'s."""
        if exc.status_code < 400:
            said = self._passed_through(exc)
            why = f"the upstream {self.upstream.name} failed mid-stream: {said.message}"
            return ApiError(502, why, type=said.type, code="upstream_error")
        return super()._failed(exc)

    def _passed_through(self, exc: Any) -> ApiError:
        """An upstream 4xx as the upstream said it (any copy of the key scrubbed)."""
        sent = exc.body if isinstance(exc.body, dict) else None  # an event's, or the body's
        inner = sent.get("error") if isinstance(sent, dict) else None
        if not isinstance(inner, dict):
            inner = {}
        message = inner.get("message") or str(exc.message)
        kind = inner.get("type")
        kind = self._scrubbed(kind) if isinstance(kind, str) else "invalid_request_error"
        retry = exc.response.headers.get("retry-after")
        return ApiError(
            exc.status_code,
            str(self._scrubbed(message)),
            type=kind,
            headers={"Retry-After": retry} if retry else None,
        )
