"""``provider:model`` annotator specs, as the CLI takes them, to adapter objects.

Kept apart from ``cli.py`` so that scripts can build the same annotators the command
line does (and the CLI stays a thin shell). API keys come from the standard environment
variables and are checked here, before any call, so a missing key is one clear error
instead of a failure per item.
"""

from __future__ import annotations

import os

from annotators.anthropic_annotator import AnthropicAnnotator, Effort, ThinkingMode
from annotators.base import Annotator
from annotators.openai_annotator import (
    DEFAULT_MAX_TOKENS,
    REASONING_MAX_TOKENS,
    Api,
    OpenAIAnnotator,
    ReasoningEffort,
    is_reasoning_model,
)
from guardrail_dro.errors import ConfigError

__all__ = ["KEY_VARIABLES", "make_annotator", "parse_spec"]

KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def parse_spec(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4o"`` -> ``("openai", "gpt-4o")``.

    Raises:
        ConfigError: no colon, an empty model or an unknown provider.
    """
    if not isinstance(spec, str):
        raise TypeError(f"annotator spec must be a str like 'openai:gpt-4o-mini', not {spec!r}")
    provider, sep, model = spec.partition(":")
    provider = provider.strip().lower()
    if not sep or not model.strip() or provider not in KEY_VARIABLES:
        raise ConfigError(
            f"--annotator {spec!r}: expected PROVIDER:MODEL with PROVIDER one of "
            f"{sorted(KEY_VARIABLES)}, e.g. openai:gpt-4o-mini or anthropic:claude-sonnet-4-5"
        )
    return provider, model.strip()


def make_annotator(spec: str, *, base_url: str | None = None,
                   anthropic_base_url: str | None = None, timeout: float = 60.0,
                   need_key: bool = True, temperature: float | None = None,
                   max_tokens: int | None = None,
                   reasoning_effort: ReasoningEffort | None = None,
                   thinking_budget: int | None = None, thinking: ThinkingMode | None = None,
                   thinking_room: int | None = None, effort: Effort | None = None,
                   api: Api | None = None) -> Annotator:
    """Build the annotator named by ``spec``, reading its key from the environment.

    Args:
        spec: ``openai:MODEL`` or ``anthropic:MODEL``.
        base_url: OpenAI-compatible server for ``openai:`` specs (ends in ``/v1``).
        anthropic_base_url: API root for ``anthropic:`` specs.
        timeout: seconds per request.
        need_key: check that the key variable is set (False for a dry run).
        temperature / max_tokens: request parameters (None: the adapter's default;
            a temperature only for ``openai:`` models other than reasoning ones, which
            take only their default; the Anthropic API takes none). The default budget
            is ``REASONING_MAX_TOKENS`` for an OpenAI reasoning model, whose hidden
            reasoning spends it too (at 300 a reply is often cut before it says a word),
            else 300 (as ``OpenAIAnnotator``'s own default).
        reasoning_effort: ``openai:`` reasoning models only (None: the model's default,
            not sent).
        thinking_budget: ``anthropic:`` only: tokens of extended thinking before the
            answer (at least 1024; None: no thinking, nothing sent); ``max_tokens`` stays
            the answer's budget, and the request asks for both.
        thinking / thinking_room: ``anthropic:`` only: ``thinking="adaptive"`` lets Claude
            decide how much to think (no budget; the request's ``max_tokens`` is
            ``thinking_room``, default ``ADAPTIVE_THINKING_ROOM``, plus ``max_tokens``);
            checked by ``AnthropicAnnotator``.
        effort: ``anthropic:`` only: ``output_config.effort`` (``"low"`` ... ``"max"``;
            None: the model's default, not sent); checked by ``AnthropicAnnotator``.
        api: ``openai:`` only: ``"chat"``, ``"responses"`` (the Responses API) or
            ``"auto"`` (None: ``"auto"``: the Responses API for a model OpenAI serves
            only there, ``openai_annotator.RESPONSES_ONLY``); see ``OpenAIAnnotator``.

    Raises:
        ConfigError: bad spec, the provider's key variable is not set, or a temperature,
            reasoning effort or thinking option the model does not take, a base URL that
            is not http(s).
    """
    provider, model = parse_spec(spec)
    for option, url in (("--base-url", base_url), ("--anthropic-base-url", anthropic_base_url)):
        # `--base-url $URL` with URL unset took the next option ("--out") as the URL
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{option} {url!r} is not a URL: give http(s)://HOST[:PORT]"
                              f"{'/v1' if option == '--base-url' else ''}, or leave it out")
    var = KEY_VARIABLES[provider]
    if need_key and not os.environ.get(var):
        hint = " (a local OpenAI-compatible server accepts any value)" if provider == "openai" \
            else ""
        raise ConfigError(f"--annotator {spec}: the environment variable {var} is not set; "
                          f"export {var}=...{hint}")
    key = os.environ.get(var) or "unset"  # the SDKs refuse to build without one
    reasoning = provider == "openai" and is_reasoning_model(model)
    budget = max_tokens if max_tokens is not None else (
        REASONING_MAX_TOKENS if reasoning else DEFAULT_MAX_TOKENS)  # as the adapters'
    if provider == "openai":
        claude_only = [name for name, value in (("thinking_budget", thinking_budget), (
            "thinking", thinking), ("thinking_room", thinking_room)) if value is not None]
        if effort is not None:  # Claude's name for it; OpenAI's is reasoning_effort
            raise ConfigError(f"{spec}: effort is Claude's output effort (anthropic: "
                              "annotators); OpenAI reasoning models take reasoning_effort: "
                              "use reasoning_effort, or remove effort from this annotator")
        if claude_only:
            raise ConfigError(f"{spec}: {claude_only[0]} is Claude's extended thinking "
                              "(anthropic: annotators); OpenAI reasoning models think less or "
                              f"more by reasoning_effort: remove {' and '.join(claude_only)} "
                              "from this annotator")
        if temperature not in (None, 1.0) and is_reasoning_model(model):
            raise ConfigError(f"{spec}: OpenAI reasoning models accept only their default "
                              f"temperature (1), not {temperature}: remove it from this "
                              "annotator")
        return OpenAIAnnotator(model, api_key=key, base_url=base_url, timeout=timeout,
                               temperature=temperature, max_tokens=budget,
                               reasoning_effort=reasoning_effort, api=api or "auto")
    if reasoning_effort is not None:
        raise ConfigError(f"{spec}: reasoning_effort is for OpenAI reasoning models (o1, o3, "
                          "o4-mini, gpt-5...); remove it from this annotator (Claude's is "
                          "effort)")
    if api is not None:
        raise ConfigError(f"{spec}: api chooses between OpenAI's chat completions and "
                          "Responses API (openai: annotators); Claude has one: remove api "
                          "from this annotator")
    if temperature is not None:
        raise ConfigError(f"{spec}: the Anthropic Messages API (SDK 2.x) takes no temperature; "
                          "remove it from this annotator")
    return AnthropicAnnotator(model, api_key=key, base_url=anthropic_base_url, timeout=timeout,
                              max_tokens=budget, thinking_budget=thinking_budget,
                              thinking=thinking, thinking_room=thinking_room, effort=effort)
