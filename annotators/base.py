"""What an LLM annotator is, what it must answer, and what can come of asking it.

Three layers, each with one job:

- ``Annotator``: the protocol an adapter implements. One ``call`` is one HTTP request
  (no retries, no validation); adapters differ only in how they talk to their SDK.
- ``LabelReply``: the pydantic model the model's JSON must satisfy. A label that is in
  the label schema, a non-empty rationale, a confidence in [0, 1]. Validation happens
  here, once, for every provider, so a reply is judged by the same rule wherever it
  came from.
- ``AnnotationResult``: the outcome for one (item, annotator). ``labelled`` carries a
  label; ``refused`` is the model declining (counted, never a label and never a
  crash); ``invalid`` is a reply that failed validation twice (its raw text kept);
  ``error`` is a call that never succeeded (transient errors past the retry budget,
  or a non-transient API error). Only ``error`` is worth asking again: the others were
  paid for, so the cache keeps them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from annotators.redact import redact
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import AnnotatorError, BatchPendingError, RepeatedAPIError

__all__ = [
    "AnnotationResult",
    "Annotator",
    "AnnotatorError",
    "BatchPendingError",
    "LabelReply",
    "Outcome",
    "Prompt",
    "RawReply",
    "RepeatedAPIError",
    "Usage",
    "aclose_quietly",
    "parse_reply",
]

Outcome = Literal["labelled", "refused", "invalid", "error"]
"""What came of asking one annotator about one item (see the module docstring)."""


class LabelReply(BaseModel):
    """The JSON an annotator must answer with.

    The label is checked against the label schema passed as validation context
    (``{"schema": LabelSchema}``); without a context any non-empty label passes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, description="One class name of the label schema.")
    rationale: str = Field(description="Why this label, in one or two sentences.")
    confidence: float = Field(ge=0.0, le=1.0, description="Probability the label is right.")

    @field_validator("label", mode="before")
    @classmethod
    def _label_str(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence_a_number(cls, v: object) -> object:
        # JSON true is no probability (pydantic read it as 1.0, a confident label).
        if isinstance(v, bool):
            raise ValueError("confidence must be a number in [0, 1], not a boolean")
        return v

    @field_validator("label")
    @classmethod
    def _label_in_schema(cls, v: str, info: ValidationInfo) -> str:
        schema = (info.context or {}).get("schema")
        if schema is not None and v not in schema:
            raise ValueError(f"label {v!r} is not one of {list(schema.classes)}")
        return v

    @field_validator("rationale")
    @classmethod
    def _rationale_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("rationale must not be empty")
        return v


def parse_reply(raw: str, schema: LabelSchema) -> LabelReply:
    """Validate a model's raw JSON text against the reply model and the label schema.

    Raises:
        pydantic.ValidationError: not JSON, a missing field, a label outside the
            schema, an empty rationale or a confidence outside [0, 1].
    """
    return LabelReply.model_validate_json(raw, context={"schema": schema})


@dataclass(frozen=True)
class Usage:
    """Tokens a reply cost, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class Prompt:
    """A provider-neutral prompt: a system text and the chat turns that follow it.

    ``messages`` are ``{"role": "user" | "assistant", "content": str}`` dicts; each
    adapter maps them to its SDK (OpenAI puts the system text first in the list,
    Anthropic passes it as ``system=``).
    """

    system: str
    messages: tuple[dict[str, str], ...]

    def followed_by(self, *turns: dict[str, str]) -> Prompt:
        return Prompt(self.system, self.messages + tuple(turns))


@dataclass(frozen=True)
class RawReply:
    """One successful HTTP answer, before validation.

    Attributes:
        text: the JSON the model produced (a tool input re-serialised for Anthropic),
            or whatever text it gave instead; None when it gave none.
        refusal: the model's refusal message when it declined, else None.
        usage: tokens billed for this call.
        model: the model that answered, as the server named it.
    """

    text: str | None
    refusal: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None


class AnnotationResult(BaseModel):
    """The outcome for one item and one annotator; what the cache stores.

    ``raw`` keeps the model's text for ``invalid`` and ``refused`` outcomes so that a
    failure can be read, not guessed. ``calls`` counts the HTTP requests this result
    cost, retries included.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Outcome
    annotator: str
    label: str | None = None
    rationale: str | None = None
    confidence: float | None = None
    model: str | None = None
    raw: str | None = None
    error: str | None = None
    status: int | None = None
    """HTTP status of the call that failed, for an ``error`` (None: no HTTP answer)."""
    error_code: str | None = Field(default=None, exclude=True)
    """The provider's error code of that call (OpenAI's ``insufficient_quota``...), for
    the runner to judge by (it read it back out of ``error``'s text before). Excluded
    from dumps: only an ``error`` has one and errors are never cached, so cache rows stay
    as they were (an older version reads them; rows without it load as None)."""
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    @field_validator("error", "raw")
    @classmethod
    def _no_keys(cls, v: str | None) -> str | None:
        # A server may quote the key it was sent; nothing stored or printed keeps it.
        return None if v is None else redact(v)

    @property
    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens)

    @property
    def cacheable(self) -> bool:
        """Paid-for outcomes are kept; an ``error`` is asked again on the next run."""
        return self.outcome != "error"


async def aclose_quietly(client: Any) -> None:
    """Close an SDK client left over from an event loop that has ended.

    Its connections belonged to that loop; closing them from another may fail, and
    then there is nothing more to do than drop the client.
    """
    with contextlib.suppress(RuntimeError, OSError):
        await client.close()


@runtime_checkable
class Annotator(Protocol):
    """An LLM that labels texts: what the runner and the batch module need of an adapter.

    Attributes:
        name: the annotator id written into the dataset, e.g. ``"openai:gpt-4o"``.
        provider: ``"openai"`` or ``"anthropic"`` (part of the cache key).
        model: the model asked for (part of the cache key).
    """

    name: str
    provider: str
    model: str

    def cache_params(self) -> dict[str, Any]:
        """Request parameters that change the answer (temperature, max tokens...)."""
        ...

    async def call(self, prompt: Prompt, schema: LabelSchema) -> RawReply:
        """Send one request and return its reply; SDK errors propagate unretried."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP client opened by ``call`` (the runner calls it once at the end)."""
        ...
