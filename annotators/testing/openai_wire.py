"""The OpenAI chat-completions wire format, as the fake server speaks it.

Pure functions from a request body and an ``Answer`` to the JSON the real API returns
(``chat.completion``), so the live endpoint, the batch output file and the SSE stream
(``streaming.openai_stream_body``) all carry the same reply. The label set is read from
``response_format.json_schema``, where ``OpenAIAnnotator`` puts it.

A reasoning model's reply (``Answer.reasoning_tokens`` set) pays its hidden reasoning
from the request's budget (``max_completion_tokens``) as the real API does: reported in
``usage.completion_tokens_details.reasoning_tokens`` and ``completion_tokens``, and when
reasoning and reply do not fit, or a ``cut`` fault says so, the reply is cut:
``finish_reason`` ``"length"``, the content what was left room for (empty when the
reasoning took it all).
"""

from __future__ import annotations

import json
import time
from typing import Any

from annotators.testing.rules import Answer
from annotators.testing.wire import Wire, token_count

__all__ = ["OPENAI", "openai_completion_body", "openai_error_body", "openai_labels",
           "openai_reply", "openai_usage"]


def openai_completion_body(model: str, content: str | None, refusal: str | None,
                           prompt_tokens: int, n: int) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    out_tokens = token_count(content or refusal or "")
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": "stop",
            "logprobs": None,
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens,
                  "total_tokens": prompt_tokens + out_tokens},
    }


def openai_labels(body: dict) -> list[str]:
    """The classes a request's structured-output schema allows ([] when it has none)."""
    try:
        schema = body["response_format"]["json_schema"]["schema"]
        return list(schema["properties"]["label"]["enum"])
    except (KeyError, TypeError):
        return []


def openai_reply(body: dict, ans: Answer, n: int) -> dict[str, Any]:
    """The completion that answers ``body`` with ``ans``: the reply JSON as the message
    content (or the raw text), a refusal in ``message.refusal``."""
    content = json.dumps(ans.reply) if ans.reply is not None else ans.raw
    prompt_tokens = token_count(json.dumps(body.get("messages")))
    out = openai_completion_body(body.get("model", "fake"), content, ans.refusal,
                                 prompt_tokens, n)
    if ans.reasoning_tokens is None and not ans.cut:  # as before reasoning existed
        return out
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    choice, usage = out["choices"][0], out["usage"]
    visible, thinking = usage["completion_tokens"], ans.reasoning_tokens or 0
    if ans.refusal is None and (ans.cut or (budget is not None and thinking + visible > budget)):
        budget = budget or visible
        if ans.cut and ans.reasoning_tokens is not None:
            thinking = budget  # a reasoning model cut by a fault: it thought the budget away
        thinking = min(thinking, budget)
        text = choice["message"]["content"] or ""
        choice["message"]["content"] = text[:min((budget - thinking) * 4, len(text) // 2)]
        choice["finish_reason"] = "length"
        visible = budget - thinking
    usage["completion_tokens"] = thinking + visible
    usage["total_tokens"] = prompt_tokens + thinking + visible
    if ans.reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return out


def openai_usage(completion: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens a completion bills."""
    return completion["usage"]["prompt_tokens"], completion["usage"]["completion_tokens"]


CONTENT_FILTERED = ("The response was filtered due to the prompt triggering Azure OpenAI's "
                    "content management policy. (fake)")
"""What Azure OpenAI says when its content filter declines a prompt."""

OUT_OF_QUOTA = ("You exceeded your current quota, please check your plan and billing "
                "details. (fake)")
"""What OpenAI says, with HTTP 429 and code ``insufficient_quota``, to an account out of
credit: a rate limit's status, but waiting does not help."""


def openai_error_body(kind: str, message: str) -> dict[str, Any]:
    """The error object the OpenAI API answers a failed request with. Kind
    ``content_filter`` is Azure OpenAI's answer to a prompt its filter flags (HTTP 400,
    the kind in ``code``); ``insufficient_quota`` OpenAI's to an account out of credit
    (HTTP 429, the kind in ``type`` and ``code``)."""
    if kind == "insufficient_quota":
        return {"error": {"message": message, "type": kind, "code": kind}}
    code = kind if kind == "content_filter" else None
    return {"error": {"message": message, "type": None if code else kind, "code": code}}


OPENAI = Wire(labels=openai_labels, reply=openai_reply, usage=openai_usage,
              error=openai_error_body)
"""The OpenAI format, for the server's one reply path."""
