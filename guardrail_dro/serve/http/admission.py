"""Admission control of the guarding proxies: ``ProxySlots``, a bound on proxied calls
in flight, shared by ``POST /v1/chat/completions`` and ``POST /v1/messages``.

Why: each proxied call runs the rails' checks on the event loop's thread pool and holds
an upstream connection for up to the upstream timeout (600 s by default); without a
bound a flood of calls grew memory, threads and upstream connections without end, and
queued behind itself on the thread pool. Past the bound a call is answered 503 with
``Retry-After`` at once, as the moderation route answers a full queue.

One bound for both routes rather than one each: what it protects (the thread pool, the
process's memory and sockets) is the server's, whichever API the call speaks. A call
holds its slot until its response is sent: a stream's until its last event, or until
the client leaves (Starlette cancels the response, and the slot is given back then).
A client that leaves before the response begins (its own timeout on a slow upstream)
is noticed as well: the call's work, the upstream request with it, is cancelled and the
slot given back at once, rather than held until the upstream answered no one (up to
``--upstream-timeout-s``, 600 s by default), refusing live callers 503 meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from guardrail_dro.serve.http.schema import ApiError

__all__ = ["DEFAULT_MAX_PROXY_CALLS", "ProxySlots"]

#: Proxied calls in flight by default: twice the event loop's default thread pool at
#: its largest (32 workers: the rails' checks run there), since most of a call's life
#: is spent waiting on the upstream, not checking; far below the SDKs' own pool of
#: 1,000 connections, which the proxies size to the bound anyway (``max_calls``).
DEFAULT_MAX_PROXY_CALLS = 64


class _Held:
    """An ASGI app: ``response``, then the slot given back however it ends (sent,
    failed, or cancelled by a client that left mid-stream)."""

    def __init__(self, response: Response, release: Callable[[], None]) -> None:
        self.response, self.release = response, release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.release()


async def _left(receive: Receive) -> None:
    """Returns once the client has gone (``http.disconnect``); the request body was read
    whole before, so nothing else arrives meanwhile."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _until_left(work: Awaitable[Response], receive: Receive) -> Response | None:
    """``work``'s response, or None when the client behind ``receive`` leaves first: then
    ``work`` is cancelled (an upstream request in it closed) before this returns.

    A response ready as the client leaves is returned (it is sent to no one, and a
    stream's ``ClosingStream`` closes its upstream); ``work``'s own error propagates.
    """
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(_left(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this is cancelled (the server stops): neither outlives it
        for t in (task, gone):
            if not t.done():
                t.cancel()
        await asyncio.wait((task, gone))
    if task.cancelled() and gone.done() and not gone.cancelled():
        gone.exception()  # retrieved: a receive that failed leaves no one to answer either
        return None
    return task.result()


class ProxySlots:
    """At most ``limit`` proxied calls in flight; ``on_refused(path)`` is told of each
    call refused (the metrics count them). Used on the event loop only: no lock."""

    def __init__(self, limit: int, *, on_refused: Callable[[str], None] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit, self.held = limit, 0
        self._on_refused = on_refused

    def _release(self) -> None:
        self.held -= 1

    async def call(
        self,
        path: str,
        answer: Callable[[], Awaitable[Response]],
        refuse: Callable[[ApiError], Response],
        receive: Receive,
    ) -> ASGIApp:
        """``answer()`` in a slot, held until its response is sent; with none free,
        ``refuse`` (the route's error shape) of a 503 with ``Retry-After``. ``receive``
        is the request's (its body read whole): a client that leaves while ``answer()``
        runs cancels it and frees the slot at once (``_until_left``): then ``refuse`` of
        a 499, as nginx logs a client that closed, which no one reads."""
        if self.held >= self.limit:
            if self._on_refused is not None:
                self._on_refused(path)
            why = (
                f"the server is overloaded ({self.held} proxied calls in flight, its "
                "--max-proxy-calls); retry shortly"
            )
            err = ApiError(
                503, why, type="server_error", code="overloaded", headers={"Retry-After": "1"}
            )
            return refuse(err)
        self.held += 1
        try:
            response = await _until_left(answer(), receive)
        except BaseException:
            self._release()
            raise
        if response is None:
            self._release()
            return refuse(ApiError(499, "the client closed the connection", code="client_closed"))
        return _Held(response, self._release)
