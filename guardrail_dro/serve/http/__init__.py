"""The moderation HTTP server (``guardrail-dro serve``): OpenAI's ``/v1/moderations``
on Starlette + uvicorn, with health, readiness, Prometheus metrics, API keys, bounded
requests and micro-batching.

Modules, arrows downward only::

    server   uvicorn: ``bind`` (the port, before anything says it serves), the foreground
             ``serve`` and ``BackgroundServer`` (tests, benchmarks)
    app      the Starlette app: routes, auth, body limit, timeout, metrics middleware
    anthropic_proxy  ``POST /v1/messages`` (and its ``count_tokens``): the same for
             Anthropic's Messages API
    proxy    ``POST /v1/chat/completions`` to an ``Upstream``, through ``guard.wrap``'s rails
    responses_proxy  ``POST /v1/responses``: the same for OpenAI's Responses API
    upstream_call  what both proxies share: the SDK client, deadline, error classification
    forwarding  which of the caller's headers and query parameters reach the upstream
    admission  ``ProxySlots``: the bound on proxied calls in flight (``--max-proxy-calls``)
    batcher  concurrent requests -> one ``Guard.decide_many`` call
    metrics  the Prometheus series
    schema   OpenAI's request, response and error shapes
    config   ``ServeConfig``: every limit, and reading API keys

Needs the ``serve`` extra (``pip install 'guardrail-dro[serve]'``); importing
``guardrail_dro.serve`` alone never imports Starlette or uvicorn.
"""

from guardrail_dro.serve.http.app import create_app
from guardrail_dro.serve.http.config import ServeConfig, read_api_keys
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.http.server import BackgroundServer, serve

__all__ = [
    "BackgroundServer",
    "ServeConfig",
    "Upstream",
    "create_app",
    "read_api_keys",
    "serve",
]
