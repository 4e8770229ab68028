"""Reading chat messages: the text of a message content, of the last user turn, of a
reply. OpenAI and Anthropic shapes, as dicts or as the SDKs' pydantic objects, read
by attribute or key, so this module imports neither SDK.

It sits below both ``Guard`` (``check_input`` / ``check_output``) and the rails, so
neither has to import the other to read a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["content_text", "last_user_text", "reply_text"]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def content_text(content: Any) -> str:
    """The text of a message content: a string, or a list of content blocks (``text``
    blocks, and the nested content of Anthropic ``tool_result`` blocks); images skipped.

    Raises:
        TypeError: ``content`` is neither a str, a list of blocks nor a message.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
                continue
            text = _get(block, "text")
            if isinstance(text, str):
                parts.append(text)
            elif _get(block, "type") == "tool_result":
                parts.append(content_text(_get(block, "content")))
        return "\n".join(p for p in parts if p)
    if _get(content, "content") is not None:  # a whole message
        return content_text(_get(content, "content"))
    raise TypeError(f"message content must be a str or a list of blocks, not {type(content)}")


def last_user_text(messages: Iterable[Any]) -> str:
    """The text of the last ``user`` turn ("" when there is none).

    Raises:
        TypeError: ``messages`` is a str, bytes or not iterable.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Iterable):
        raise TypeError(f"messages must be a list of chat messages, not {type(messages).__name__}")
    last = None
    for m in messages:
        if _get(m, "role") == "user":
            last = m
    return "" if last is None else content_text(_get(last, "content"))


def reply_text(reply: Any) -> str:
    """The text of a model's reply: every choice of an OpenAI ``ChatCompletion`` (one
    per line), else what ``content_text`` reads (a str, a message, content blocks)."""
    choices = getattr(reply, "choices", None)
    if choices is not None:  # an OpenAI ChatCompletion
        return "\n".join(c.message.content or "" for c in choices)
    return content_text(reply)
