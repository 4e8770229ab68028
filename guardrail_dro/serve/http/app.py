"""The moderation server's ASGI app: ``create_app(guard, config)``.

Starlette rather than FastAPI: four routes need no dependency injection or generated
docs, the request is validated with pydantic already (``schema``), and Starlette is
the smaller dependency (FastAPI is built on it). uvicorn runs it (``server``).

Routes:

- ``POST /v1/moderations``: OpenAI's moderation endpoint (``schema`` has the shapes),
  behind the API key when one is set; concurrent requests are micro-batched (``batcher``).
- ``POST /v1/chat/completions`` (with an ``Upstream``): the guarding proxy (``proxy``):
  the guard's rails around an OpenAI-compatible upstream, behind the same API key; 404
  without one.
- ``POST /v1/responses`` (with an ``Upstream``): the same for OpenAI's Responses API
  (``responses_proxy``), on the same upstream; 404 without one.
- ``POST /v1/messages`` (with an ``anthropic_upstream``): the same for Anthropic's
  Messages API (``anthropic_proxy``), its errors in Anthropic's shape; the key may also
  come as ``x-api-key``, as Anthropic's clients send it. The proxied routes share one bound
  on calls in flight (``admission``): past ``max_proxy_calls``, a 503 with
  ``Retry-After`` in the route's error shape; a client that leaves before its answer
  frees its slot at once, the upstream request cancelled.
- ``POST /v1/messages/count_tokens`` (with an ``anthropic_upstream``): passed through to
  the upstream as ``/v1/messages``' calls are (key, errors, deadline, slot), with no
  guard decision: counting tokens makes no model output (Claude Code and the SDK's
  ``messages.count_tokens`` call it before a request).
- ``GET /healthz``: 200 while the process serves (liveness).
- ``GET /readyz``: 200 once the guard is loaded and the batcher runs, else 503.
- ``GET /metrics``: Prometheus text (``metrics``); no text or key ever appears there.

Every error is OpenAI's error JSON: 400 bad input (naming the field), 401 a missing or
wrong key (compared in constant time, never logged or echoed), 404 / 405, 413 a body
over ``max_body_bytes`` (refused before it is read whole), 503 a full queue (with
``Retry-After``). A request whose results are not ready within ``timeout_ms`` gets
degraded results, decided by the guard's ``Policy.on_error`` (fail closed by default:
``flagged`` true, ``guardrail.degraded`` true), rather than an error: a moderation
caller must get a decision.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.escalation import EscalatingGuard
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http.admission import DEFAULT_MAX_PROXY_CALLS, ProxySlots
from guardrail_dro.serve.http.anthropic_proxy import MessagesProxy, anthropic_error
from guardrail_dro.serve.http.batcher import MicroBatcher, Overloaded
from guardrail_dro.serve.http.config import ServeConfig
from guardrail_dro.serve.http.metrics import CONTENT_TYPE, ServerMetrics
from guardrail_dro.serve.http.proxy import ChatProxy, Upstream
from guardrail_dro.serve.http.responses_proxy import ResponsesProxy
from guardrail_dro.serve.http.schema import ApiError, error_body, moderation_body, parse_request
from guardrail_dro.serve.judging import preload_judge

__all__ = ["create_app"]

_PATHS = (
    "/v1/moderations",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/healthz",
    "/readyz",
    "/metrics",
)


def _error(err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=err.status, headers=err.headers)


class _Timing:
    """ASGI middleware: every HTTP request's status and latency into the metrics."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            path = scope["path"] if scope["path"] in _PATHS else "other"
            self.metrics.observe_request(path, status, time.perf_counter() - start)


def _authorize(request: Request, config: ServeConfig, *, x_api_key: bool = False) -> None:
    """``x_api_key``: also take the key from an ``x-api-key`` header (Anthropic's
    clients send it there) when no ``Authorization`` header is sent."""
    if not config.api_keys:
        return
    header = request.headers.get("authorization")
    if header is None and x_api_key and request.headers.get("x-api-key"):
        header = f"Bearer {request.headers['x-api-key']}"
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        where = "'x-api-key: KEY' or " if x_api_key else ""
        raise ApiError(
            401,
            f"missing API key: send it as {where}'Authorization: Bearer KEY'",
            type="authentication_error",
            code="invalid_api_key",
        )
    token = given.strip().encode()
    # Compare with every key (no early exit), each in constant time.
    ok = [hmac.compare_digest(token, k.get_secret_value().encode()) for k in config.api_keys]
    if not any(ok):
        raise ApiError(
            401, "incorrect API key", type="authentication_error", code="invalid_api_key"
        )


async def _body(request: Request, limit: int, timeout_ms: float) -> bytes:
    declared = request.headers.get("content-length")
    too_large = ApiError(
        413, f"the request body is over this server's limit of {limit} bytes", code="too_large"
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        # A stalled upload is dropped rather than held open forever (it also held a
        # graceful shutdown, which waits for every request).
        async with asyncio.timeout(timeout_ms / 1e3):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, f"the request body did not arrive within {timeout_ms:g} ms", code="timeout"
        ) from None
    except ClientDisconnect:  # nginx's 499: not a server error, no traceback in the log
        raise ApiError(499, "the client closed the connection", code="client_closed") from None
    return b"".join(chunks)


def create_app(
    guard: Guard,
    config: ServeConfig | None = None,
    escalation: EscalatingGuard | None = None,
    upstream: Upstream | None = None,
    anthropic_upstream: Upstream | None = None,
    max_proxy_calls: int = DEFAULT_MAX_PROXY_CALLS,
) -> Starlette:
    """The ASGI app serving ``guard`` under ``config`` (default ``ServeConfig()``).

    With ``escalation`` (an ``EscalatingGuard`` around ``guard``), texts are batched
    through its ``upper`` guard and those whose score falls in its band are decided by
    its LLM judge, every judge call cut off by the request's ``timeout_ms``.

    With ``upstream``, ``POST /v1/chat/completions`` is a guarding proxy to it: the
    rails of ``guard.wrap`` (of ``escalation`` where given: the moderation route's
    decision) on the request's messages and on the upstream's reply, and ``POST
    /v1/responses`` the same for the Responses API. With
    ``anthropic_upstream`` (an Anthropic-compatible API root), ``POST /v1/messages`` is
    the same for Anthropic's Messages API. Either, both or neither may be given; together
    they admit at most ``max_proxy_calls`` calls in flight (a stream's until its end),
    and answer 503 with ``Retry-After`` beyond.

    Example:
        >>> import uvicorn
        >>> app = create_app(Guard.load("guard/"), ServeConfig(max_inputs=32))
        >>> uvicorn.run(app, port=8000)
    """
    config = config or ServeConfig()
    scored = guard.policy.max_chars
    if scored is not None and config.max_chars > scored:
        raise ConfigError(
            f"ServeConfig.max_chars={config.max_chars} admits texts the guard never scores "
            f"(its Policy.max_chars={scored}): a text between the two would be answered "
            "degraded; give both the same limit (guardrail-dro serve --max-chars sets both)"
        )
    if config.max_queue_texts < config.max_inputs:
        raise ConfigError(
            f"ServeConfig.max_queue_texts={config.max_queue_texts} is below max_inputs="
            f"{config.max_inputs}: a request of {config.max_queue_texts + 1} texts would be "
            "admitted and then answered 503 (retry) for ever; raise the queue or lower "
            "the inputs (guardrail-dro serve --max-queue-texts / --max-inputs)"
        )
    if max_proxy_calls < 1:
        raise ConfigError(
            f"max_proxy_calls={max_proxy_calls}: give at least 1 (guardrail-dro serve "
            "--max-proxy-calls), the proxied calls admitted in flight at once"
        )
    if escalation is not None and escalation.guard is not guard:
        raise ConfigError("the escalating guard must wrap the guard served (escalation.guard)")
    metrics = ServerMetrics()
    batcher = MicroBatcher(
        guard if escalation is None else escalation.upper,
        max_batch_texts=config.max_batch_texts,
        max_wait_ms=config.max_wait_ms,
        max_queue_texts=config.max_queue_texts,
        on_batch=metrics.batch.observe,
    )
    metrics.queued.set_function(lambda: batcher.queued)
    if escalation is not None:
        breaker = escalation.breaker
        metrics.watch_judge_breaker(lambda: float(breaker.state in ("open", "half-open")))
    timeout = config.timeout_ms / 1e3
    proxy: ChatProxy | None = None
    responses_proxy: ChatProxy | None = None
    messages_proxy: MessagesProxy | None = None
    rails = guard if escalation is None else escalation
    slots = ProxySlots(max_proxy_calls, on_refused=metrics.observe_proxy_overload)
    metrics.proxy_calls.set_function(lambda: slots.held)
    calls = max_proxy_calls  # the pools sized to the bound
    if upstream is not None:
        check = functools.partial(metrics.observe_rail, path="/v1/chat/completions")
        proxy = ChatProxy(rails, upstream, on_check=check, max_calls=calls)
        check = functools.partial(metrics.observe_rail, path="/v1/responses")
        responses_proxy = ResponsesProxy(rails, upstream, on_check=check, max_calls=calls)
    if anthropic_upstream is not None:
        check = functools.partial(metrics.observe_rail, path="/v1/messages")
        messages_proxy = MessagesProxy(rails, anthropic_upstream, on_check=check, max_calls=calls)

    async def moderations(request: Request) -> Response:
        try:
            _authorize(request, config)
            body = await _body(request, config.max_body_bytes, config.read_timeout_ms)
            req = parse_request(body, config)
            texts = req.texts()
            start = time.perf_counter()
            try:
                results = await asyncio.wait_for(batcher.submit(texts), timeout)
            except TimeoutError:
                why = f"no answer from the model within the server's {config.timeout_ms:g} ms"
                results = [guard.unanswered(why, start) for _ in texts]
            except Overloaded as exc:
                raise ApiError(
                    503,
                    f"the server is overloaded ({exc}); retry shortly",
                    type="server_error",
                    code="overloaded",
                    headers={"Retry-After": "1"},
                ) from None
            escalated = None
            if escalation is not None:
                done = await escalation.resolve(
                    texts, results, start=start, deadline=start + timeout
                )
                metrics.observe_escalations([e.outcome for e in done if e.escalated])
                results = [e.result for e in done]
                escalated = [e.escalated for e in done]
        except ApiError as err:
            return _error(err)
        metrics.observe_results(results)
        return JSONResponse(moderation_body(req.model or config.model_name, results, escalated))

    async def chat_completions(request: Request) -> ASGIApp:
        return await openai_call(request, proxy, "/v1/chat/completions", "chat completions")

    async def responses(request: Request) -> ASGIApp:
        return await openai_call(request, responses_proxy, "/v1/responses", "Responses API calls")

    async def openai_call(
        request: Request, call: ChatProxy | None, path: str, what: str
    ) -> ASGIApp:
        """``path`` on an OpenAI proxy (``what`` it guards): auth, body bound and slot."""
        try:
            if call is None:
                name = path.removeprefix("/v1/").replace("/", "-")
                raise ApiError(
                    404,
                    f"the {name} proxy is off: start the server with --upstream URL "
                    f"(an OpenAI-compatible API root) to guard {what} here",
                    code="not_found",
                )
            _authorize(request, config)
            body = await _body(request, config.max_body_bytes, config.read_timeout_ms)
            sent = call.sent_on(request.headers.items(), request.url.query)
        except ApiError as err:
            return _error(err)
        answer = lambda: call.answer(body, *sent)  # noqa: E731
        return await slots.call(path, answer, _error, request.receive)

    async def messages(request: Request) -> ASGIApp:
        return await anthropic_call(request, "/v1/messages")

    async def count_tokens(request: Request) -> ASGIApp:
        return await anthropic_call(request, "/v1/messages/count_tokens")

    async def anthropic_call(request: Request, path: str) -> ASGIApp:
        """``path`` on the Anthropic proxy: auth, body bound and slot as one route."""
        try:
            if messages_proxy is None:
                raise ApiError(
                    404,
                    "the messages proxy is off: start the server with --anthropic-upstream "
                    "URL (an Anthropic-compatible API root) to guard Claude messages here",
                )
            _authorize(request, config, x_api_key=True)
            body = await _body(request, config.max_body_bytes, config.read_timeout_ms)
            sent = messages_proxy.sent_on(request.headers.items(), request.url.query)
        except ApiError as err:
            return anthropic_error(err)
        call = messages_proxy.answer if path == "/v1/messages" else messages_proxy.count_tokens
        answer = lambda: call(body, *sent)  # noqa: E731
        return await slots.call(path, answer, anthropic_error, request.receive)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if not batcher.running:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse(
            {"status": "ready", "labels": list(guard.labels), "provider": guard.provider}
        )

    async def prometheus(_: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error(ApiError(exc.status_code, str(exc.detail), code=code))

    async def server_error(_: Request, exc: Exception) -> Response:
        # No detail: an exception message may quote the request. uvicorn logs the traceback.
        return _error(ApiError(500, "internal server error", type="server_error"))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        if escalation is not None:  # not at the first text in the band, on the event loop
            await asyncio.to_thread(preload_judge, escalation.judge)
        await batcher.start()
        try:
            yield {}
        finally:
            await batcher.stop()
            if escalation is not None:  # the judge's connections, opened on this loop
                await escalation.aclose()
            for openai_proxy in (proxy, responses_proxy):
                if openai_proxy is not None:
                    await openai_proxy.aclose()
            if messages_proxy is not None:
                await messages_proxy.aclose()

    app = Starlette(
        routes=[
            Route("/v1/moderations", moderations, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.add_middleware(_Timing, metrics=metrics)
    app.state.batcher, app.state.metrics, app.state.config = batcher, metrics, config
    return app
