"""One rail's decision: what a rail needs from a guard (``RailGuard``), and deciding a
rail with ``on_check`` and ``GuardViolation``.

The rails call the guard's non-raising ``decide`` and raise here, after ``on_check``
has seen the result, so the ``GuardViolation`` names the rail (``input`` / ``output``)
and a raising policy never hides a result from the caller's log.

``RailGuard`` is a Protocol so that the rails never import ``guardrail_dro.serve.guard``:
``Guard`` sits above the rails (its ``protect`` and ``wrap`` build them) and satisfies
it; the arrows point one way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from guardrail_dro.serve.policy import GuardResult, GuardViolation, Policy

__all__ = [
    "OnCheck",
    "RailGuard",
    "adecide",
    "adecide_stream",
    "decide",
    "decide_stream",
    "rail_guard",
    "worst",
]

#: ``on_check(rail, result)``: sees every result of a rail (``rail`` is input or output;
#: the Agents SDK integration's tool rails are tool_input and tool_output).
OnCheck = Callable[[str, GuardResult], None]


@runtime_checkable
class RailGuard(Protocol):
    """What the rails use of a guard (``Guard`` is one): decisions that never raise
    ``GuardViolation``, sync and async, and the text a stream's rolling window scores."""

    @property
    def policy(self) -> Policy: ...

    def decide(self, text: str) -> GuardResult: ...

    def decide_many(self, texts: Sequence[str]) -> list[GuardResult]: ...

    async def adecide(self, text: str) -> GuardResult: ...

    async def adecide_many(self, texts: Sequence[str]) -> list[GuardResult]: ...

    def last_window(self, text: str) -> str: ...


def rail_guard(guard: RailGuard, option: Any) -> RailGuard | None:
    """A rail's guard: ``True`` the hook's own, ``False`` none, or a guard (typically
    ``guard.with_policy(...)``) when a rail decides under its own policy.

    Raises:
        TypeError: ``option`` is neither a bool nor a guard.
    """
    if isinstance(option, bool):
        return guard if option else None
    if isinstance(option, RailGuard):
        return option
    raise TypeError(f"input / output must be a bool or a Guard, not {type(option).__name__}")


def _after(guard: RailGuard, rail: str, r: GuardResult, on_check: OnCheck | None) -> GuardResult:
    if on_check is not None:
        on_check(rail, r)
    if not r.allowed and guard.policy.raise_on_violation:
        raise GuardViolation(r, rail)
    return r


def worst(results: Sequence[GuardResult]) -> GuardResult:
    """The result that decides for several texts scored alone: the first disallowed one,
    else the one with the highest toxic score (the rails and the integrations alike)."""
    return next((r for r in results if not r.allowed), None) or max(
        results, key=lambda r: r.toxic_score
    )


def decide(guard: RailGuard, rail: str, text: str, on_check: OnCheck | None) -> GuardResult:
    """Decide one rail on ``text``: ``on_check`` sees the result, then the policy may
    raise ``GuardViolation(result, rail)``."""
    return _after(guard, rail, guard.decide(text), on_check)


async def adecide(guard: RailGuard, rail: str, text: str, on_check: OnCheck | None) -> GuardResult:
    """``decide`` with the model off the event loop."""
    return _after(guard, rail, await guard.adecide(text), on_check)


def decide_stream(guard: RailGuard, texts: list[str], on_check: OnCheck | None) -> GuardResult:
    """The output rail of a stream on the texts one check scores (in one batch): the
    first disallowed result, else the one with the highest toxic score."""
    return _after(guard, "output", worst(guard.decide_many(texts)), on_check)


async def adecide_stream(
    guard: RailGuard, texts: list[str], on_check: OnCheck | None
) -> GuardResult:
    """``decide_stream`` with the model off the event loop."""
    return _after(guard, "output", worst(await guard.adecide_many(texts)), on_check)
