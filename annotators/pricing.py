"""Token prices, and what a run costs or would cost.

``DEFAULT_PRICES`` are public list prices in USD per million tokens (input, output) as
last checked by hand (late 2025; the 2026 models added from the providers' own model
pages on 2026-12-07, and only where a page states a flat price: none for a "from $x"
price such as claude-haiku-5-5's, nor for a model whose page gives none); they go
stale, so every entry point takes ``prices=`` to override or extend them (the CLI:
``--prices prices.json``). A model is matched by its exact name, else by its name less
a dated snapshot suffix (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``,
``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4-5``) or ``-latest``. Never by a
bare prefix: ``claude-opus-4-5`` is not priced as ``claude-opus-4`` (3x the price), nor
``o3-pro`` as ``o3``, nor ``claude-opus-5-5`` as ``claude-opus-5``. A model with no
price gives a cost of None, never a made-up number. Batch jobs are billed at
``BATCH_DISCOUNT`` of the live price by both providers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from annotators.base import Prompt, Usage
from guardrail_dro.errors import ConfigError

__all__ = [
    "BATCH_DISCOUNT",
    "DEFAULT_PRICES",
    "EXPECTED_OUTPUT_TOKENS",
    "Price",
    "cost_of",
    "estimate_request_tokens",
    "estimate_tokens",
    "load_prices",
    "price_for",
]

Price = tuple[float, float]
"""(USD per million input tokens, USD per million output tokens)."""

BATCH_DISCOUNT = 0.5

DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),  # the first gpt-4o snapshot kept its launch price
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5.1": (1.25, 10.00),
    "gpt-5.4-nano": (0.20, 1.25),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    # Responses API only; https://developers.openai.com/api/docs/models/codex-mini-latest
    "codex-mini-latest": (1.50, 6.00),
    # Older models, for the judge rows of datasets labelled with them (toxic-questions).
    "gpt-4": (30.00, 60.00),
    "gpt-4-turbo": (10.00, 30.00),
    # Anthropic
    "claude-fable-5-2": (8.00, 40.00),
    "claude-fable-5-1": (10.00, 50.00),
    "claude-fable-5": (10.00, 50.00),
    "claude-opus-5-5": (4.00, 20.00),  # cheaper than claude-opus-5: never priced by prefix
    "claude-opus-5": (5.00, 25.00),
    "claude-opus-4-8": (5.00, 25.00),
    "claude-opus-4-6": (5.00, 25.00),
    "claude-sonnet-5-5": (2.00, 10.00),
    "claude-sonnet-5": (2.00, 10.00),
    "claude-sonnet-4-6": (3.00, 15.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-2": (8.00, 24.00),  # retired; its last list price (also claude-2.0, -2.1)
    "claude-2.0": (8.00, 24.00),
    "claude-2.1": (8.00, 24.00),
}

# A dated snapshot (-2024-07-18, -20250929) or the -latest alias at the end of a name.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def price_for(model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model``: exact name, else the name less a snapshot suffix, else None.

    Example:
        >>> price_for("claude-sonnet-4-5-20250929")
        (3.0, 15.0)
        >>> price_for("o3-pro") is None
        True
    """
    table = {**DEFAULT_PRICES, **(prices or {})}
    if model in table:
        return table[model]
    return table.get(_SNAPSHOT.sub("", model))


def cost_of(model: str, usage: Usage, prices: Mapping[str, Price] | None = None, *,
            batch: bool = False) -> float | None:
    """USD for ``usage`` tokens of ``model``; None when the model has no price."""
    price = price_for(model, prices)
    if price is None:
        return None
    usd = (usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1e6
    return usd * (BATCH_DISCOUNT if batch else 1.0)


def estimate_tokens(text: str) -> int:
    """A provider-neutral token estimate (about four characters a token)."""
    return max(1, len(text) // 4)


EXPECTED_OUTPUT_TOKENS = 60
"""Reply tokens assumed by ``--dry-run`` and the token limiter before a reply is seen.

A label JSON is about that long; an OpenAI reasoning model also bills its hidden
reasoning as output, up to its whole budget a reply, so a dry run gives that ceiling
beside this figure (``report.estimate_into``) rather than a second guess."""


def estimate_request_tokens(prompt: Prompt) -> int:
    """Tokens one request of ``prompt`` is expected to use, reply included."""
    text = prompt.system + "".join(m["content"] for m in prompt.messages)
    return estimate_tokens(text) + EXPECTED_OUTPUT_TOKENS


def load_prices(path: str | Path) -> dict[str, Price]:
    """Read ``{"model": [input_usd_per_mtok, output_usd_per_mtok], ...}``.

    Raises:
        ConfigError: unreadable file or a malformed entry (named).
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read prices from {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected an object of model -> [input, output] prices")
    out: dict[str, Price] = {}
    for model, pair in raw.items():
        if (not isinstance(pair, list | tuple) or len(pair) != 2
                or not all(isinstance(x, int | float) and x >= 0 for x in pair)):
            raise ConfigError(
                f"{path}: price of {model!r} must be [input, output] USD per million "
                f"tokens, got {pair!r}"
            )
        out[model] = (float(pair[0]), float(pair[1]))
    return out
