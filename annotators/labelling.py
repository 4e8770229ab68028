"""One item, one annotator: ask, validate, repair once, and name the outcome.

The same judging rule serves live calls and batch results (``judge`` takes a reply
however it was obtained): a refusal is a refusal, a valid reply is a label, an invalid
one is shown its validation error once and then recorded as ``invalid`` with its raw
text. A reply *cut* at its token budget before its JSON was complete (a ``CutReply``:
OpenAI ``finish_reason`` ``"length"``, Anthropic ``stop_reason`` ``"max_tokens"``) is
not repaired: a repair call has the same budget, so it is paid for and cut again (a
reasoning model spends the budget on hidden reasoning before it writes a word). It is
recorded as an ``error`` naming the budget, the reasoning tokens and the remedy: not
cached (``AnnotationResult.cacheable``), so the next run asks again, and its tokens are
counted (they were billed); a run whose replies are all cut at one budget stops like
one whose calls all fail (``CUT_STATUS``). Transient errors are retried by the
``RetryPolicy``; what is left of them, and any non-transient API error, becomes an
``error`` result rather than a crash, so one bad item never sinks a run of ten thousand
(the runner stops a run whose errors repeat).

Given a ``RateLimiter``, *every* attempt (retries and the repair call included) first
takes its request and estimated input tokens from it, then the rest of the reply's
usage once it is known; a 429 that says ``Retry-After`` pauses the limiter for every
worker that shares it, not only for the one that was told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from pydantic import ValidationError

from annotators.base import AnnotationResult, Annotator, Prompt, RawReply, parse_reply
from annotators.interrupt import Stopped
from annotators.pricing import EXPECTED_OUTPUT_TOKENS, estimate_request_tokens
from annotators.prompts import build_prompt, repair_prompt
from annotators.ratelimit import RateLimiter
from annotators.redact import redact
from annotators.retry import RetryPolicy, api_error_types, retry_after_seconds
from annotators.templates import PromptTemplate
from guardrail_dro.data.schema import LabelSchema

__all__ = ["CUT_STATUS", "CutReply", "Stopped", "cut_error", "judge", "label_text"]

CUT_STATUS = 200
"""The ``status`` of a cut reply's ``error`` result: the HTTP call succeeded. A status,
not None, because the runner reads None as "no answer at all" (a server down); a
non-transient status lets it stop a run whose replies are all cut at the same budget
(``max_repeated_errors``) instead of paying for every item's cut reply."""


@dataclass(frozen=True)
class CutReply(RawReply):
    """A reply that stopped at its token budget (``RawReply`` plus what the error needs).

    The adapters' parsers return it for OpenAI ``finish_reason == "length"`` and
    Anthropic ``stop_reason == "max_tokens"``; ``judge`` accepts it as a label if its
    JSON is complete and valid all the same, else names the cut.

    Attributes:
        reasoning_tokens: how many of its output tokens were hidden reasoning
            (OpenAI ``usage.completion_tokens_details.reasoning_tokens``); None when the
            provider does not say.
    """

    reasoning_tokens: int | None = None


def _short_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "reply"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _api_error(exc: BaseException, annotator: Annotator | None = None) -> str:
    status = getattr(exc, "status_code", None)
    code = _code(exc)  # OpenAI's error code, e.g. insufficient_quota: shown to the reader
    head = f"HTTP {status}: " if isinstance(status, int) else ""
    if head and code:
        head = f"HTTP {status} ({code}): "
    # The annotator's own key (passed in, not from the environment) is redacted too.
    secrets = [getattr(annotator, "_api_key", None)]
    return redact(f"{head}{type(exc).__name__}: {exc}", secrets)[:500]


def _code(exc: BaseException) -> str | None:
    """The provider's error code (OpenAI's ``code``, e.g. ``insufficient_quota``), kept on
    the ``error`` result as ``error_code``: the runner judged it from the error's text
    before, which the SDK's own message could change."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else None


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _filtered(exc: BaseException) -> bool:
    """The provider's content filter declined the prompt: Azure OpenAI answers one it
    flags with HTTP 400, code ``content_filter``. A refusal of that item, not a request
    gone wrong: as an error, five toxic items in a row stopped the whole run as if the
    key were wrong."""
    return _status(exc) == 400 and getattr(exc, "code", None) == "content_filter"


def cut_error(budget: int, reply: CutReply, thinking_budget: int | None = None,
              thinking_room: int | None = None) -> str:
    """What a cut reply's ``error`` says: the budget, how much of it was reasoning, and
    what to do (there is no ``--max-tokens`` option: a budget is set per annotator in the
    labeling config, or on the adapter). With Claude's extended thinking the request's
    ``max_tokens`` was ``thinking_budget`` plus ``budget`` (the answer's): both named; with
    its adaptive thinking, ``thinking_room`` plus ``budget``, and the room is what to raise
    (Claude thought past it; it is not in the cache key, so only cut items are asked again)."""
    used = reply.usage.output_tokens
    if thinking_room is not None:
        return (f"reply cut at max_tokens {thinking_room + budget} (thinking_room "
                f"{thinking_room} for adaptive thinking + max_tokens {budget} for the answer) "
                f"before its JSON was complete, after {used} output tokens, thinking included. "
                "Not repaired (a second call at the same budget is paid for and cut again) and "
                "not cached: raise thinking_room for this annotator (in the --config file's "
                "[[annotators]] entry, or the adapter's thinking_room=), and run again: only "
                "the cut items are asked again")
    if thinking_budget is not None:
        return (f"reply cut at max_tokens {thinking_budget + budget} (thinking_budget "
                f"{thinking_budget} + max_tokens {budget} for the answer) before its JSON was "
                f"complete, after {used} output tokens, thinking included. Not repaired (a "
                "second call at the same budget is paid for and cut again) and not cached: "
                "raise max_tokens for this annotator, the room the answer has after its "
                "thinking (in the --config file's [[annotators]] entry, or the adapter's "
                "max_tokens=), and run again")
    spent = "" if reply.reasoning_tokens is None else (
        f"; {reply.reasoning_tokens} of its {used} output tokens were hidden reasoning")
    effort = " or lower its reasoning_effort (e.g. \"low\")" if reply.reasoning_tokens else ""
    return (f"reply cut at the {budget}-token budget before its JSON was complete{spent}. "
            "Not repaired (a second call at the same budget is paid for and cut again) "
            "and not cached: raise max_tokens for this annotator (max_tokens in the --config "
            f"file's [[annotators]] entry, or the adapter's max_tokens=){effort}, and run "
            "again")


async def _unless_stopped(wait: Awaitable[None], stop: asyncio.Event | None) -> None:
    """Await ``wait`` (a rate-limit turn) unless ``stop`` is set first: then cancel it
    and raise ``Stopped``, so a worker waiting ~20 s for its turn sends nothing."""
    if stop is None:
        await wait
        return
    turn = asyncio.ensure_future(wait)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({turn, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (turn, stopped):
            if not t.done():
                t.cancel()
        await asyncio.gather(turn, stopped, return_exceptions=True)
    if not turn.done() or turn.cancelled() or stop.is_set():
        raise Stopped
    turn.result()


async def _call(annotator: Annotator, prompt: Prompt, schema: LabelSchema, policy: RetryPolicy,
                counter: list[int], limiter: RateLimiter | None = None,
                stop: asyncio.Event | None = None) -> RawReply:
    # The input estimate goes first; the reply's tokens are settled when it is known.
    est = estimate_request_tokens(prompt) - EXPECTED_OUTPUT_TOKENS if limiter is not None else 0

    async def once() -> RawReply:
        if stop is not None and stop.is_set():  # a retry after a wait is a request too
            raise Stopped
        if limiter is None:
            counter[0] += 1
            return await annotator.call(prompt, schema)
        # inside the attempt: a retry is a request too; a stop ends the wait for a turn
        await _unless_stopped(limiter.acquire(est), stop)
        counter[0] += 1
        try:
            reply = await annotator.call(prompt, schema)
        except BaseException as exc:
            wait = retry_after_seconds(exc) if _status(exc) == 429 else None
            if wait is not None:
                limiter.pause(min(wait, policy.retry_after_cap))
            raise
        await limiter.settle(est, reply.usage.input_tokens + reply.usage.output_tokens)
        return reply

    # stop: a backoff wait ends at once, and ``once`` (or the policy) raises Stopped
    return await policy.run(once, stop=stop)


async def judge(annotator: Annotator, text: str | None, schema: LabelSchema, reply: RawReply,
                *, policy: RetryPolicy, calls: int = 1,
                limiter: RateLimiter | None = None,
                template: PromptTemplate | None = None,
                stop: asyncio.Event | None = None) -> AnnotationResult:
    """Turn a first reply into a result, making at most one repair call.

    An invalid ``CutReply`` (first or repair reply) is an ``error`` at once, never
    repaired: see the module docstring.

    Args:
        annotator: who answered (asked again if the reply is invalid; its
            ``max_tokens``, when it has one, is the budget a cut reply names).
        text: the item's text (to rebuild the prompt for the repair call); None when it
            is not known (a batch result for an item of another run): then an invalid
            reply is not repaired.
        schema: the label schema the label must be in.
        reply: the first reply.
        policy: retry policy of the repair call.
        calls: HTTP calls already spent on ``reply``.
        limiter: rate limiter the repair call takes its turn from.
        template: the prompt template the first call was built with (None: built-in).
        stop: once set, no repair call is sent: the reply is recorded as invalid (it
            was paid for), saying the run was stopped.
    """
    usage = reply.usage
    counter = [calls]
    prompt = None if text is None else (
        template.build(text, schema) if template is not None else build_prompt(text, schema))
    for attempt in (1, 2):
        if reply.refusal is not None:
            return AnnotationResult(
                outcome="refused", annotator=annotator.name, model=reply.model,
                raw=reply.refusal, input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens, calls=counter[0],
            )
        try:
            parsed = parse_reply(reply.text or "", schema)
        except ValidationError as exc:
            if isinstance(reply, CutReply):
                budget = getattr(annotator, "max_tokens", None) or reply.usage.output_tokens
                return AnnotationResult(
                    outcome="error", annotator=annotator.name, model=reply.model,
                    raw=reply.text or None, status=CUT_STATUS,
                    error=cut_error(budget, reply, getattr(annotator, "thinking_budget", None),
                                    getattr(annotator, "thinking_room", None)),
                    input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    calls=counter[0],
                )
            error = _short_error(exc)
            if prompt is None:
                error += "; not repaired (the item's text is not in this run)"
            if attempt == 2 or prompt is None:
                return AnnotationResult(
                    outcome="invalid", annotator=annotator.name, model=reply.model,
                    raw=reply.text, error=error, input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens, calls=counter[0],
                )
            try:
                reply = await _call(annotator, repair_prompt(prompt, reply.text, error), schema,
                                    policy, counter, limiter, stop)
            except Stopped:
                return AnnotationResult(
                    outcome="invalid", annotator=annotator.name, model=reply.model,
                    raw=reply.text, error=f"{error}; not repaired (the run was stopped)",
                    input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    calls=counter[0],
                )
            except api_error_types() as api_exc:
                return AnnotationResult(
                    outcome="invalid", annotator=annotator.name, raw=reply.text,
                    error=f"{error}; the repair call failed: {_api_error(api_exc, annotator)}",
                    input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                    calls=counter[0],
                )
            usage = usage + reply.usage
            continue
        return AnnotationResult(
            outcome="labelled", annotator=annotator.name, label=parsed.label,
            rationale=parsed.rationale, confidence=parsed.confidence,
            model=reply.model or annotator.model, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, calls=counter[0],
        )
    raise AssertionError("unreachable")  # pragma: no cover


async def label_text(annotator: Annotator, text: str, schema: LabelSchema, *,
                     policy: RetryPolicy | None = None,
                     limiter: RateLimiter | None = None,
                     template: PromptTemplate | None = None,
                     stop: asyncio.Event | None = None) -> AnnotationResult:
    """Ask ``annotator`` for the label of ``text`` and judge the answer.

    Never raises for API trouble: exhausted retries and non-transient errors come back
    as an ``error`` result naming the status (also in ``status``) and message.

    Args:
        limiter: the run's rate limits, taken by every attempt (None: no limits).
        template: the prompt template (None: the built-in prompt).
        stop: once set, no new request goes out: checked before every attempt, and it
            ends a wait for a rate-limit turn or a retry's backoff at once (a drain
            waited out a backoff of up to a minute before). A request already sent is
            awaited: it is paid for.

    Raises:
        Stopped: ``stop`` was set before a first request, or a retry, was sent: the
            item is left for a resume (failed attempts are not answers to keep, and an
            ``error`` is never cached anyway).
    """
    policy = policy or RetryPolicy()
    counter = [0]
    prompt = template.build(text, schema) if template is not None else build_prompt(text, schema)
    try:
        reply = await _call(annotator, prompt, schema, policy, counter, limiter, stop)
    except api_error_types() as exc:
        if _filtered(exc):
            return AnnotationResult(outcome="refused", annotator=annotator.name,
                                    raw=_api_error(exc, annotator), calls=counter[0])
        return AnnotationResult(outcome="error", annotator=annotator.name,
                                error=_api_error(exc, annotator), status=_status(exc),
                                error_code=_code(exc), calls=counter[0])
    return await judge(annotator, text, schema, reply, policy=policy, calls=counter[0],
                       limiter=limiter, template=template, stop=stop)

