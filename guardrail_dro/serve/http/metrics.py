"""The server's Prometheus metrics (``GET /metrics``), on ``prometheus_client``.

``prometheus_client`` earns its place: the text exposition format, histogram buckets
and thread-safe counters are its whole job, and scrapers already trust its output. Each
app gets its own registry, so several servers in one process (tests) never share or
collide on counters.

Series (``guardrail_`` prefix):

- ``requests_total{path, status}``: HTTP requests answered;
- ``request_seconds{path}``: request latency histogram (whole request, queueing and
  batching included);
- ``texts_total{outcome}``: texts checked, by ``allowed`` / ``flagged`` / ``degraded``;
- ``degraded_total``: degraded results (timeout, model error, a text or request past a
  bound; decided by policy), of the moderation route's texts and of the proxies' rail
  decisions alike (a proxied rail's were counted as refusals only, so a failing model
  behind a proxy looked like harmful traffic);
- ``batch_texts``: texts per model call (how much micro-batching happens);
- ``queued_texts``: texts waiting for the model now;
- ``escalated_total{outcome}`` (with an LLM judge): texts in its band, by ``judged`` /
  ``remembered`` / ``failed`` / ``skipped`` (``Escalated.outcome``);
- ``rail_refusals_total{path, rail}`` (the proxies): requests refused by the ``input``
  rail (the upstream never called) and replies replaced by the ``output`` rail, by the
  proxy's route (``/v1/chat/completions``, ``/v1/messages``): the two front different
  apps and upstreams, and a sum over ``path`` is the old both-proxies count;
- ``proxy_calls`` / ``proxy_overloaded_total{path}`` (the proxies): proxied calls in
  flight now, and calls refused 503 because ``--max-proxy-calls`` were in flight;
- ``judge_breaker_open`` (with an LLM judge): 1 while its circuit breaker is open or
  half-open (texts in the band decided by ``on_error`` without a call), else 0.

No label carries a text, a key or a client address.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from guardrail_dro.serve.policy import GuardResult

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The series above, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "guardrail_requests", "HTTP requests answered", ["path", "status"], registry=reg
        )
        self.latency = Histogram(
            "guardrail_request_seconds",
            "Request latency, queueing and batching included",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.texts = Counter("guardrail_texts", "Texts checked", ["outcome"], registry=reg)
        self.degraded = Counter(
            "guardrail_degraded",
            "Degraded results (timeout, model error, a text or request past a bound), of "
            "the moderation route and the proxies' rails",
            registry=reg,
        )
        self.batch = Histogram(
            "guardrail_batch_texts", "Texts per model call", buckets=_BATCH_BUCKETS, registry=reg
        )
        self.queued = Gauge("guardrail_queued_texts", "Texts waiting for the model", registry=reg)
        self.escalated = Counter(
            "guardrail_escalated",
            "Texts in the LLM judge's band (outcome: judged by a call, remembered from an "
            "earlier call on the same text, failed and left to on_error, or skipped: left "
            "to on_error without a call while the judge's breaker was open)",
            ["outcome"],
            registry=reg,
        )

        self.refusals = Counter(
            "guardrail_rail_refusals",
            "Proxied calls refused, by the proxy's route and by rail (input: the upstream "
            "was never called; output: the reply was replaced)",
            ["path", "rail"],
            registry=reg,
        )

        self.proxy_calls = Gauge(
            "guardrail_proxy_calls", "Proxied calls in flight (both proxies)", registry=reg
        )
        self.proxy_overloaded = Counter(
            "guardrail_proxy_overloaded",
            "Proxied calls refused (503) because --max-proxy-calls were in flight",
            ["path"],
            registry=reg,
        )

    def watch_judge_breaker(self, is_open: Callable[[], float]) -> None:
        """Export ``guardrail_judge_breaker_open``, read from ``is_open`` at each scrape
        (a server with an LLM judge only: no judge, no series)."""
        Gauge(
            "guardrail_judge_breaker_open",
            "1 while the LLM judge's circuit breaker is open or half-open (texts in the "
            "band decided by on_error without a call), else 0",
            registry=self.registry,
        ).set_function(is_open)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path=path, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)

    def observe_results(self, results: Sequence[GuardResult]) -> None:
        for r in results:
            if r.degraded:
                self.degraded.inc()
                self.texts.labels(outcome="degraded").inc()
            else:
                self.texts.labels(outcome="flagged" if r.violation else "allowed").inc()

    def observe_escalations(self, outcomes: Sequence[str]) -> None:
        """One entry per text in the band: "judged", "remembered", "failed" or "skipped"."""
        for outcome in outcomes:
            self.escalated.labels(outcome=outcome).inc()

    def observe_rail(self, rail: str, result: GuardResult, *, path: str) -> None:
        """One rail decision of the proxy at ``path`` (its ``on_check``, with ``path``
        bound): a refusal is counted, and a degraded decision in ``degraded_total``."""
        if not result.allowed:
            self.refusals.labels(path=path, rail=rail).inc()
        if result.degraded:
            self.degraded.inc()

    def observe_proxy_overload(self, path: str) -> None:
        """One proxied call refused for want of a slot (``ProxySlots``' ``on_refused``)."""
        self.proxy_overloaded.labels(path=path).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
