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

``api="responses"`` sends the same request to the Responses API (``responses.create``,
``POST /v1/responses``) instead: some OpenAI models are served there only, and answer a
chat completion with an error on every item. ``api="auto"`` (the default) picks it for
the models in ``RESPONSES_ONLY`` and chat completions for every other. The prompt's
system text becomes ``instructions``, the chat turns ``input``, the label schema
``text.format``, the budget ``max_output_tokens``; ``parse_response`` reads the answer
by the chat rules (a ``refusal`` part is a refusal, ``status`` ``"incomplete"`` for
``max_output_tokens`` a ``CutReply``).

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

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MAX_TOKENS", "REASONING_MAX_TOKENS", "RESPONSES_ONLY",
           "Api", "OpenAIAnnotator", "ReasoningEffort", "default_api", "is_reasoning_model",
           "parse_chat_completion", "parse_response"]

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

_REASONING = re.compile(r"^(o\d|gpt-5|codex-mini)")
# codex-mini-latest is "a fine-tuned version of o4-mini" with "reasoning token support"
# (https://developers.openai.com/api/docs/models/codex-mini-latest): a reasoning model.

Api = Literal["auto", "chat", "responses"]
"""Which OpenAI API labels: chat completions, the Responses API, or ``"auto"``: the
latter for the models in ``RESPONSES_ONLY``, chat completions for any other."""

RESPONSES_ONLY: dict[str, str] = {
    # model -> its official page, whose Endpoints table says Chat Completions
    # (v1/chat/completions) "Not supported" and Responses (v1/responses) "Supported".
    "codex-mini-latest": "https://developers.openai.com/api/docs/models/codex-mini-latest",
}
"""Models OpenAI's own model pages list as served by the Responses API only (a chat
completion to them fails on every item). Only models whose official page says so; a
model missing here takes ``api="responses"`` explicitly."""


def is_reasoning_model(model: str) -> bool:
    """True for OpenAI reasoning models, which take ``max_completion_tokens`` only."""
    return bool(_REASONING.match(model))


def default_api(model: str) -> Literal["chat", "responses"]:
    """The API ``api="auto"`` picks: ``"responses"`` for a ``RESPONSES_ONLY`` model."""
    return "responses" if model in RESPONSES_ONLY else "chat"


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


def parse_response(body: dict[str, Any]) -> RawReply:
    """A Responses API ``response`` (as a JSON dict) as a ``RawReply``, by the chat rules.

    The text is the ``output_text`` parts of its ``message`` items (what the SDK's
    ``output_text`` joins; a reasoning model's ``reasoning`` items carry none), a
    ``refusal`` part is the refusal (so is a reply stopped by the content filter,
    ``incomplete_details.reason`` ``"content_filter"``, as chat's ``finish_reason``), and
    ``status`` ``"incomplete"`` with
    ``incomplete_details.reason`` ``"max_output_tokens"`` (the budget ran out, as chat's
    ``finish_reason`` ``"length"``) gives a ``CutReply`` carrying
    ``usage.output_tokens_details.reasoning_tokens``.
    """
    usage = body.get("usage") or {}
    parts = [part for item in body.get("output") or [] if item.get("type") == "message"
             for part in item.get("content") or []]
    texts = [p.get("text") or "" for p in parts if p.get("type") == "output_text"]
    refusal = next((p.get("refusal") for p in parts if p.get("type") == "refusal"), None)
    details = body.get("incomplete_details") or {}
    if refusal is None and details.get("reason") == "content_filter":  # chat's finish_reason
        refusal = "".join(texts) or "content_filter"
    fields: dict[str, Any] = dict(
        text="".join(texts) if texts else None,
        refusal=refusal,
        usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)),
        model=body.get("model"),
    )
    cut = details.get("reason") == "max_output_tokens"
    if body.get("status") != "incomplete" or not cut:
        return RawReply(**fields)
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    return CutReply(**fields, reasoning_tokens=None if reasoning is None else int(reasoning))


class OpenAIAnnotator:
    """An annotator backed by OpenAI chat completions (or the Responses API).

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
        api: ``"chat"`` (chat completions), ``"responses"`` (the Responses API: for
            models served only there), or ``"auto"``: ``default_api(model)``. Part of the
            cache key when it is ``"responses"`` (another API's answer), so chat caches
            keep their keys.

    Raises:
        ConfigError: ``reasoning_effort`` for a model that is not an OpenAI reasoning
            model (the API answers every request with a 400), or a value it does not take;
            an ``api`` that is none of the three.

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
                 reasoning_effort: ReasoningEffort | None = None, api: Api = "auto") -> None:
        reasoning = is_reasoning_model(model)
        if api not in get_args(Api):
            raise ConfigError(f"openai:{model}: api must be one of {list(get_args(Api))}, "
                              f"not {api!r}")
        self.api: Literal["chat", "responses"] = default_api(model) if api == "auto" else api
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
        responses = {"api": "responses"} if self.api == "responses" else {}
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, **effort,
                **responses, **server}

    def _new_client(self) -> Any:
        openai = require("openai", "annotate")
        return openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url,
                                  max_retries=0, timeout=self.timeout)

    @property
    def endpoint(self) -> str:
        """The API path a request goes to (a batch line's ``url``, the job's endpoint)."""
        return "/v1/responses" if self.api == "responses" else "/v1/chat/completions"

    def request_body(self, prompt: Prompt, schema: LabelSchema) -> dict[str, Any]:
        """The request body for ``endpoint`` (also one line of a batch file)."""
        if self.api == "responses":
            return self._responses_body(prompt, schema)
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

    def _responses_body(self, prompt: Prompt, schema: LabelSchema) -> dict[str, Any]:
        """The chat request in the Responses API's words: same prompt, schema, budget and
        effort; the budget is always ``max_output_tokens`` (the one field it has)."""
        sampling = {} if self.temperature is None else {"temperature": self.temperature}
        effort = {} if self.reasoning_effort is None else {
            "reasoning": {"effort": self.reasoning_effort}}
        return {
            "model": self.model,
            "instructions": prompt.system,
            "input": list(prompt.messages),
            **sampling,
            "max_output_tokens": self.max_tokens,
            **effort,
            "store": False,  # a label needs no stored response (the API stores by default)
            "text": {"format": {"type": "json_schema", "name": "label_reply", "strict": True,
                                "schema": reply_json_schema(schema)}},
        }

    def parse(self, body: dict[str, Any]) -> RawReply:
        """A reply body from ``endpoint`` (live, or a batch result line's) as a ``RawReply``."""
        return parse_response(body) if self.api == "responses" else parse_chat_completion(body)

    async def call(self, prompt: Prompt, schema: LabelSchema) -> RawReply:
        client = self._clients.get()
        body = self.request_body(prompt, schema)
        if self.api == "responses":
            reply = await client.responses.create(**body)
        else:
            reply = await client.chat.completions.create(**body)
        return self.parse(json.loads(reply.model_dump_json()))

    async def aclose(self) -> None:
        await self._clients.aclose()

    def batch_client(self) -> Any:
        """An async SDK client for the batch module (same settings, same key)."""
        return self._clients.get()
