"""What the fake server answers about an item, and how it misbehaves on purpose.

A test writes a **handler**, ``text -> FakeReply | Refuse | str``, instead of patching an
SDK: ``FakeReply`` is a valid-looking label, ``Refuse`` a refusal, and a ``str`` is sent
as the raw reply text (e.g. malformed JSON). A ``Fault`` makes the server misbehave for
matching items a given number of times (the kinds are listed in ``annotators.testing``).

``answer`` turns the handler's verdict and a reply-shaping fault into an ``Answer``,
which the provider wire modules then spell out; it is kept apart from them so that both
providers, live and batch, answer an item by the same rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Answer",
    "FakeReply",
    "Fault",
    "FaultKind",
    "Handler",
    "Refuse",
    "answer",
    "keyword_handler",
]

FaultKind = Literal[
    "rate_limit", "server_error", "slow", "malformed", "out_of_schema", "refusal",
    "batch_expired", "batch_errored", "batch_create_timeout", "batch_create_error",
    "content_filter", "cut", "redacted_thinking", "insufficient_quota", "batch_poll_rate_limit",
]


@dataclass(frozen=True)
class FakeReply:
    """A valid-looking answer. ``label=None`` means the first class the request allows."""

    label: str | None = None
    rationale: str = "fake rationale"
    confidence: float = 0.9


@dataclass(frozen=True)
class Refuse:
    """The model declines to label the item."""

    message: str = "I can't help with that."


Handler = Callable[[str], "FakeReply | Refuse | str"]


@dataclass
class Fault:
    """Misbehave ``times`` times for items whose text contains ``match`` (None: any item).

    Attributes:
        kind: what to do (see the ``annotators.testing`` docstring).
        match: substring of the item text that triggers the fault; None matches all.
        times: how many requests it applies to; then it is spent.
        retry_after: seconds sent in ``Retry-After`` with ``rate_limit``.
        delay: seconds to sleep with ``slow``.
    """

    kind: FaultKind
    match: str | None = None
    times: int = 1
    retry_after: float | None = 0.0
    delay: float = 1.0

    def applies(self, text: str) -> bool:
        return self.times > 0 and (self.match is None or self.match in text)


def keyword_handler(text: str) -> FakeReply | Refuse:
    """The demo rule: 'bomb' refuses, insults are 'toxic', the rest 'safe'.

    Judged on the content only, so a text that says "answer safe" is still labelled by
    what it contains.
    """
    low = text.lower()
    if "bomb" in low:
        return Refuse("I can't help with that.")
    if any(w in low for w in ("idiot", "hate", "stupid", "kill")):
        return FakeReply("toxic", "contains an insult or a threat", 0.85)
    return FakeReply("safe", "no insult or threat", 0.8)


@dataclass
class Answer:
    """What to say about one item: exactly one of reply / refusal / raw is set.

    ``cut``: the reply stops at the request's token budget (a ``cut`` fault).
    ``reasoning_tokens``: hidden reasoning an OpenAI reasoning model spends from that
    budget before it answers, or Claude's extended thinking (None: neither); the wire
    cuts the reply when reasoning and reply do not fit.
    ``redacted``: Claude's thinking comes back as a ``redacted_thinking`` block.
    """

    reply: dict | None = None
    refusal: str | None = None
    raw: str | None = None
    cut: bool = False
    reasoning_tokens: int | None = None
    redacted: bool = False


def answer(handler: Handler, text: str, labels: list[str], fault: Fault | None) -> Answer:
    """The handler's verdict on ``text``, bent by a reply-shaping ``fault``.

    Args:
        handler: the test's rule.
        text: the item's text.
        labels: the classes the request allows (its JSON schema's enum); the first one
            stands in for ``FakeReply(label=None)``.
        fault: a ``malformed``, ``refusal``, ``out_of_schema`` or ``cut`` fault to
            apply, or None.
    """
    if fault is not None and fault.kind == "malformed":
        return Answer(raw='{"label": "oops", this is not json')
    if fault is not None and fault.kind == "refusal":
        return Answer(refusal="I can't help with that.")
    out = handler(text)
    if isinstance(out, Refuse):
        return Answer(refusal=out.message)
    cut = fault is not None and fault.kind == "cut"
    if isinstance(out, str):
        return Answer(raw=out, cut=cut)
    label = out.label if out.label is not None else (labels[0] if labels else "unknown")
    if fault is not None and fault.kind == "out_of_schema":
        label = "__not_a_class__"
    return Answer(reply={"label": label, "rationale": out.rationale,
                         "confidence": out.confidence}, cut=cut)
