"""Redact API keys from every error text the annotators store or print.

A server may quote the key it was sent (a 401 "Incorrect API key provided: sk-...");
that text reaches ``AnnotationResult.error``, the failures file and the console. Here
key-like strings (``sk-...``, ``sk-ant-...``, ``Bearer ...`` tokens) and the keys
configured in the environment (or passed in) become ``[REDACTED]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["KEY_ENV_VARS", "REDACTED", "redact"]

REDACTED = "[REDACTED]"
KEY_ENV_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
"""Environment variables whose values are redacted wherever they appear."""

# sk-ant-..., sk-proj-..., sk-...: the providers' key shapes (8+ key characters so
# that words like "sk-learn" stay); Bearer tokens of any shape.
_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"),
)
_MIN_SECRET = 6  # a configured key shorter than this would redact ordinary words


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with key-like strings and the configured keys replaced by ``[REDACTED]``.

    Args:
        text: an error message or a raw reply.
        secrets: keys known to this caller (an annotator's ``api_key``), besides those
            of the environment (``KEY_ENV_VARS``).

    Example:
        >>> redact("HTTP 401: Incorrect API key provided: sk-abc123456789")
        'HTTP 401: Incorrect API key provided: [REDACTED]'
    """
    known = [*secrets, *(os.environ.get(v) for v in KEY_ENV_VARS)]
    for secret in sorted({s for s in known if s and len(s) >= _MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(REDACTED, text)
    return _PATTERNS[1].sub(lambda m: m.group(1) + REDACTED, text)
