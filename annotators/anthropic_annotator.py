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

Adaptive thinking (``thinking="adaptive"``, sent as ``{"type": "adaptive"}``): Claude
decides whether and how much to think (Anthropic's recommended mode on claude-opus-4-6,
where the SDK calls ``enabled`` deprecated). There is no budget to send, but thinking
still counts toward ``max_tokens``, so the request asks for ``thinking_room`` (default
``ADAPTIVE_THINKING_ROOM``) plus ``max_tokens``: a reply whose thinking runs past its room
eats into the answer's and may be cut. The tool is offered, not forced, as with
``enabled``. ``thinking_room`` is not part of the cache key: it only decides where a reply
is cut, and a cut reply is never cached, so raising it after cuts asks only the cut items
again.

Models that think by default (``CLAUDE_RULES``, from each model's own documentation):
claude-opus-5, claude-sonnet-5(-5), claude-opus-5-5 and the Fable models run a request
without a ``thinking`` field with adaptive thinking, and "tool_choice options that force
tool use return an error while thinking is on". Their default is therefore
``thinking="adaptive"`` (the docs call ``{"type": "adaptive"}`` equivalent to leaving it
out): the tool offered, not forced, and ``thinking_room`` on top of ``max_tokens``, which
the thinking counts toward. Those that answer ``thinking.type=enabled`` with a 400
(``no_budget``) refuse a ``thinking_budget`` here, naming ``thinking="adaptive"``.

Effort (``effort``, sent as ``output_config={"effort": ...}``): how much effort Claude puts
into its reply, thinking and answer alike (``"low"`` spends fewer tokens; not every model
takes every value). It changes the answer, so it is part of the cache key when set; without
it, requests and cache keys are those of adapters that predate it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Literal, get_args

from annotators.base import Prompt, RawReply, Usage
from annotators.cache import server_params
from annotators.clients import LoopBoundClient
from annotators.labelling import CutReply
from annotators.prompts import reply_json_schema
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, require

__all__ = ["ADAPTIVE_THINKING_ROOM", "CLAUDE_RULES", "DEFAULT_BASE_URL", "THINKING_MIN_BUDGET",
           "TOOL_NAME", "AnthropicAnnotator", "ClaudeRules", "Effort", "ThinkingMode",
           "claude_rules", "parse_message"]

DEFAULT_BASE_URL = "https://api.anthropic.com"

TOOL_NAME = "record_label"

THINKING_MIN_BUDGET = 1024
"""The smallest ``budget_tokens`` the API takes for extended thinking (a smaller one is
answered with a 400 on every request, so it is refused before the first)."""

ADAPTIVE_THINKING_ROOM = 16000
"""The default ``thinking_room`` of adaptive thinking: the ``max_tokens`` of Anthropic's
own adaptive-thinking examples. The answer's 300 alone would cut most replies of a model
that thinks first; a cut reply is billed in full and asked again, a room left unused
costs nothing (the dry run shows it as the ceiling a reply can bill)."""

ThinkingMode = Literal["adaptive", "enabled"]
"""``thinking``: ``"adaptive"`` (Claude decides how much) or ``"enabled"`` (extended
thinking with a ``thinking_budget``, implied by one)."""

Effort = Literal["low", "medium", "high", "xhigh", "max"]
"""The values ``output_config.effort`` takes (as the anthropic SDK lists them; not every
model takes every value)."""


@dataclass(frozen=True)
class ClaudeRules:
    """What one Claude model's documentation says its API does with thinking.

    Attributes:
        thinks_by_default: a request without ``thinking`` runs with adaptive thinking, so
            a forced tool is refused (the default request must offer it instead).
        no_budget: ``thinking.type=enabled`` (a ``thinking_budget``) is answered with a
            400; ``thinking="adaptive"`` and ``effort`` are what control its thinking.
    """

    thinks_by_default: bool = False
    no_budget: bool = False


CLAUDE_RULES: dict[str, ClaudeRules] = {
    # "thinking is on by default" (whats-new-opus-5); disabling it is not sent here
    "claude-opus-5": ClaudeRules(thinks_by_default=True),
    # adaptive on by default; manual extended thinking returns 400 (sonnet-5 overview)
    "claude-sonnet-5": ClaudeRules(thinks_by_default=True, no_budget=True),
    # runs adaptive without a thinking field; a thinking budget returns 400 (migration)
    "claude-sonnet-5-5": ClaudeRules(thinks_by_default=True, no_budget=True),
    # thinking always on, "thinking.type.enabled" is not supported (whats-new-opus-5-5),
    # the same on Claude Fable 5.1
    "claude-opus-5-5": ClaudeRules(thinks_by_default=True, no_budget=True),
    "claude-fable-5-1": ClaudeRules(thinks_by_default=True, no_budget=True),
    # "Adaptive (always on)" in the models tables; manual extended thinking "will
    # return a 400 error" (Amazon Bedrock's adaptive thinking page)
    "claude-fable-5": ClaudeRules(thinks_by_default=True, no_budget=True),
    # "Adaptive (always on)"; nothing stated about a budget
    "claude-fable-5-2": ClaudeRules(thinks_by_default=True),
}
"""Per-model thinking rules (exact model IDs: these models have no dated snapshots);
a model not listed thinks only when asked, as before."""


def claude_rules(model: str) -> ClaudeRules:
    """``model``'s entry in ``CLAUDE_RULES``, or the rules of a model that thinks only
    when asked."""
    return CLAUDE_RULES.get(model, ClaudeRules())


def parse_message(body: dict[str, Any]) -> RawReply:
    """A Messages API ``message`` (as a JSON dict) as a ``RawReply``.

    The forced tool's input is re-serialised as the reply text; a reply without the tool
    call keeps its text blocks (the JSON the prompt asks for, when thinking leaves the
    tool unforced; anything else fails validation and gets one repair call). Thinking
    and redacted thinking blocks are never part of it.
    ``stop_reason == "max_tokens"`` gives a ``CutReply`` with ``reasoning_tokens`` None:
    its remedy (the ``thinking_budget``, ``thinking_room`` or ``max_tokens`` of this
    annotator) does not depend on how much of the budget was thinking.
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


def _check_thinking(model: str, thinking: object, budget: object, room: object,
                    temperature: float | None) -> ThinkingMode | None:
    """The thinking mode these arguments ask for (None: none), or the ConfigError that
    names the argument a user got wrong: each bad combination is refused here, before a
    request, rather than as a 400 (or a quietly different request) on every item."""
    where = f"anthropic:{model}"
    if thinking not in (None, "adaptive", "enabled"):
        raise ConfigError(f"{where}: thinking={thinking!r}: give \"adaptive\" (Claude decides "
                          "how much to think), \"enabled\" with a thinking_budget, or leave "
                          "thinking out")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)
                               or budget < THINKING_MIN_BUDGET):
        raise ConfigError(
            f"{where}: thinking_budget={budget!r}: Anthropic's extended thinking needs a whole "
            f"number of at least {THINKING_MIN_BUDGET} tokens; give {THINKING_MIN_BUDGET} or "
            "more, or leave thinking_budget out for no thinking")
    if thinking == "adaptive" and budget is not None:
        raise ConfigError(
            f"{where}: thinking=\"adaptive\" takes no thinking_budget (Claude decides how much "
            "to think; a budget is for thinking=\"enabled\"): remove thinking_budget, and set "
            "thinking_room for more or less max_tokens room for the thinking")
    if thinking == "enabled" and budget is None:
        raise ConfigError(f"{where}: thinking=\"enabled\" needs a thinking_budget (at least "
                          f"{THINKING_MIN_BUDGET} tokens), or use thinking=\"adaptive\"")
    rules = claude_rules(model)
    if budget is not None and rules.no_budget:  # else a 400 on every request
        raise ConfigError(
            f"{where}: {model} takes no thinking_budget (the API answers thinking.type="
            "enabled with a 400): remove thinking_budget, and use thinking=\"adaptive\" "
            "(its default) with effort for less or more thinking")
    asked: ThinkingMode | None = "enabled" if budget is not None else thinking
    mode = asked or ("adaptive" if rules.thinks_by_default else None)
    if room is not None and mode != "adaptive":
        raise ConfigError(f"{where}: thinking_room is the max_tokens room of adaptive thinking: "
                          "set thinking=\"adaptive\" too, or remove thinking_room"
                          + (" (thinking_budget is the room of enabled thinking)" if mode else ""))
    if room is not None and (isinstance(room, bool) or not isinstance(room, int) or room < 1):
        raise ConfigError(f"{where}: thinking_room={room!r}: give a whole number of tokens (e.g. "
                          f"{ADAPTIVE_THINKING_ROOM}), or leave it out for the default")
    if asked is not None and temperature is not None:
        name = "thinking=\"adaptive\"" if asked == "adaptive" else "thinking_budget"
        raise ConfigError(
            f"{where}: extended thinking ({name}) takes no temperature (the API allows only its "
            f"default), not {temperature}: remove temperature from this annotator")
    if temperature is not None:  # refused here, not as the SDK's TypeError per call
        raise ConfigError(
            f"{where}: the Anthropic Messages API (SDK 2.x) takes no temperature, not "
            f"{temperature}: remove temperature from this annotator")
    return mode


def _sdk_deprecates_enabled(model: str) -> bool:
    """Whether the installed SDK warns that ``thinking.type=enabled`` is deprecated on
    ``model`` (its own list, read so that this note follows the SDK's warning)."""
    try:
        from anthropic._data import MODELS_TO_WARN_WITH_THINKING_ENABLED as listed
    except ImportError:  # no SDK (a dry run), or one that moved the list: no note
        return False
    return model in listed


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
            ``THINKING_MIN_BUDGET``; implies ``thinking="enabled"``); None: no thinking, and
            requests and cache keys are those of adapters that predate it. The request's
            ``max_tokens`` is this plus ``max_tokens``; the budget is part of the cache key
            when set.
        thinking: ``"adaptive"``: Claude decides how much to think (no budget is sent);
            ``"enabled"``: the same as giving ``thinking_budget`` alone. Part of the cache
            key when adaptive. None: no thinking, or ``"adaptive"`` on a model that thinks
            by default (``CLAUDE_RULES``), where a forced tool would be refused.
        thinking_room: adaptive thinking only: the ``max_tokens`` room for the thinking,
            added to ``max_tokens`` in the request (default ``ADAPTIVE_THINKING_ROOM``).
        effort: how much effort Claude spends on the reply (``"low"`` ... ``"max"``), sent
            as ``output_config``; None: the model's own default, and nothing is sent. Part
            of the cache key when set (it changes the answer); without it, requests and
            keys are those of adapters that predate it.
        timeout: seconds before one request counts as timed out (then retried).
        name: annotator id in the dataset; default ``"anthropic:<model>"``.

    Raises:
        ConfigError: a ``thinking_budget`` that is not a whole number of at least
            ``THINKING_MIN_BUDGET``; a ``thinking`` other than ``"adaptive"`` /
            ``"enabled"``; adaptive with a budget, enabled without one, a budget on a
            model that refuses one (``ClaudeRules.no_budget``); a
            ``thinking_room`` without adaptive or not a positive whole number; any
            temperature (with thinking: the API allows only its default; without: SDK 2.x
            takes none); an ``effort`` that is not one of ``Effort``'s values.

    Warns:
        UserWarning: when built, for ``enabled`` thinking on a model whose SDK calls it
            deprecated (claude-opus-4-6): it names this annotator's ``thinking="adaptive"``
            and comes before any call, batches included (the SDK warns on live calls only).
    """

    provider = "anthropic"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None,
                 max_tokens: int = 300, timeout: float = 60.0,
                 name: str | None = None, temperature: float | None = None,
                 thinking_budget: int | None = None, thinking: ThinkingMode | None = None,
                 thinking_room: int | None = None, effort: Effort | None = None) -> None:
        if effort is not None and effort not in get_args(Effort):  # else a 400 per request
            raise ConfigError(f"anthropic:{model}: effort must be one of "
                              f"{list(get_args(Effort))}, not {effort!r}")
        self.effort = effort
        self.thinking = _check_thinking(model, thinking, thinking_budget, thinking_room,
                                        temperature)
        if self.thinking == "enabled" and _sdk_deprecates_enabled(model):
            warnings.warn(
                f"anthropic:{model}: thinking_budget={thinking_budget} sends extended thinking "
                f"as thinking.type=enabled, which Anthropic deprecates on {model}; "
                "thinking=\"adaptive\" (in place of thinking_budget: in the --config file's "
                "[[annotators]] entry, or the adapter's thinking=) lets Claude decide how much "
                "to think", UserWarning, stacklevel=2)
        self.thinking_budget = thinking_budget
        self.thinking_room = (ADAPTIVE_THINKING_ROOM if thinking_room is None
                              and self.thinking == "adaptive" else thinking_room)
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
        thinking: dict[str, Any] = {}  # none: the keys of adapters that predate thinking
        if self.thinking == "enabled":
            thinking = {"thinking_budget": self.thinking_budget}
        elif self.thinking == "adaptive":  # not thinking_room: it only decides where a
            # reply is cut, and a cut one is never cached, so a larger room reuses the rest
            thinking = {"thinking": "adaptive"}
        effort = {} if self.effort is None else {"effort": self.effort}  # none: keys as before
        return {"max_tokens": self.max_tokens, **thinking, **effort, **server}

    @property
    def request_max_tokens(self) -> int:
        """The request's ``max_tokens``: the answer's budget plus any thinking budget or
        adaptive thinking's room (the most output tokens a reply can bill)."""
        return self.max_tokens + (self.thinking_budget or self.thinking_room or 0)

    def _new_client(self) -> Any:
        anthropic = require("anthropic", "annotate")
        return anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self.base_url,
                                        max_retries=0, timeout=self.timeout)

    def request_body(self, prompt: Prompt, schema: LabelSchema) -> dict[str, Any]:
        """The Messages API parameters (also the ``params`` of a batch request)."""
        thinking = {} if self.thinking is None else {  # after the rest: bodies without
            # thinking stay byte for byte those of adapters that predate it
            "thinking": {"type": "adaptive"} if self.thinking == "adaptive"
            else {"type": "enabled", "budget_tokens": self.thinking_budget}}
        effort = {} if self.effort is None else {"output_config": {"effort": self.effort}}
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
            "tool_choice": {"type": "tool", "name": TOOL_NAME} if self.thinking is None
            else {"type": "auto"},  # thinking may not be enabled with a forced tool
            **thinking,
            **effort,
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
