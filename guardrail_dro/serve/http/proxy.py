"""The guarding proxy of ``POST /v1/chat/completions``: ``Upstream`` (where to forward)
and ``ChatProxy`` (the route's work once auth and the body bound have passed).

An app guarded in process calls ``guard.wrap(client).chat.completions.create``; one
guarded here only points its ``base_url`` at this server. The decision must be the same
in both places, so the proxy does not re-implement the rails: it calls the very
``wrap_openai`` create on an ``AsyncOpenAI`` whose ``base_url`` is the upstream. The
input rail refuses without calling the upstream (wrap's refusal, as JSON or as its
stream); the output rail replaces a harmful reply, reads tool-call arguments and
releases a stream's chunks only once checked, as in process.

Errors are OpenAI's error JSON: an upstream 4xx passes through with its status and
body (401 / 403 excepted: the upstream refused this server's key, which is no fault of
the caller's key, and real APIs echo part of the key they refused, so it is a 502), an
upstream 5xx, an unreachable upstream or a 200 that is no chat completion is a 502 and
a call not done within ``timeout_s`` a 504, each naming the upstream's URL, never its
key. ``timeout_s`` bounds the whole call, a stream's last chunk included: httpx's own
timeout bounds each read, and an upstream that trickled a byte at a time held the
request (and its connection) for ever. Once a stream has begun, any failure (an
upstream ``error`` event, a chunk that cannot be read, the deadline) is one ``error``
event and no ``[DONE]``, never a cut connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.http.forwarding import forward_header_names, forward_query_names
from guardrail_dro.serve.http.schema import ApiError, error_body
from guardrail_dro.serve.http.upstream_call import (
    UpstreamCall,
    answering,
    read_request,
    sdk_kwargs,
    upstream_key,
)
from guardrail_dro.serve.rails import OnCheck, RailGuard, wrap_openai

__all__ = [
    "ChatProxy",
    "ClosingStream",
    "Upstream",
    "check_tools",
    "openai_account",
    "upstream_from_env",
]

log = logging.getLogger(__name__)

#: What the caller's JSON passes as keyword arguments to ``create``; everything else
#: goes through ``extra_body`` untouched, so a parameter this SDK version does not know
#: still reaches the upstream, and no body field can set the SDK's own ``extra_headers``
#: or ``timeout``.
_KWARGS = ("model", "messages", "stream")


class Upstream(BaseModel):
    """The OpenAI-compatible API the proxy forwards to.

    Attributes:
        url: its API root, e.g. ``https://api.openai.com/v1``.
        api_key: its key (``SecretStr``: no repr, log line or error shows it).
        timeout_s: an upstream call not answered by then is a 504.
        forward_headers: the caller's headers sent on to it (``forwarding``; lower case,
            none by default); one a request lacks is not sent.
        forward_query: the caller's query parameters sent on to it (none by default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    api_key: SecretStr
    timeout_s: float = Field(600.0, gt=0)
    forward_headers: tuple[str, ...] = ()
    forward_query: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"--upstream must be an http(s) URL, e.g. https://api.openai.com/v1, not {url!r}"
            )
        return url.rstrip("/")

    @field_validator("forward_headers")
    @classmethod
    def _headers(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return forward_header_names(names)

    @field_validator("forward_query")
    @classmethod
    def _query(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return forward_query_names(names)

    @property
    def name(self) -> str:
        """The URL as errors name it: without any user:password part."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def upstream_from_env(
    url: str,
    key_env: str | None,
    timeout_s: float = 600.0,
    *,
    forward_headers: tuple[str, ...] = (),
    forward_query: tuple[str, ...] = (),
) -> Upstream:
    """The ``Upstream`` at ``url`` with its key read from the variable ``key_env`` (the
    key never comes from the command line, where ``ps`` and shell history show it),
    forwarding the caller's ``forward_headers`` and ``forward_query`` (``forwarding``).

    Raises:
        ConfigError: no variable named, the variable unset or empty, a bad URL, or a
            header name that is never forwarded (naming ``--forward-header``).
    """
    key = upstream_key("--upstream", key_env)
    try:
        return Upstream(
            url=url,
            api_key=key,
            timeout_s=timeout_s,
            forward_headers=forward_headers,
            forward_query=forward_query,
        )
    except ValidationError as exc:
        msg = str(exc.errors(include_url=False)[0]["msg"])
        raise ConfigError(msg.removeprefix("Value error, ")) from None


def openai_account(url: str) -> bool:
    """Whether ``url`` is OpenAI's own API, where the operator's ``OPENAI_ORG_ID`` /
    ``OPENAI_PROJECT_ID`` pick the account that pays (the only upstream they mean
    anything to)."""
    return urllib.parse.urlsplit(url).hostname == "api.openai.com"


def check_tools(body: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Refuse tool definitions the input rail under ``all`` cannot read (both proxies):
    it reads a list of objects (``rails.tool_args.definition_texts``), and anything else
    would raise there, answered 502 blaming an upstream never called (as ``system``).

    Raises:
        ApiError: 400 naming the field (``tools``, OpenAI's ``functions``).
    """
    for field in fields:
        tools = body.get(field)
        if tools is not None and not (
            isinstance(tools, list) and all(isinstance(t, dict) for t in tools)
        ):
            why = f"{field}: give a list of tool definitions (objects)"
            raise ApiError(400, why, param=field)


def _params(raw: bytes, turns: str) -> dict[str, Any]:
    """The caller's request, checked as far as the proxy relies on it.

    Raises:
        ApiError: 400 naming the field: ``read_request``'s checks, ``stream`` not a bool,
            under ``all`` ``tools`` / ``functions`` the input rail cannot read.
    """
    body = read_request(raw, request="a chat completion request", parts="parts", turns=turns)
    if turns == "all":
        check_tools(body, ("tools", "functions"))
    if not isinstance(body.get("stream", False), bool):
        raise ApiError(400, "stream: give true or false", param="stream")
    return body


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class ClosingStream(StreamingResponse):
    """A streamed response that closes its body, hence the upstream stream, however it
    ends: Starlette cancels a response whose client left, which leaves the body
    iterator suspended until garbage collection, and the upstream model writing on."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import anyio

        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


class ChatProxy(UpstreamCall):
    """``POST /v1/chat/completions`` through ``guard``'s rails to ``upstream``.

    ``on_check(rail, result)`` sees every rail decision (the server's metrics count
    refusals by path and rail with it). ``max_calls`` sizes the upstream connection pool
    (``UpstreamCall``). A raising Policy is answered as a replacing one (``answering``).
    """

    sdk, http, option = "openai", "httpx2", "--upstream"  # the SDK (3.x) runs on httpx2
    reply, api = "a chat completion", "an OpenAI-compatible"
    log = log
    #: The guarded client's method this proxy calls, and the body fields it passes by
    #: name (the rest go through ``extra_body``): a subclass proxies another route.
    create_path: tuple[str, ...] = ("chat", "completions", "create")
    kwargs_names: tuple[str, ...] = _KWARGS

    def __init__(
        self,
        guard: RailGuard,
        upstream: Upstream,
        *,
        on_check: OnCheck | None = None,
        max_calls: int = 1000,
    ) -> None:
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        super().__init__(upstream, AsyncOpenAI, DefaultAsyncHttpxClient, max_calls)
        self._turns = str(guard.policy.input_turns)  # what read_request checks
        if not openai_account(upstream.url):
            # The SDK fills these from OPENAI_ORG_ID / OPENAI_PROJECT_ID in this server's
            # environment and sent them (OpenAI-Organization, OpenAI-Project) to any
            # upstream: a local vLLM or a third party's API learnt the operator's OpenAI
            # account ids. A caller's own are still sent where --forward-header names them.
            self._client.organization = self._client.project = None
        rails: Any = wrap_openai(self._client, answering(guard), on_check=on_check)
        for name in self.create_path:
            rails = getattr(rails, name)
        self._create = rails

    def _read(self, raw: bytes) -> dict[str, Any]:
        """The caller's request, checked as far as this route relies on it (``_params``)."""
        return _params(raw, self._turns)

    def _check_reply(self, reply: Any) -> None:
        """Refuse a reply that is no ``ChatCompletion``: the SDK hands back the body's
        text (or a JSON scalar) when it cannot parse one; the output rail read it as
        text: it is no reply.

        Raises:
            ApiError: 502 (``_bad_reply``).
        """
        if not isinstance(getattr(reply, "choices", None), list):
            raise self._bad_reply(f"a {type(reply).__name__} without choices")

    async def answer(
        self,
        raw: bytes,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Response:
        """The response to one request body (auth and the size bound already passed);
        ``headers`` and ``query``: the caller's that ``upstream`` forwards, sent on."""
        deadline = asyncio.get_running_loop().time() + self.upstream.timeout_s
        try:
            body = self._read(raw)
            kwargs = sdk_kwargs(body, self.kwargs_names, headers, query)
            reply = await self._call(deadline, **kwargs)
            if not kwargs.get("stream"):
                self._check_reply(reply)
        except ApiError as err:
            return JSONResponse(error_body(err), status_code=err.status, headers=err.headers)
        if not kwargs.get("stream"):
            return JSONResponse(reply.to_dict(mode="json"))
        return ClosingStream(self._events(reply, deadline), media_type="text/event-stream")

    async def _events(self, stream: Any, deadline: float) -> AsyncIterator[bytes]:
        """The guarded stream as server-sent events, each chunk as the rail releases it,
        until the loop time ``deadline``; an upstream failure after the first byte can
        change no status, so it is one ``error`` event and no ``[DONE]`` (the SDKs raise
        on it)."""
        try:
            async with aclosing(self._released(stream, deadline)) as chunks:
                async for chunk in chunks:
                    yield _sse(chunk.to_dict(mode="json"))
            yield b"data: [DONE]\n\n"
        except Exception as exc:
            yield _sse(error_body(self._upstream_error(exc)))
        finally:
            await stream.close()

    def _unreadable(self, exc: Exception) -> ApiError:
        """An ``error`` event in the upstream's stream (an ``APIError`` with no status)
        names what the upstream said; anything else is ``UpstreamCall``'s."""
        import openai

        if isinstance(exc, openai.APIError):
            said = self._scrubbed(exc.message)
            why = f"the upstream {self.upstream.name} failed mid-stream: {said}"
            return ApiError(502, why, type="server_error", code="upstream_error")
        return super()._unreadable(exc)

    def _passed_through(self, exc: Any) -> ApiError:
        """An upstream 4xx as the upstream said it (any copy of the key scrubbed)."""
        said = self._scrubbed
        try:
            sent = exc.response.json()
        except ValueError:
            sent = None
        inner = sent.get("error") if isinstance(sent, dict) else None
        if not isinstance(inner, dict):
            inner = {"message": str(exc.message)}
        retry = exc.response.headers.get("retry-after")
        return ApiError(
            exc.status_code,
            str(said(inner.get("message") or f"the upstream {self.upstream.name} refused it")),
            type=str(said(inner.get("type") or "invalid_request_error")),
            param=said(inner.get("param")),
            code=said(inner.get("code")),
            headers={"Retry-After": retry} if retry else None,
        )
