"""What both providers' wire formats share: reading a request, and answering an error.

The fake keys everything it counts by the *item text*, not by the whole prompt, so that a
test can write ``server.calls["you idiot"]``; ``item_text`` digs it out of a chat the
way ``annotators.prompts`` wrote it. ``Wire`` names the four pure functions in which the
OpenAI and Anthropic formats differ, so the server builds a reply for either provider by
one code path (``openai_wire.OPENAI``, ``anthropic_wire.ANTHROPIC``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from annotators.prompts import extract_text
from annotators.testing.rules import Answer

__all__ = ["ErrorReply", "Wire", "content_text", "item_text", "token_count"]


def token_count(s: str) -> int:
    """A rough token count (4 characters a token), enough for usage and billing tests."""
    return max(1, len(s) // 4)


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def item_text(messages: list[dict]) -> str:
    """The item being labelled: the delimited text of the last user turn that has one
    (earlier ones are few-shot examples; a repair turn after it has none), else the
    first message's whole content (a chat not built by ``annotators.prompts``)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            found = extract_text(content_text(m.get("content")))
            if found is not None:
                return found
    return content_text(messages[0].get("content")) if messages else ""


class ErrorReply(Exception):
    """An HTTP error answer, raised anywhere below the request handler, which writes it
    in the wire format of the provider the path belongs to."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}


@dataclass(frozen=True)
class Wire:
    """How one provider spells a labelling request's classes, a reply, and an error.

    Attributes:
        labels: request body -> the classes its JSON schema allows.
        reply: (request body, answer, id number) -> the reply body.
        usage: reply body -> (input tokens, output tokens) it bills.
        error: (error type, message) -> the error body.
    """

    labels: Callable[[dict], list[str]]
    reply: Callable[[dict, Answer, int], dict[str, Any]]
    usage: Callable[[dict[str, Any]], tuple[int, int]]
    error: Callable[[str, str], dict[str, Any]]
