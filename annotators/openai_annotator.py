"""OpenAI (and any OpenAI-compatible server: vLLM, Ollama, Azure) as an annotator.

Chat completions with ``response_format={"type": "json_schema", ...}`` so that the reply
is the label JSON, with the label enumerated from the label schema. ``base_url`` points
at any compatible server (it must end in ``/v1``). The SDK client is built with
``max_retries=0``: retries belong to ``annotators.retry``.

Reasoning models (``o1``, ``o3``, ``o4-mini``, ``gpt-5``...) reject ``max_tokens`` and any
temperature but the default: for them the reply budget is sent as
``max_completion_tokens`` and the temperature is left out (``token_param`` and
``temperature`` override the choice). That budget also pays for their hidden reasoning
(``usage.completion_tokens_details.reasoning_tokens``): at the default effort a reply can
spend all of it thinking and come back empty with ``finish_reason`` ``"length"``, which
``parse_chat_completion`` marks as a ``CutReply`` (named, never repaired: see
``annotators.labelling``). ``reasoning_effort`` (``"low"``...) makes them think less;
unless told otherwise they get ``REASONING_MAX_TOKENS``.

The SDK is imported when the first call is made, so that ``import annotators`` needs
no SDK; a missing SDK raises ``DependencyError`` naming the extra.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, get_args

from annotators.base import Prompt, RawReply, Usage
from annotators.cache import server_params
from annotators.clients import LoopBoundClient
from annotators.labelling import CutReply
from annotators.prompts import reply_json_schema
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, require

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "REASONING_MAX_TOKENS", "OpenAIAnnotator",
           "ReasoningEffort", "is_reasoning_model", "parse_chat_completion"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

DEFAULT_MAX_TOKENS = 300
"""The adapters' reply budget: a label, a one-sentence rationale and a confidence fit
in well under 100 tokens, so 300 only bounds a runaway reply."""

REASONING_MAX_TOKENS = 4000
"""The budget a reasoning model gets when none is set.
``max_completion_tokens`` bounds visible *and* reasoning tokens (the API reference), and
at the default (medium) effort a few hundred tokens of reasoning are common even for a
short question, so 300 often ends empty with ``finish_reason`` ``"length"``. The budget
is a ceiling, not a charge: a reply bills what it used, but it is also the most a reply
can cost (the ceiling ``--dry-run`` shows). 4000 is a middle: room for long reasoning
about one short text, at a worst case of about 2 cents an item on o4-mini (3 on o3). A
reply that still meets it is named, with the remedy (a larger ``max_tokens`` or a lower
``reasoning_effort``), and not cached."""

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
"""The values chat completions' ``reasoning_effort`` takes (as the openai SDK lists them;
not every model takes every value)."""

_REASONING = re.compile(r"^(o\d|gpt-5)")


def is_reasoning_model(model: str) -> bool:
    """True for OpenAI reasoning models, which take ``max_completion_tokens`` only."""
    return bool(_REASONING.match(model))


def parse_chat_completion(body: dict[str, Any]) -> RawReply:
    """A chat completion (as a JSON dict) as a ``RawReply``.

    A refusal is either ``message.refusal`` (structured outputs) or a ``content_filter``
    finish reason. A ``length`` finish reason (the budget ran out) gives a ``CutReply``
    carrying ``usage.completion_tokens_details.reasoning_tokens`` when the server sends it.
    """
    usage = body.get("usage") or {}
    choices = body.get("choices") or [{}]
    choice = choices[0] or {}
    message = choice.get("message") or {}
    refusal = message.get("refusal")
    if refusal is None and choice.get("finish_reason") == "content_filter":
        refusal = message.get("content") or "content_filter"
    fields: dict[str, Any] = dict(
        text=message.get("content"),
        refusal=refusal,
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
        model=body.get("model"),
    )
    if choice.get("finish_reason") != "length":
        return RawReply(**fields)
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return CutReply(**fields, reasoning_tokens=None if reasoning is None else int(reasoning))


class OpenAIAnnotator:
    """An annotator backed by OpenAI chat completions.

    Args:
        model: the model name, e.g. ``"gpt-4o-mini"``.
        api_key: defaults to the ``OPENAI_API_KEY`` environment variable (via the SDK).
            Never logged and never part of the cache key.
        base_url: an OpenAI-compatible server, ending in ``/v1``; default: the SDK's.
        temperature: sampling temperature; default 0 (repeatable labels), left out for
            reasoning models (they accept only their default).
        max_tokens: the reply's token budget; None: ``REASONING_MAX_TOKENS`` for a
            reasoning model (the budget pays for its hidden reasoning too), else
            ``DEFAULT_MAX_TOKENS``.
        token_param: the request field that carries it: ``"max_tokens"`` (older models
            and most compatible servers), ``"max_completion_tokens"`` (reasoning models
            reject ``max_tokens``), or ``"auto"``: the latter for reasoning models.
        timeout: seconds before one request counts as timed out (then retried).
        name: annotator id in the dataset; default ``"openai:<model>"``.
        reasoning_effort: how hard a reasoning model thinks (``"low"`` spends fewer of
            the budget's tokens on reasoning); None: the model's own default, and nothing
            is sent. Part of the cache key when set (it changes the answer); without it,
            requests and keys are those of adapters that predate it.

    Raises:
        ConfigError: ``reasoning_effort`` for a model that is not an OpenAI reasoning
            model (the API answers every request with a 400), or a value it does not take.

    Example:
        >>> ann = OpenAIAnnotator("gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
        >>> ann.name
        'openai:gpt-4o-mini'
    """

    provider = "openai"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 token_param: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto",
                 timeout: float = 60.0, name: str | None = None,
                 reasoning_effort: ReasoningEffort | None = None) -> None:
        reasoning = is_reasoning_model(model)
        if reasoning_effort is not None and not reasoning:
            raise ConfigError(
                f"openai:{model}: reasoning_effort={reasoning_effort!r} is only for OpenAI "
                "reasoning models (o1, o3, o4-mini, gpt-5...); remove reasoning_effort from "
                "this annotator")
        if reasoning_effort is not None and reasoning_effort not in get_args(ReasoningEffort):
            raise ConfigError(f"openai:{model}: reasoning_effort must be one of "
                              f"{list(get_args(ReasoningEffort))}, not {reasoning_effort!r}")
        self.reasoning_effort = reasoning_effort
        self.model = model
        self.name = name or f"openai:{model}"
        self.base_url = base_url
        self.temperature = temperature if temperature is not None or reasoning else 0.0
        self.max_tokens = max_tokens if max_tokens is not None else (
            REASONING_MAX_TOKENS if reasoning else DEFAULT_MAX_TOKENS)
        self.token_param = token_param if token_param != "auto" else (
            "max_completion_tokens" if reasoning else "max_tokens")
        self.timeout = timeout
        self._api_key = api_key
        self._clients = LoopBoundClient(self._new_client)

    def __repr__(self) -> str:  # no key in reprs, ever
        return f"OpenAIAnnotator(model={self.model!r}, base_url={self.base_url!r})"

    def cache_params(self) -> dict[str, Any]:
        # Another server is another model, whatever its name: key it apart.
        server = server_params(self.base_url, "OPENAI_BASE_URL", DEFAULT_BASE_URL)
        effort = {} if self.reasoning_effort is None else {
            "reasoning_effort": self.reasoning_effort}
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, **effort,
                **server}

    def _new_client(self) -> Any:
        openai = require("openai", "annotate")
        return openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url,
                                  max_retries=0, timeout=self.timeout)

    def request_body(self, prompt: Prompt, schema: LabelSchema) -> dict[str, Any]:
        """The chat-completions request body (also one line of a batch file)."""
        messages = [{"role": "system", "content": prompt.system}, *prompt.messages]
        sampling = {} if self.temperature is None else {"temperature": self.temperature}
        effort = {} if self.reasoning_effort is None else {
            "reasoning_effort": self.reasoning_effort}
        return {
            "model": self.model,
            "messages": messages,
            **sampling,
            self.token_param: self.max_tokens,
            **effort,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "label_reply", "strict": True,
                                "schema": reply_json_schema(schema)},
            },
        }

    async def call(self, prompt: Prompt, schema: LabelSchema) -> RawReply:
        client = self._clients.get()
        completion = await client.chat.completions.create(**self.request_body(prompt, schema))
        return parse_chat_completion(json.loads(completion.model_dump_json()))

    async def aclose(self) -> None:
        await self._clients.aclose()

    def batch_client(self) -> Any:
        """An async SDK client for the batch module (same settings, same key)."""
        return self._clients.get()
