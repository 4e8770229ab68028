"""One rail's decision: what a rail needs from a guard (``RailGuard``), and deciding a
rail with ``on_check`` and ``GuardViolation`` (the input rail on the turns its policy's
``input_turns`` names: ``decide_input``).

The rails call the guard's non-raising ``decide`` and raise here, after ``on_check``
has seen the result, so the ``GuardViolation`` names the rail (``input`` / ``output``)
and a raising policy never hides a result from the caller's log.

``RailGuard`` is a Protocol so that the rails never import ``guardrail_dro.serve.guard``:
``Guard`` sits above the rails (its ``protect`` and ``wrap`` build them) and satisfies
it; the arrows point one way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from guardrail_dro.serve.policy import GuardResult, GuardViolation, Policy
from guardrail_dro.serve.rails.messages import input_texts

__all__ = [
    "OnCheck",
    "RailGuard",
    "adecide",
    "adecide_all",
    "adecide_input",
    "adecide_input_texts",
    "adecide_stream",
    "decide",
    "decide_all",
    "decide_input",
    "decide_input_texts",
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


def _too_many(guard: RailGuard, texts: Sequence[str], blank: GuardResult) -> GuardResult:
    """The answer when ``texts`` exceed ``policy.max_input_turns``: none scored, decided
    by ``on_error`` (closed: refused), degraded, saying so (``blank``: the guard's result
    for "", a result of its own categories and provider). Scoring the most recent turns
    alone would let a caller pad past an earlier harmful one."""
    policy = guard.policy
    action = policy.error_action()
    return dataclasses.replace(
        blank,
        allowed=action == "allow",
        action=action,
        replacement=policy.replacement_for(action),
        degraded=True,
        error=(
            f"{len(texts)} texts to check, more than Policy.max_input_turns="
            f"{policy.max_input_turns} (input_turns={policy.input_turns!s}): none scored"
        ),
    )


def _over(guard: RailGuard, texts: Sequence[str]) -> bool:
    cap = guard.policy.max_input_turns
    return cap is not None and len(texts) > cap


def decide_all(guard: RailGuard, texts: Sequence[str], *, bounded: bool = True) -> GuardResult:
    """The result that decides for ``texts`` scored alone (the guard was trained on
    single texts) in one batch, ``worst`` of them; one text is ``guard.decide``'s. More
    than ``policy.max_input_turns`` texts score none (``_too_many``): each text is bounded
    by ``max_chars`` / ``max_windows``, and this bounds how many (the input rail under
    ``user`` / ``all`` reads one a turn, a chain's prompt one a variable). ``bounded``
    False: an integration's output or tool rail, whose texts are its ``text_of``'s, not
    an input's turns (``max_input_turns`` refused a reply split into sentences)."""
    if bounded and _over(guard, texts):
        return _too_many(guard, texts, guard.decide(""))
    if len(texts) == 1:
        return guard.decide(texts[0])
    return worst(guard.decide_many(texts))


async def adecide_all(
    guard: RailGuard, texts: Sequence[str], *, bounded: bool = True
) -> GuardResult:
    """``decide_all`` with the model off the event loop."""
    if bounded and _over(guard, texts):
        return _too_many(guard, texts, await guard.adecide(""))
    if len(texts) == 1:
        return await guard.adecide(texts[0])
    return worst(await guard.adecide_many(texts))


def decide_input(
    guard: RailGuard,
    messages: Any,
    on_check: OnCheck | None,
    system: Any = None,
    tools: Any = None,
) -> GuardResult:
    """The input rail on ``messages``: the texts ``guard.policy.input_turns`` names
    (``messages.input_texts``; ``system``: Anthropic's ``system`` parameter, ``tools``:
    the request's tool definitions, both read under ``all`` only) decided by
    ``decide_all``; ``on_check`` sees that one result, then the policy may raise
    ``GuardViolation(result, "input")``. Under ``user`` / ``all`` a request re-checks
    its history, so the cost grows with the conversation, up to ``max_input_turns``
    texts (a tool definition counts as one).

    Raises:
        TypeError: messages (or, under ``all``, tools) the rail cannot read
            (``input_texts``): fail closed.
    """
    texts = input_texts(messages, guard.policy.input_turns, system, tools)
    return decide_input_texts(guard, texts, on_check)


async def adecide_input(
    guard: RailGuard,
    messages: Any,
    on_check: OnCheck | None,
    system: Any = None,
    tools: Any = None,
) -> GuardResult:
    """``decide_input`` with the model off the event loop."""
    texts = input_texts(messages, guard.policy.input_turns, system, tools)
    return await adecide_input_texts(guard, texts, on_check)


def decide_input_texts(
    guard: RailGuard, texts: Sequence[str], on_check: OnCheck | None
) -> GuardResult:
    """The input rail on texts already read from a request (``decide_input`` reads a
    chat's; ``rails.responses`` a Responses request's): ``decide_all``, bounded by
    ``max_input_turns``, then ``on_check`` and the policy's ``GuardViolation``."""
    return _after(guard, "input", decide_all(guard, texts), on_check)


async def adecide_input_texts(
    guard: RailGuard, texts: Sequence[str], on_check: OnCheck | None
) -> GuardResult:
    """``decide_input_texts`` with the model off the event loop."""
    return _after(guard, "input", await adecide_all(guard, texts), on_check)
