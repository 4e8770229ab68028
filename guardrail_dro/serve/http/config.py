"""What a ``guardrail-dro serve`` server may accept and how it batches: ``ServeConfig``.

Every bound a request meets lives here, with its default, so the command line, the app
and the tests read one typed object (pydantic: a bad value names the field).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.policy import DEFAULT_MAX_CHARS

__all__ = ["ServeConfig", "read_api_keys"]


class ServeConfig(BaseModel):
    """Limits, batching and auth of the moderation server.

    Attributes:
        api_keys: accepted bearer keys; empty: no auth. Kept as ``SecretStr`` so that no
            repr, log line or error message shows one.
        max_body_bytes: a larger request body is refused (413) before it is parsed.
        max_inputs: texts per request (400 beyond).
        max_chars: characters per text (400 beyond); a long text is scored window by
            window, so its cost grows with its length. At most the guard's own
            ``Policy.max_chars`` (the same default): a text between the two was admitted
            and answered degraded, never scored (``create_app`` refuses the pair).
        max_batch_texts: texts per model call when concurrent requests are batched
            together (1: no micro-batching). A request is never split.
        max_wait_ms: how long the batcher waits for more requests after the first
            (0: batch only what is already queued while the model was busy).
        max_queue_texts: texts waiting for the model; a request beyond is refused with
            503 and ``Retry-After`` rather than queued without end.
        timeout_ms: a request's results not ready by then are degraded results
            (``Policy.on_error`` decides: fail closed by default, ``flagged`` true); the
            model stops working on a batch once all of its requests have timed out.
        read_timeout_ms: a request body not received whole by then is refused (408), so
            a stalled upload holds no connection (nor a graceful shutdown) for ever.
        model_name: the ``model`` answered when the request names none.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_keys: tuple[SecretStr, ...] = ()
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_inputs: int = Field(256, gt=0)
    max_chars: int = Field(DEFAULT_MAX_CHARS, gt=0)
    max_batch_texts: int = Field(64, gt=0)
    max_wait_ms: float = Field(1.0, ge=0)
    max_queue_texts: int = Field(4096, gt=0)
    timeout_ms: float = Field(10_000.0, gt=0)
    read_timeout_ms: float = Field(30_000.0, gt=0)
    model_name: str = "guardrail-dro"


def read_api_keys(*, key_file: Path | None = None, key_env: str | None = None) -> list[str]:
    """The API keys from a file (one a line; blank lines and ``#`` comments skipped)
    and / or an environment variable. Keys never come from the command line itself,
    where ``ps`` and shell history would show them.

    Raises:
        ConfigError: the file is missing or holds no key, the variable is unset or empty.
    """
    keys: list[str] = []
    if key_file is not None:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read --api-key-file {key_file}: {exc.strerror}") from None
        found = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not found:
            raise ConfigError(f"--api-key-file {key_file} holds no key")
        keys += found
    if key_env is not None:
        value = os.environ.get(key_env, "").strip()
        if not value:
            raise ConfigError(f"--api-key-env {key_env}: the variable is unset or empty")
        keys.append(value)
    return keys
