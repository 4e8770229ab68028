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
"""

from __future__ import annotations

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
    ) -> ASGIApp:
        """``answer()`` in a slot, held until its response is sent; with none free,
        ``refuse`` (the route's error shape) of a 503 with ``Retry-After``."""
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
            response = await answer()
        except BaseException:
            self._release()
            raise
        return _Held(response, self._release)
