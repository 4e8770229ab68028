"""Token counts for ``--dry-run``: the provider's tokenizer where one works offline.

OpenAI's tokenizers are public BPE tables (``o200k_base`` for gpt-4o / 4.1 / 5 and the
o-series, ``cl100k_base`` for gpt-4 and gpt-3.5). ``tiktoken`` downloads its tables on
first use and fails without network (checked: a ``ConnectionError`` for
``o200k_base.tiktoken``), so the first choice is ``bpe-openai``, which ships the same
tables inside its wheel (the ``annotate`` extra installs it); ``tiktoken`` is used when
``bpe-openai`` is missing and tiktoken's tables are at hand. Anthropic publishes no
offline tokenizer for its current models (only a count-tokens API call), and servers
behind an OpenAI-compatible URL run models of their own: for these the count is an
estimate, about four characters a token, and says so.

A request's count is its text's tokens plus the chat format's fixed cost per message
(OpenAI's documented 3 + 1 for the reply's priming); the JSON schema or tool the
request carries is counted as text, which is close to, not exactly, what is billed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from annotators.pricing import estimate_tokens

__all__ = ["TokenCounter", "counter_for", "request_tokens"]

_ENCODINGS = [
    (re.compile(r"^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o\d|chatgpt-4o)"), "o200k_base"),
    (re.compile(r"^(gpt-4|gpt-3\.5)"), "cl100k_base"),
]
ESTIMATE = "estimate (about 4 characters a token)"


@dataclass(frozen=True)
class TokenCounter:
    """``count(text) -> tokens`` and how it counts (shown beside every number)."""

    count: Callable[[str], int]
    method: str

    @property
    def exact(self) -> bool:
        return self.method != ESTIMATE


def _counting(enc: Any) -> Callable[[str], int]:
    """``enc``'s token count, or the estimate for a text it refuses: bpe-openai raises
    "Input too long to encode safely" on a 4-million-character text and tiktoken past
    its chunk limit, which crashed a --dry-run instead of pricing it."""

    def count(text: str) -> int:
        try:
            return len(enc.encode_ordinary(text))
        except Exception:
            return estimate_tokens(text)

    return count


@lru_cache(maxsize=4)
def _encoding(name: str) -> TokenCounter | None:
    try:
        import bpe_openai

        enc: Any = bpe_openai.get_encoding(name)
        return TokenCounter(_counting(enc), f"{name} via bpe-openai")
    except Exception:
        pass
    try:
        import tiktoken

        enc = tiktoken.get_encoding(name)
        return TokenCounter(_counting(enc), f"{name} via tiktoken")
    except Exception:
        return None


def counter_for(provider: str, model: str, *, default_server: bool = True) -> TokenCounter:
    """The tokenizer of ``model``, or the labelled estimate.

    Args:
        default_server: False when an OpenAI model name is served elsewhere (a
            ``--base-url``): that server's model has its own tokenizer.
    """
    if provider == "openai" and default_server:
        for pattern, name in _ENCODINGS:
            if pattern.match(model):
                found = _encoding(name)
                if found is not None:
                    return found
    return TokenCounter(estimate_tokens, ESTIMATE)


def request_tokens(body: dict[str, Any], counter: TokenCounter) -> int:
    """Input tokens of one rendered request body (either provider's; a Responses API
    body's ``instructions``, ``input`` and ``text`` format count as a chat's system,
    messages and ``response_format``: they were left out, a request priced at 3 tokens)."""
    n = 3  # the reply's priming
    for system in ("system", "instructions"):
        if body.get(system):
            n += 3 + counter.count(str(body[system]))
    for m in [*body.get("messages", []), *body.get("input", [])]:
        n += 3 + counter.count(str(m.get("content", "")))
    for extra in ("response_format", "tools", "text"):
        if extra in body:
            n += counter.count(json.dumps(body[extra]))
    return n
