"""OpenAI (and any OpenAI-compatible server: vLLM, Ollama, Azure) as an annotator.

Chat completions with ``response_format={"type": "json_schema", ...}`` so that the reply
is the label JSON, with the label enumerated from the label schema. ``base_url`` points
at any compatible server (it must end in ``/v1``). The SDK client is built with
``max_retries=0``: retries belong to ``annotators.retry``.

The SDK is imported when the first call is made, so that ``import annotators`` needs
no SDK; a missing SDK raises ``DependencyError`` naming the extra.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from annotators.base import Prompt, RawReply, Usage
from annotators.prompts import reply_json_schema
from guardrail_dro.errors import require
from guardrail_dro.schema import LabelSchema

__all__ = ["OpenAIAnnotator", "parse_chat_completion"]


def parse_chat_completion(body: dict[str, Any]) -> RawReply:
    """A chat completion (as a JSON dict) as a ``RawReply``.

    A refusal is either ``message.refusal`` (structured outputs) or a ``content_filter``
    finish reason.
    """
    usage = body.get("usage") or {}
    choices = body.get("choices") or [{}]
    choice = choices[0] or {}
    message = choice.get("message") or {}
    refusal = message.get("refusal")
    if refusal is None and choice.get("finish_reason") == "content_filter":
        refusal = message.get("content") or "content_filter"
    return RawReply(
        text=message.get("content"),
        refusal=refusal,
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
        model=body.get("model"),
    )


class OpenAIAnnotator:
    """An annotator backed by OpenAI chat completions.

    Args:
        model: the model name, e.g. ``"gpt-4o-mini"``.
        api_key: defaults to the ``OPENAI_API_KEY`` environment variable (via the SDK).
            Never logged and never part of the cache key.
        base_url: an OpenAI-compatible server, ending in ``/v1``; default: the SDK's.
        temperature: sampling temperature (0 for repeatable labels).
        max_tokens: the reply's token budget.
        timeout: seconds before one request counts as timed out (then retried).
        name: annotator id in the dataset; default ``"openai:<model>"``.

    Example:
        >>> ann = OpenAIAnnotator("gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
        >>> ann.name
        'openai:gpt-4o-mini'
    """

    provider = "openai"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 temperature: float = 0.0, max_tokens: int = 300, timeout: float = 60.0,
                 name: str | None = None) -> None:
        self.model = model
        self.name = name or f"openai:{model}"
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self._api_key = api_key
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # no key in reprs, ever
        return f"OpenAIAnnotator(model={self.model!r}, base_url={self.base_url!r})"

    def cache_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_client(self) -> Any:
        # An async client is bound to the event loop it first ran on; the sync entry
        # point runs a fresh loop each time, so the client follows the loop.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            openai = require("openai", "annotate")
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key, base_url=self.base_url, max_retries=0,
                timeout=self.timeout,
            )
            self._loop = loop
        return self._client

    def request_body(self, prompt: Prompt, schema: LabelSchema) -> dict[str, Any]:
        """The chat-completions request body (also one line of a batch file)."""
        messages = [{"role": "system", "content": prompt.system}, *prompt.messages]
        return {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "label_reply", "strict": True,
                                "schema": reply_json_schema(schema)},
            },
        }

    async def call(self, prompt: Prompt, schema: LabelSchema) -> RawReply:
        client = self._get_client()
        completion = await client.chat.completions.create(**self.request_body(prompt, schema))
        return parse_chat_completion(json.loads(completion.model_dump_json()))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._loop = None

    def batch_client(self) -> Any:
        """An async SDK client for the batch module (same settings, same key)."""
        return self._get_client()
