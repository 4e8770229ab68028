"""The Anthropic Messages wire format, as the fake server speaks it.

Pure functions from a request body and an ``Answer`` to the JSON the real API returns
(a ``message``), so the live endpoint, the batch results and the SSE stream
(``streaming.anthropic_stream_body``) all carry the same reply. A labelling request
forces one tool; its ``input_schema`` holds the label set, and a valid answer comes back
as a ``tool_use`` block calling it. Refusals and raw text come back as a text block. A
``cut`` fault answers as the API does when ``max_tokens`` runs out inside the tool call:
``stop_reason`` ``"max_tokens"`` and a tool_use block whose input never got written.

Extended thinking (``thinking: {"type": "enabled", "budget_tokens": N}``): the request
must be one the API takes (``anthropic_invalid``: no budget under 1024 or not below
``max_tokens``, no temperature but 1, no forced tool), and the reply is a ``thinking``
block (``redacted_thinking`` for ``Answer.redacted``) of ``Answer.reasoning_tokens``
tokens, then the reply JSON as a text block (the tool is not forced), its usage counting
the thinking as output; a reply that does not fit ``max_tokens`` after its thinking, or a
``cut`` fault (thinking that spent its whole budget), is cut at ``max_tokens``.

Adaptive thinking (``thinking: {"type": "adaptive"}``): Claude decides how much to think,
so the reply is the same, its thinking bounded only by ``max_tokens`` (which it counts
toward: a ``cut`` fault thinks it all away). What the SDK's types say of it is checked:
no ``budget_tokens`` (that is ``enabled``'s), a ``display`` of ``summarized`` or
``omitted`` (omitted: an empty thinking text, the signature kept). Nothing else is
refused for adaptive: the SDK documents no other rule for it.

Models that think by default (``annotators.anthropic_annotator.CLAUDE_RULES``, from their
documentation): a request without ``thinking`` is answered as adaptive thinking, and with
thinking on, whatever its type, a forced tool is a 400 ("tool_choice options that force
tool use return an error while thinking is on"); a model that takes no budget answers
``enabled`` with its documented 400.
"""

from __future__ import annotations

import json
from typing import Any

from annotators.anthropic_annotator import claude_rules
from annotators.testing.rules import Answer
from annotators.testing.wire import Wire, token_count

__all__ = ["ANTHROPIC", "THINKING_DOCS", "anthropic_error_body", "anthropic_invalid",
           "anthropic_labels", "anthropic_message_body", "anthropic_reply", "anthropic_thinking",
           "anthropic_tool", "anthropic_usage"]

THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def anthropic_message_body(model: str, tool: str | None, tool_input: dict | None,
                           text: str | None, refusal: bool, prompt_tokens: int,
                           n: int) -> dict[str, Any]:
    """A ``message`` object: a tool_use block, or a text block (refusal / malformed)."""
    if tool_input is not None and tool is not None:
        content = [{"type": "tool_use", "id": f"toolu_{n}", "name": tool, "input": tool_input}]
        stop, out = "tool_use", json.dumps(tool_input)
    else:
        content = [{"type": "text", "text": text or ""}]
        stop, out = ("refusal" if refusal else "end_turn"), text or ""
    return {
        "id": f"msg_{n}", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": token_count(out)},
    }


def anthropic_tool(body: dict) -> tuple[str | None, list[str]]:
    """(name of the request's first tool, the classes its input schema allows)."""
    tools = body.get("tools") or []
    if not tools:
        return None, []
    tool = tools[0]
    try:
        labels = list(tool["input_schema"]["properties"]["label"]["enum"])
    except (KeyError, TypeError):
        labels = []
    return tool.get("name"), labels


def anthropic_labels(body: dict) -> list[str]:
    """The classes a request's tool allows ([] when it has none)."""
    return anthropic_tool(body)[1]


def _thinking_type(body: dict) -> str | None:
    """The request's thinking type; ``adaptive`` when it sends none to a model that
    thinks by default."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        return thinking.get("type")
    return "adaptive" if claude_rules(str(body.get("model", ""))).thinks_by_default else None


def anthropic_thinking(body: dict) -> int | None:
    """The most a request lets Claude think: the ``budget_tokens`` of extended thinking,
    the whole ``max_tokens`` of adaptive thinking (Claude decides; thinking counts toward
    ``max_tokens``); None without thinking."""
    kind = _thinking_type(body)
    if kind == "adaptive":
        return int(body.get("max_tokens") or 0)
    if kind != "enabled":
        return None
    return int(body["thinking"].get("budget_tokens") or 0)


def _adaptive_invalid(thinking: dict) -> str | None:
    """What the SDK's ``ThinkingConfigAdaptiveParam`` rules out (``type``, ``display``)."""
    if "budget_tokens" in thinking:
        return "thinking.adaptive.budget_tokens: Extra inputs are not permitted"
    if thinking.get("display", "summarized") not in ("summarized", "omitted", None):
        return "thinking.adaptive.display: Input should be 'summarized' or 'omitted'"
    return None


def anthropic_invalid(body: dict) -> str | None:
    """Why the API would answer ``body`` with a 400 about its thinking, or None."""
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    if _thinking_type(body) == "adaptive":
        invalid = _adaptive_invalid(body.get("thinking") or {})
        return invalid or ("Thinking may not be enabled when tool_choice forces tool use."
                           if forced else None)
    budget = anthropic_thinking(body)
    if budget is None:
        return None
    if claude_rules(str(body.get("model", ""))).no_budget:
        return ('"thinking.type.enabled" is not supported for this model. Use "thinking.type.'
                'adaptive" and "output_config.effort" to control thinking behavior.')
    if budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= int(body.get("max_tokens") or 0):
        return ("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                f"our documentation at {THINKING_DOCS}#max-tokens-and-context-window-size")
    if "temperature" in body and body["temperature"] != 1:
        return ("`temperature` may only be set to 1 when thinking is enabled. Please consult "
                f"our documentation at {THINKING_DOCS}")
    if forced:
        return "Thinking may not be enabled when tool_choice forces tool use."
    return None


def _thinking_reply(body: dict, ans: Answer, n: int, budget: int,
                    prompt_tokens: int) -> dict[str, Any]:
    """A thinking model's message: its thinking block, then the answer as text."""
    limit = int(body["max_tokens"])
    thought = budget if ans.cut else min(ans.reasoning_tokens or 0, budget)
    text = json.dumps(ans.reply) if ans.reply is not None else (ans.refusal or ans.raw or "")
    visible = token_count(text)
    stop = "refusal" if ans.refusal is not None else "end_turn"
    if ans.refusal is None and (ans.cut or thought + visible > limit):
        text = text[:min((limit - thought) * 4, len(text) // 2)]
        stop, visible = "max_tokens", limit - thought
    omitted = (body.get("thinking") or {}).get("display") == "omitted"
    block = ({"type": "redacted_thinking", "data": f"redacted-{n} (fake)"} if ans.redacted
             else {"type": "thinking", "signature": f"sig-{n}-fake",
                   "thinking": "" if omitted else "Weighing the text against each class."})
    return {
        "id": f"msg_{n}", "type": "message", "role": "assistant",
        "model": body.get("model", "fake"), "content": [block, {"type": "text", "text": text}],
        "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": thought + visible},
    }


def anthropic_reply(body: dict, ans: Answer, n: int) -> dict[str, Any]:
    """The message that answers ``body`` with ``ans``: the reply JSON as the forced tool's
    input, a refusal (``stop_reason`` ``refusal``) or raw text as a text block; with
    extended thinking, a thinking block first and the reply JSON as text."""
    tool, _ = anthropic_tool(body)
    prompt_tokens = token_count(json.dumps(body.get("messages")) + str(body.get("system", "")))
    budget = anthropic_thinking(body)
    if budget is not None:
        return _thinking_reply(body, ans, n, budget, prompt_tokens)
    if ans.cut and ans.refusal is None:
        out = anthropic_message_body(body.get("model", "fake"), tool, {}, None, False,
                                     prompt_tokens, n)
        budget = int(body.get("max_tokens") or out["usage"]["output_tokens"])
        return {**out, "stop_reason": "max_tokens",
                "usage": {**out["usage"], "output_tokens": budget}}
    return anthropic_message_body(
        body.get("model", "fake"), tool, ans.reply,
        ans.refusal if ans.refusal is not None else ans.raw, ans.refusal is not None,
        prompt_tokens, n,
    )


def anthropic_usage(message: dict[str, Any]) -> tuple[int, int]:
    """(input, output) tokens a message bills."""
    return message["usage"]["input_tokens"], message["usage"]["output_tokens"]


def anthropic_error_body(kind: str, message: str) -> dict[str, Any]:
    """The error object the Anthropic API answers a failed request with."""
    return {"type": "error", "error": {"type": kind, "message": message}}


ANTHROPIC = Wire(labels=anthropic_labels, reply=anthropic_reply, usage=anthropic_usage,
                 error=anthropic_error_body)
"""The Anthropic format, for the server's one reply path."""
