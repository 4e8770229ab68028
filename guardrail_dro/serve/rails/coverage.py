"""Which paths of an OpenAI / Anthropic client ``guard.wrap`` guards, lets through or
refuses, and the view of the client that enforces it.

Every call path of a wrapped client is one of:

- **guarded**: checked like ``create`` (``chat.completions.create``,
  ``responses.create``, ``messages.create``, sync and async, ``stream=True`` included;
  ``responses.create(background=True)`` refused: its reply comes from ``retrieve``,
  which has the output rail on the stored ``Response`` it fetches);
- **passed**: reviewed as making no model output from a prompt: a resource that never
  does (``models``, ``files``, ``embeddings``...), or a read on one that does
  (``retrieve``, ``list``, ``cancel``, ``count_tokens``...);
- **refused**: everything else on a resource that makes model output:
  ``chat.completions.parse`` / ``stream``, ``responses.parse`` / ``stream`` /
  ``compact``, every ``with_raw_response`` /
  ``with_streaming_response`` twin of a guarded method, ``messages.stream``, batch
  creation, the beta agents... Calling one raises ``UnguardedPathError`` naming it;
- **unreviewed**: a resource this table does not know (new in a later SDK version):
  refused too (fail closed), and the coverage test fails until it is reviewed.

The client's own low-level ``post`` / ``put`` / ``patch`` / ``request`` (any request,
any path) are refused; ``with_options`` / ``copy`` return the new client wrapped the same
way. Private attributes (``_client``...) are the SDK's own and not guarded: they are not
an API. ``GuardedView.unguarded`` is the plain client, for code that means it.

Why refuse rather than guard every path: a path the rails would read wrong (a raw HTTP
response, a structured ``parse`` reply, a stream helper's accumulated state) is worse
than a clear error, and ``create`` covers each of them (``stream=True``,
``response_format`` / ``text.format``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from guardrail_dro.errors import UnguardedPathError

__all__ = [
    "ANTHROPIC",
    "OPENAI",
    "READS",
    "Coverage",
    "GuardedView",
    "Verdict",
    "guarded_view",
    "is_sdk_object",
]

_RAW = ("with_raw_response", "with_streaming_response")
#: Methods that read what a generating resource already made (no prompt in, no text out).
READS = frozenset(
    {"retrieve", "list", "delete", "cancel", "results", "count_tokens", "count", "poll",
     "content", "download", "list_items", "retrieve_content"}
)  # fmt: skip
#: The client's own generic request methods: any path, any body.
_CLIENT_REFUSED = frozenset({"post", "put", "patch", "request"})


class Verdict(enum.StrEnum):
    """What ``guard.wrap`` does with a path."""

    GUARDED = "guarded"
    PASSED = "passed"
    REFUSED = "refused"
    UNREVIEWED = "unreviewed"


def _longest(resource: str, prefixes: tuple[str, ...]) -> int:
    hits = [len(p) for p in prefixes if resource == p or resource.startswith(p + ".")]
    return max(hits, default=-1)


@dataclass(frozen=True)
class Coverage:
    """One SDK's reviewed table (see the module docstring).

    Attributes:
        sdk: the package name (``openai`` / ``anthropic``).
        guarded: method paths the wrapper guards, e.g. ``chat.completions.create``.
        generating: resource prefixes that make model output (refused but for reads).
        inert: resource prefixes that never do (passed whole). The longest matching
            prefix of the two decides.
    """

    sdk: str
    guarded: frozenset[str]
    generating: tuple[str, ...]
    inert: tuple[str, ...]

    @staticmethod
    def split(path: str) -> tuple[str, str, bool]:
        """``(resource, method, raw)`` of a path, its ``with_raw_response`` /
        ``with_streaming_response`` segments dropped (``raw`` says there was one)."""
        parts = path.split(".")
        kept = [p for p in parts if p not in _RAW]
        return ".".join(kept[:-1]), kept[-1], len(kept) != len(parts)

    def resource_inert(self, resource: str) -> bool:
        """True when ``resource`` and everything under it is reviewed as inert (no
        generating prefix below it, e.g. ``fine_tuning`` holds ``fine_tuning.alpha``)."""
        below = any(p.startswith(resource + ".") for p in self.generating)
        return not below and _longest(resource, self.inert) > _longest(resource, self.generating)

    def classify(self, path: str) -> Verdict:
        """The verdict on a method path, e.g. ``chat.completions.with_raw_response.create``."""
        resource, method, raw = self.split(path)
        if f"{resource}.{method}" in self.guarded:  # a raw twin reads past the rail
            return Verdict.REFUSED if raw else Verdict.GUARDED
        inert, generating = _longest(resource, self.inert), _longest(resource, self.generating)
        if inert > generating:
            return Verdict.PASSED
        if generating < 0:
            return Verdict.UNREVIEWED
        return Verdict.PASSED if method in READS else Verdict.REFUSED


OPENAI = Coverage(
    sdk="openai",
    guarded=frozenset({"chat.completions.create", "responses.create", "responses.retrieve"}),
    generating=(
        "chat", "completions", "responses", "conversations", "batches", "evals", "images",
        "audio", "videos", "realtime", "live", "beta", "fine_tuning.alpha", "decisions",
        "content_provenance_checks",
    ),
    inert=(
        "models", "files", "embeddings", "moderations", "uploads", "vector_stores",
        "containers", "fine_tuning", "admin", "webhooks", "skills", "safety",
    ),
)  # fmt: skip

ANTHROPIC = Coverage(
    sdk="anthropic",
    guarded=frozenset({"messages.create"}),
    generating=(
        "messages", "completions", "beta.messages", "beta.agents", "beta.sessions",
        "beta.deployments", "beta.deployment_runs", "beta.dreams", "beta.environments",
    ),
    inert=(
        "models", "files", "organization", "skills", "user_profiles", "beta.models",
        "beta.files", "beta.organization", "beta.skills", "beta.user_profiles",
        "beta.vaults", "beta.webhooks", "beta.memory_stores", "beta.compliance",
        "beta.tunnels",
    ),
)  # fmt: skip


def is_sdk_object(value: Any, sdk: str) -> bool:
    """A resource of the SDK, or one of its raw / streaming-response views."""
    cls = type(value)
    module = cls.__module__
    view = cls.__name__.endswith(("WithRawResponse", "WithStreamingResponse"))
    return module.startswith(f"{sdk}.resources.") or (module.startswith(f"{sdk}.") and view)


def _refusal(path: str, verdict: Verdict, guarded: frozenset[str]) -> Callable[..., Any]:
    why = (
        "is not in the table this guardrail-dro version reviewed (new in this SDK version?)"
        if verdict is Verdict.UNREVIEWED
        else "is not guarded: its prompt or reply would pass unchecked"
    )
    message = (
        f"{path} on a client from guard.wrap() {why}. Guarded: {', '.join(sorted(guarded))} "
        "(stream=True included); for anything else call the plain client "
        "(wrapped.unguarded) knowingly."
    )

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise UnguardedPathError(message, path=path)

    refused.__qualname__ = refused.__name__ = path.rsplit(".", 1)[-1]
    refused.__doc__ = message
    return refused


class GuardedView:
    """A client or resource of a wrapped client: attribute by attribute, the guarded
    method, the SDK's own (inert), a refusal, or a view of the sub-resource."""

    def __init__(
        self,
        target: Any,
        coverage: Coverage,
        guarded: Mapping[str, Callable[..., Any]],
        rewrap: Callable[[Any], Any],
        path: str = "",
    ) -> None:
        self._target, self._coverage, self._guarded = target, coverage, guarded
        self._rewrap, self._path = rewrap, path

    @property
    def unguarded(self) -> Any:
        """The plain SDK object behind this view: nothing it does is checked."""
        return self._target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_"):
            return value
        path = f"{self._path}{name}"
        cov = self._coverage
        if is_sdk_object(value, cov.sdk):
            if cov.resource_inert(cov.split(path + ".x")[0]):
                return value
            return GuardedView(value, cov, self._guarded, self._rewrap, path + ".")
        if not callable(value):
            return value
        if not self._path:  # the client itself
            if name in ("with_options", "copy"):
                return lambda *a, **k: self._rewrap(value(*a, **k))
            if name in _CLIENT_REFUSED:
                return _refusal(f"client.{name}", Verdict.REFUSED, cov.guarded)
            return value
        verdict = cov.classify(path)
        if verdict is Verdict.GUARDED:
            return self._guarded[path]
        if verdict is Verdict.PASSED:
            return value
        return _refusal(path, verdict, cov.guarded)

    def __repr__(self) -> str:
        return f"<guarded {self._target!r}>"


def guarded_view(
    client: Any,
    coverage: Coverage,
    guarded: Mapping[str, Callable[..., Any]],
    rewrap: Callable[[Any], Any],
) -> GuardedView:
    """``client`` seen through ``coverage``: ``guarded`` maps each guarded path to its
    guarded method; ``rewrap(new_client)`` wraps what ``with_options`` / ``copy`` return."""
    missing = set(coverage.guarded) - set(guarded)
    if missing:
        raise ValueError(f"no guarded method given for {sorted(missing)}")
    return GuardedView(client, coverage, dict(guarded), rewrap)
