"""Server-Sent Events: a finished reply re-spelt as the stream ``stream=True`` returns.

The reply is built once by the pure body functions (``openai_wire.openai_reply``,
``anthropic_wire.anthropic_reply``), so faults and counters are the same whether a client
streams or not; these functions only cut it into events: ``chat.completion.chunk`` deltas
and ``[DONE]`` for OpenAI, ``message_start`` ... ``content_block_delta`` ...
``message_stop`` for Anthropic. Errors (429, 500) are never streamed: the real APIs send
them as plain JSON before a stream starts, and so does the fake.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["anthropic_stream_body", "openai_stream_body", "sse"]


def _pieces(text: str, size: int = 16) -> list[str]:
    # Small deltas, so a client has to reassemble the reply as it would a real stream.
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def sse(events: list[tuple[str | None, Any]]) -> bytes:
    """Encode (event name or None, data) pairs; data that is not a str goes out as JSON."""
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append(f"{head}data: {payload}\n\n")
    return "".join(out).encode()


def openai_stream_body(completion: dict[str, Any], *, include_usage: bool = False) -> bytes:
    """A finished ``chat.completion`` as the SSE stream of ``chat.completion.chunk`` events
    that ``stream=True`` returns (content or refusal in small deltas, then ``[DONE]``)."""
    choice = completion["choices"][0]
    msg = choice["message"]
    base = {"id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"]}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                     "logprobs": None}]}

    events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
    field_name = "refusal" if msg.get("refusal") is not None else "content"
    for piece in _pieces(msg.get(field_name) or ""):
        events.append((None, chunk({field_name: piece})))
    events.append((None, chunk({}, choice["finish_reason"])))
    if include_usage:
        events.append((None, {**base, "choices": [], "usage": completion["usage"]}))
    events.append((None, "[DONE]"))
    return sse(events)


def anthropic_stream_body(message: dict[str, Any]) -> bytes:
    """A finished ``message`` as the SSE events of ``stream: true`` (message_start, one
    block start / deltas / stop per content block, thinking blocks included,
    message_delta, message_stop)."""
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**message["usage"], "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            empty = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in _pieces(json.dumps(block["input"]))]
        elif block["type"] == "thinking":  # its text in deltas, then its signature
            empty = {**block, "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p}
                      for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "redacted_thinking":  # whole in its start event
            empty, deltas = block, []
        else:
            empty = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        events.append(("content_block_start",
                       {"type": "content_block_start", "index": i, "content_block": empty}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": i,
                                            "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": message["usage"]["output_tokens"]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return sse(events)
