"""The OpenAI Responses API wire format (``POST /v1/responses``), as the fake server
speaks it: a ``response`` object, and with ``stream: true`` its SSE event sequence.

Pure functions like ``openai_wire``'s, so the fake answers a Responses request by the
same rule, faults and counters as a chat completion. The item the fake labels is the
last user message's text (``wire.item_text`` on the items that carry a role; a ``str``
``input`` is one user message). The reply is one ``message`` item with an
``output_text`` part (a ``refusal`` part for ``Answer.refusal``); a request that forces
a function (``tool_choice={"type": "function", "name": ...}``) is answered, as the
Anthropic wire answers a forced tool, with a ``function_call`` item whose arguments are
the reply. The label set is read from ``text.format.schema`` (Structured Outputs).
"""

from __future__ import annotations

import json
import time
from typing import Any

from annotators.testing.openai_wire import openai_error_body
from annotators.testing.rules import Answer
from annotators.testing.streaming import sse
from annotators.testing.wire import Wire, item_text, token_count

__all__ = ["RESPONSES", "responses_item_text", "responses_reply", "responses_stream_body"]


def _messages(body: dict) -> list[dict]:
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return [i for i in given or [] if isinstance(i, dict) and "role" in i]


def responses_item_text(body: dict) -> str:
    """The item a Responses request is about (as ``wire.item_text`` reads a chat)."""
    return item_text(_messages(body))


def _labels(body: dict) -> list[str]:
    try:
        return list(body["text"]["format"]["schema"]["properties"]["label"]["enum"])
    except (KeyError, TypeError):
        return []


def responses_reply(body: dict, ans: Answer, n: int) -> dict[str, Any]:
    """The ``response`` that answers ``body`` with ``ans``."""
    text = json.dumps(ans.reply) if ans.reply is not None else ans.raw or ""
    cut = ans.cut and ans.refusal is None
    if cut:
        text = text[: len(text) // 2]
    forced = body.get("tool_choice")
    if isinstance(forced, dict) and forced.get("type") == "function" and ans.refusal is None:
        item: dict[str, Any] = {"id": f"fc_{n}", "type": "function_call", "call_id": f"call_{n}",
                                "name": forced.get("name"), "arguments": text,
                                "status": "completed"}
    else:
        part = ({"type": "refusal", "refusal": ans.refusal} if ans.refusal is not None
                else {"type": "output_text", "text": text, "annotations": []})
        item = {"id": f"msg_{n}", "type": "message", "role": "assistant",
                "status": "completed", "content": [part]}
    prompt = token_count(json.dumps([body.get("instructions"), body.get("input")]))
    out = token_count(ans.refusal or text)
    if cut:
        item["status"] = "incomplete"
        out = int(body.get("max_output_tokens") or out)
    incomplete = {"status": "incomplete",
                  "incomplete_details": {"reason": "max_output_tokens"}} if cut else {}
    return {
        "id": f"resp_{n}", "object": "response", "created_at": int(time.time()),
        "model": body.get("model", "fake"), "status": "completed", "output": [item],
        "parallel_tool_calls": True, "tool_choice": forced or "auto",
        "tools": body.get("tools") or [], "instructions": body.get("instructions"),
        "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": prompt + out},
        **incomplete,
    }


def _usage(response: dict[str, Any]) -> tuple[int, int]:
    return response["usage"]["input_tokens"], response["usage"]["output_tokens"]


RESPONSES = Wire(labels=_labels, reply=responses_reply, usage=_usage, error=openai_error_body)
"""The Responses format, for the server's one reply path."""


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _item_events(i: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    """An output item's events, from ``output_item.added`` to ``output_item.done``."""
    where = {"item_id": item["id"], "output_index": i}
    if item["type"] == "function_call":
        args = item["arguments"]
        return [
            {"type": "response.output_item.added", "output_index": i,
             "item": {**item, "arguments": "", "status": "in_progress"}},
            *({"type": "response.function_call_arguments.delta", **where, "delta": p}
              for p in _pieces(args)),
            {"type": "response.function_call_arguments.done", **where, "arguments": args,
             "name": item["name"]},
            {"type": "response.output_item.done", "output_index": i, "item": item},
        ]
    events = [{"type": "response.output_item.added", "output_index": i,
               "item": {**item, "content": [], "status": "in_progress"}}]
    for j, part in enumerate(item["content"]):
        at = {**where, "content_index": j}
        kind = part["type"]  # output_text or refusal
        key, event = ("text", "output_text") if kind == "output_text" else ("refusal", "refusal")
        extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        events.append({"type": "response.content_part.added", **at,
                       "part": {**part, key: ""}})
        events += [{"type": f"response.{event}.delta", **at, "delta": p, **extra}
                   for p in _pieces(part[key])]
        events.append({"type": f"response.{event}.done", **at, key: part[key], **extra})
        events.append({"type": "response.content_part.done", **at, "part": part})
    events.append({"type": "response.output_item.done", "output_index": i, "item": item})
    return events


def responses_stream_body(response: dict[str, Any]) -> bytes:
    """A finished ``response`` as the SSE events of ``stream: true``: created,
    in_progress, each output item's events (text and arguments in small deltas),
    completed; each numbered by ``sequence_number``."""
    start = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": start},
              {"type": "response.in_progress", "response": start}]
    for i, item in enumerate(response["output"]):
        events += _item_events(i, item)
    events.append({"type": "response.completed", "response": response})
    return sse([(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(events)])
