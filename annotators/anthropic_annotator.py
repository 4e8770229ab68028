"""Anthropic (Claude) as an annotator, through the Messages API with a forced tool.

The reply shape is enforced by a single tool, ``record_label``, whose input schema is
the reply JSON schema, and ``tool_choice={"type": "tool", "name": "record_label"}``:
the model must answer by calling it. A ``stop_reason`` of ``"refusal"`` is a refusal; one
of ``"max_tokens"`` is a reply cut at its budget (a ``CutReply``: named, not repaired at
the same budget; see ``annotators.labelling``).
``base_url`` is the bare server root (no ``/v1``). The client is built with
``max_retries=0``: retries belong to ``annotators.retry``. There is no temperature
parameter: the Messages API of anthropic 2.x no longer takes sampling parameters.
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
from guardrail_dro.errors import require

__all__ = ["DEFAULT_BASE_URL", "TOOL_NAME", "AnthropicAnnotator", "parse_message"]

DEFAULT_BASE_URL = "https://api.anthropic.com"

TOOL_NAME = "record_label"


def parse_message(body: dict[str, Any]) -> RawReply:
    """A Messages API ``message`` (as a JSON dict) as a ``RawReply``.

    The forced tool's input is re-serialised as the reply text; a reply without the tool
    call keeps its text blocks (which then fail validation and get one repair call).
    ``stop_reason == "max_tokens"`` gives a ``CutReply`` (the API does not say how many of
    the tokens were thinking, so ``reasoning_tokens`` is None).
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
        max_tokens: the reply's token budget (required by the API).
        temperature: sampling temperature; None sends none (the API's default).
        timeout: seconds before one request counts as timed out (then retried).
        name: annotator id in the dataset; default ``"anthropic:<model>"``.
    """

    provider = "anthropic"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 max_tokens: int = 300, timeout: float = 60.0,
                 name: str | None = None, temperature: float | None = None) -> None:
        self.model = model
        self.temperature = temperature
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
        sampling = {} if self.temperature is None else {"temperature": self.temperature}
        return {"max_tokens": self.max_tokens, **sampling, **server}

    def _new_client(self) -> Any:
        anthropic = require("anthropic", "annotate")
        return anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url,
                                        max_retries=0, timeout=self.timeout)

    def request_body(self, prompt: Prompt, schema: LabelSchema) -> dict[str, Any]:
        """The Messages API parameters (also the ``params`` of a batch request)."""
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            **({} if self.temperature is None else {"temperature": self.temperature}),
            "system": prompt.system,
            "messages": [dict(m) for m in prompt.messages],
            "tools": [{
                "name": TOOL_NAME,
                "description": "Record the label, rationale and confidence for the text.",
                "input_schema": reply_json_schema(schema),
            }],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
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
