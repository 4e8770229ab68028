"""Anthropic (Claude) as an annotator, through the Messages API with a forced tool.

The reply shape is enforced by a single tool, ``record_label``, whose input schema is
the reply JSON schema, and ``tool_choice={"type": "tool", "name": "record_label"}``:
the model must answer by calling it. A ``stop_reason`` of ``"refusal"`` is a refusal; one
of ``"max_tokens"`` is a reply cut at its budget (a ``CutReply``: named, not repaired at
the same budget; see ``annotators.labelling``).
``base_url`` is the bare server root (no ``/v1``). The client is built with
``max_retries=0``: retries belong to ``annotators.retry``. There is no temperature
parameter: the Messages API of anthropic 2.x no longer takes sampling parameters.

Extended thinking (``thinking_budget``): Claude thinks up to that many tokens before it
answers, in ``thinking`` (or ``redacted_thinking``) blocks that the reply parser skips.
The API counts thinking inside ``max_tokens`` and refuses a budget under
``THINKING_MIN_BUDGET`` or one not below ``max_tokens``, so the request asks for
``thinking_budget + max_tokens``: ``max_tokens`` stays the answer's own room. Thinking
also refuses a forced tool ("Thinking may not be enabled when tool_choice forces tool
use") and any temperature but the default, so with it the tool is offered
(``tool_choice`` ``auto``) and the answer is read from the tool call or, as the prompt
asks, from the JSON of the text block. Thinking is billed as output tokens
(``usage.output_tokens`` includes it).
"""

from __future__ import annotations

import json
from typing import Any

from annotators.base import Prompt, RawReply, Usage
from annotators.cache import server_params
from annotators.clients import LoopBoundClient
from annotators.labelling import CutReply
from annotators.prompts import reply_json_schema
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, require

__all__ = ["DEFAULT_BASE_URL", "THINKING_MIN_BUDGET", "TOOL_NAME", "AnthropicAnnotator",
           "parse_message"]

DEFAULT_BASE_URL = "https://api.anthropic.com"

TOOL_NAME = "record_label"

THINKING_MIN_BUDGET = 1024
"""The smallest ``budget_tokens`` the API takes for extended thinking (a smaller one is
answered with a 400 on every request, so it is refused before the first)."""


def parse_message(body: dict[str, Any]) -> RawReply:
    """A Messages API ``message`` (as a JSON dict) as a ``RawReply``.

    The forced tool's input is re-serialised as the reply text; a reply without the tool
    call keeps its text blocks (the JSON the prompt asks for, when thinking leaves the
    tool unforced; anything else fails validation and gets one repair call). Thinking
    and redacted thinking blocks are never part of it.
    ``stop_reason == "max_tokens"`` gives a ``CutReply`` with ``reasoning_tokens`` None:
    its remedy (the ``thinking_budget`` or ``max_tokens`` of this annotator) does not
    depend on how much of the budget was thinking.
    """
    usage = body.get("usage") or {}
    blocks = body.get("content") or []
    texts = [b.get("text", "") for b in blocks if b.get("type") == "text"]
    tool_inputs = [b.get("input") for b in blocks
                   if b.get("type") == "tool_use" and b.get("name") == TOOL_NAME]
    refusal = None
    if body.get("stop_reason") == "refusal":
        refusal = "\n".join(texts) or "refusal"
    text = json.dumps(tool_inputs[0]) if tool_inputs else ("\n".join(texts) or None)
    reply = RawReply if body.get("stop_reason") != "max_tokens" else CutReply
    return reply(
        text=None if refusal is not None else text,
        refusal=refusal,
        usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)),
        model=body.get("model"),
    )


class AnthropicAnnotator:
    """An annotator backed by Claude through the Messages API.

    Args:
        model: e.g. ``"claude-sonnet-4-5"``.
        api_key: defaults to ``ANTHROPIC_API_KEY`` (via the SDK); never logged or cached.
        base_url: the API root (no ``/v1``); default: the SDK's.
        max_tokens: the reply's token budget (with thinking: the answer's, after it).
        temperature: refused unless None: accepted as an argument only so that a
            temperature fails here, naming the annotator, rather than as the SDK's
            ``TypeError`` on every call (``messages.create`` of SDK 2.x has none).
        thinking_budget: tokens of extended thinking before the answer (at least
            ``THINKING_MIN_BUDGET``); None: no thinking, and requests and cache keys are
            those of adapters that predate it. The request's ``max_tokens`` is this plus
            ``max_tokens``; the budget is part of the cache key when set.
        timeout: seconds before one request counts as timed out (then retried).
        name: annotator id in the dataset; default ``"anthropic:<model>"``.

    Raises:
        ConfigError: a ``thinking_budget`` that is not a whole number of at least
            ``THINKING_MIN_BUDGET``; any temperature (with thinking: the API allows only
            its default; without: SDK 2.x takes none).
    """

    provider = "anthropic"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 max_tokens: int = 300, timeout: float = 60.0,
                 name: str | None = None, temperature: float | None = None,
                 thinking_budget: int | None = None) -> None:
        if thinking_budget is not None and (isinstance(thinking_budget, bool) or not isinstance(
                thinking_budget, int) or thinking_budget < THINKING_MIN_BUDGET):
            raise ConfigError(
                f"anthropic:{model}: thinking_budget={thinking_budget!r}: Anthropic's extended "
                f"thinking needs a whole number of at least {THINKING_MIN_BUDGET} tokens; give "
                f"{THINKING_MIN_BUDGET} or more, or leave thinking_budget out for no thinking")
        if thinking_budget is not None and temperature is not None:
            raise ConfigError(
                f"anthropic:{model}: extended thinking (thinking_budget) takes no temperature "
                f"(the API allows only its default), not {temperature}: remove temperature "
                "from this annotator")
        if temperature is not None:  # refused here, not as the SDK's TypeError per call
            raise ConfigError(
                f"anthropic:{model}: the Anthropic Messages API (SDK 2.x) takes no "
                f"temperature, not {temperature}: remove temperature from this annotator")
        self.thinking_budget = thinking_budget
        self.model = model
        self.name = name or f"anthropic:{model}"
        self.base_url = base_url
        self.max_tokens = max_tokens
        self.timeout = timeout
        self._api_key = api_key
        self._clients = LoopBoundClient(self._new_client)

    def __repr__(self) -> str:  # no key in reprs, ever
        return f"AnthropicAnnotator(model={self.model!r}, base_url={self.base_url!r})"

    def cache_params(self) -> dict[str, Any]:
        # Another server is another model, whatever its name: key it apart.
        server = server_params(self.base_url, "ANTHROPIC_BASE_URL", DEFAULT_BASE_URL)
        thinking = {} if self.thinking_budget is None else {
            "thinking_budget": self.thinking_budget}
        return {"max_tokens": self.max_tokens, **thinking, **server}

    @property
    def request_max_tokens(self) -> int:
        """The request's ``max_tokens``: the answer's budget plus any thinking budget
        (the most output tokens a reply can bill)."""
        return self.max_tokens + (self.thinking_budget or 0)

    def _new_client(self) -> Any:
        anthropic = require("anthropic", "annotate")
        return anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url,
                                        max_retries=0, timeout=self.timeout)

    def request_body(self, prompt: Prompt, schema: LabelSchema) -> dict[str, Any]:
        """The Messages API parameters (also the ``params`` of a batch request)."""
        thinking = {} if self.thinking_budget is None else {  # after the rest: bodies
            # without thinking stay byte for byte those of adapters that predate it
            "thinking": {"type": "enabled", "budget_tokens": self.thinking_budget}}
        return {
            "model": self.model,
            "max_tokens": self.request_max_tokens,
            "system": prompt.system,
            "messages": [dict(m) for m in prompt.messages],
            "tools": [{
                "name": TOOL_NAME,
                "description": "Record the label, rationale and confidence for the text.",
                "input_schema": reply_json_schema(schema),
            }],
            "tool_choice": {"type": "tool", "name": TOOL_NAME} if self.thinking_budget is None
            else {"type": "auto"},  # thinking may not be enabled with a forced tool
            **thinking,
        }

    async def call(self, prompt: Prompt, schema: LabelSchema) -> RawReply:
        client = self._clients.get()
        message = await client.messages.create(**self.request_body(prompt, schema))
        return parse_message(json.loads(message.model_dump_json()))

    async def aclose(self) -> None:
        await self._clients.aclose()

    def batch_client(self) -> Any:
        """An async SDK client for the batch module (same settings, same key)."""
        return self._clients.get()
