"""The wire format of ``POST /v1/moderations``: OpenAI's moderation request and
response shapes, and OpenAI's error shape, so the ``openai`` SDK (and code written for
OpenAI's endpoint) reads our answers unchanged.

Request: ``{"input": str | [str | {"type": "text", "text": str}, ...], "model": str?}``.
Response: ``{"id", "model", "results": [...]}``, one result per input in order, each
``GuardResult.to_openai_moderation()`` (``flagged``, ``categories``, ``category_scores``
over the guard's own non-safe classes, not OpenAI's taxonomy) plus
``category_applied_input_types`` and our own ``guardrail`` object (the whole
``GuardResult``: allowed, label, label_name, toxic_score, action, degraded, error,
windows, latency_ms...).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail_dro.serve.http.config import ServeConfig
from guardrail_dro.serve.policy import GuardResult

__all__ = ["ApiError", "ModerationRequest", "error_body", "moderation_body", "parse_request"]


class ApiError(Exception):
    """An HTTP error answered in OpenAI's error shape.

    Attributes:
        status: the HTTP status.
        message: what was wrong, for a person.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``...).
        param: the request field at fault, if any.
        code: a machine-readable code.
        headers: extra response headers (``Retry-After``...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers or {}


def error_body(err: ApiError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``: what OpenAI answers."""
    return {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }


class TextPart(BaseModel):
    """One text part of a multimodal moderation input (images are not supported)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ModerationRequest(BaseModel):
    """The request body of ``POST /v1/moderations``."""

    model_config = ConfigDict(extra="forbid")
    # fail_fast: a list is refused at its first bad item. Without it pydantic reported
    # every item (two errors each), and a 900 KB body of 300,000 numbers held the event
    # loop, health checks included, for about 7 s before its 400.
    input: str | Annotated[list[str | TextPart], Field(fail_fast=True)]
    model: str | None = None

    def texts(self) -> list[str]:
        """The texts to check, in order."""
        if isinstance(self.input, str):
            return [self.input]
        return [p if isinstance(p, str) else p.text for p in self.input]


def _validate(raw: bytes) -> ModerationRequest:
    """pydantic's fast JSON parser, or, where it refuses the body, the standard library's.

    The one JSON the fast parser refuses and the standard library reads is a string
    escaping a lone UTF-16 surrogate (``"\\ud83d"``): JavaScript's ``JSON.stringify``
    writes one for a string cut in the middle of an emoji, as an LLM reply cut at its
    token limit can be. The guard scores such a text like any other, so an output rail
    must not answer it 400. Anything else the standard library reads that is not a
    request still fails validation below.
    """
    try:
        return ModerationRequest.model_validate_json(raw)
    except ValidationError as exc:
        if exc.errors()[0]["type"] != "json_invalid":
            raise
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON for either (or nested too deep
            raise exc from None  # for the standard library's recursion): pydantic's words
        return ModerationRequest.model_validate(parsed, strict=True)


def _bad_input(exc: ValidationError) -> str:
    """What is wrong with ``input``: its first bad item where it is a list (a long list's
    opening items said nothing about which one), else the value itself."""
    shape = (
        "input must be a string or a list of strings (or of {'type': 'text', 'text': ...} parts)"
    )
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        if len(loc) > 2 and loc[0] == "input" and isinstance(loc[2], int):
            return f"{shape}; input[{loc[2]}] is not: {err['input']!r:.80}"
    return f"{shape}, not {exc.errors(include_url=False)[0]['input']!r:.80}"


def parse_request(raw: bytes, config: ServeConfig) -> ModerationRequest:
    """The validated request, within ``config``'s limits.

    Raises:
        ApiError: 400 naming the field: not JSON, a missing or mistyped ``input``, an
            unknown field, an empty list, too many inputs, a text over ``max_chars``.
    """
    try:
        req = _validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise ApiError(400, f"the body is not valid JSON: {first['msg']}") from None
        loc = [str(p) for p in first["loc"]]
        if loc[:1] == ["input"] and first["type"] != "missing":
            raise ApiError(400, _bad_input(exc), param="input") from None
        where = ".".join(loc) or "body"
        raise ApiError(400, f"{where}: {first['msg']}", param=loc[0] if loc else None) from None
    if req.model is not None and not req.model.isascii():
        try:  # echoed in the response, which cannot carry a lone surrogate
            req.model.encode()
        except UnicodeEncodeError:
            msg = "model: not valid Unicode (a lone surrogate)"
            raise ApiError(400, msg, param="model") from None
    texts = req.texts()
    if not texts:
        raise ApiError(400, "input: give at least one text", param="input")
    if len(texts) > config.max_inputs:
        raise ApiError(
            400,
            f"input: {len(texts)} texts, more than this server's limit of {config.max_inputs}",
            param="input",
            code="too_many_inputs",
        )
    for i, text in enumerate(texts):
        if len(text) > config.max_chars:
            raise ApiError(
                400,
                f"input[{i}]: {len(text)} characters, more than this server's limit of "
                f"{config.max_chars}",
                param="input",
                code="input_too_long",
            )
    return req


def moderation_body(
    model: str, results: Sequence[GuardResult], escalated: Sequence[bool] | None = None
) -> dict[str, Any]:
    """The response body for ``results`` (one per input, in order); with ``escalated``
    (a server with an LLM judge), each ``guardrail`` object also says whether the judge
    was asked."""
    out = []
    for i, r in enumerate(results):
        item = r.to_openai_moderation()
        item["category_applied_input_types"] = {c: ["text"] for c in r.categories}
        item["guardrail"] = r.to_dict()
        if escalated is not None:
            item["guardrail"]["escalated"] = escalated[i]
        out.append(item)
    return {"id": f"modr-{uuid.uuid4().hex}", "model": model, "results": out}
