"""The guarding proxy of ``POST /v1/responses`` (OpenAI's Responses API):
``ResponsesProxy``, the route's work once auth and the body bound have passed.

``ChatProxy``'s twin on the same ``--upstream``, for apps that call
``client.responses.create``: it calls the very ``wrap_openai`` ``responses.create`` on
an ``AsyncOpenAI`` whose ``base_url`` is the upstream, so its decisions are
``guard.wrap(client)``'s in process: the input rail reads ``input`` (and under
``--input-turns all`` ``instructions`` and ``tools``) and refuses without calling the
upstream; the output rail replaces a harmful ``Response`` (``status: "incomplete"``,
``content_filter``) and releases a stream's events only once checked. Its key,
forwarding, deadline and errors are ``ChatProxy``'s (OpenAI's error JSON, an upstream
4xx passed through, 502 / 504 naming the upstream's URL, never its key).

A stream is written as OpenAI writes Responses events (``event: <type>`` and ``data:``,
no ``[DONE]``); once it has begun, a failure is one ``error`` event of the Responses
API's shape (``type``, ``code``, ``message``, ``param``, ``sequence_number``).
``background: true`` is refused: its reply would come later from ``GET
/v1/responses/{id}``, which no rail reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import BaseModel

from guardrail_dro.serve.http.proxy import ChatProxy, check_tools
from guardrail_dro.serve.http.schema import ApiError
from guardrail_dro.serve.http.upstream_call import read_body
from guardrail_dro.serve.rails.responses import prompt_texts, responses_input_texts

__all__ = ["ResponsesProxy"]

log = logging.getLogger(__name__)

#: What the caller's JSON passes as keyword arguments to ``responses.create`` (all in its
#: signature; ``stream`` must be one for the SDK to read events); every other field goes
#: through ``extra_body`` untouched, where the rails read ``instructions``, ``tools`` and
#: ``background`` as sent, and no body field can set the SDK's ``extra_headers`` or
#: ``timeout``.
_KWARGS = ("model", "input", "stream")


def _params(raw: bytes, turns: str) -> dict[str, Any]:
    """The caller's Responses request, checked as far as the proxy relies on it.

    Raises:
        ApiError: 400 naming the field: ``read_body``'s checks, ``model`` not a string,
            ``input`` neither a str nor a list of objects (or an item the input rail
            cannot read), ``prompt`` variables that are not a mapping, ``stream`` not a
            bool, ``background`` set, under ``all``
            ``instructions`` or ``tools`` the input rail cannot read (a ``TypeError``
            in the rails, else answered 502 blaming an upstream never called).
    """
    body = read_body(raw, "a Responses API request")
    if not isinstance(body.get("model"), str):
        raise ApiError(400, "model: give the upstream model's name (a string)", param="model")
    given = body.get("input")
    items = isinstance(given, list) and all(isinstance(i, dict) for i in given)
    if not (given is None or isinstance(given, str) or items):
        why = "input: give a string or a list of input items (objects)"
        raise ApiError(400, why, param="input")
    try:
        responses_input_texts(given, None, None, turns)
    except TypeError as exc:
        raise ApiError(400, f"input: {exc}", param="input") from None
    try:
        prompt_texts(body.get("prompt"))  # read under every scope
    except TypeError as exc:
        raise ApiError(400, f"prompt: {exc}", param="prompt") from None
    if turns == "all":
        check_tools(body, ("tools",))
        try:
            responses_input_texts(None, body.get("instructions"), None, turns)
        except TypeError as exc:
            raise ApiError(400, f"instructions: {exc}", param="instructions") from None
    if not isinstance(body.get("stream", False), bool):
        raise ApiError(400, "stream: give true or false", param="stream")
    if body.get("background"):
        why = (
            "background: this proxy does not run background responses: their output is "
            "fetched later from GET /v1/responses/{id}, which it never checks; send the "
            "request without background (stream: true for a long one)"
        )
        raise ApiError(400, why, param="background")
    return body


def _sse(data: dict[str, Any]) -> bytes:
    """One event as OpenAI writes Responses events: its type on an ``event:`` line."""
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class ResponsesProxy(ChatProxy):
    """``POST /v1/responses`` through ``guard``'s rails to ``upstream``: ``ChatProxy``
    with the guarded ``responses.create`` (its own client, on the same upstream, key and
    forwarding), a Responses request's checks and its stream's events."""

    reply = "a Responses API response"
    log = log
    create_path = ("responses", "create")
    kwargs_names = _KWARGS

    def _read(self, raw: bytes) -> dict[str, Any]:
        """A Responses request, checked as far as this route relies on it (``_params``)."""
        return _params(raw, self._turns)

    def _check_reply(self, reply: Any) -> None:
        """Refuse a reply that is no ``Response``: the SDK hands back the body's text
        when it cannot parse one, and keeps output items that are no objects (a str)
        as they are, which the output rail (reading by key or attribute) read as no
        text: a harmful string in ``output`` reached the caller unchecked.

        Raises:
            ApiError: 502 (``_bad_reply``).
        """
        output = getattr(reply, "output", None)
        if not isinstance(output, list):
            raise self._bad_reply(f"a {type(reply).__name__} without output")
        odd = [item for item in output if not isinstance(item, BaseModel)]
        if odd:
            raise self._bad_reply(f"an output item that is no object ({type(odd[0]).__name__})")

    async def _events(self, stream: Any, deadline: float) -> AsyncIterator[bytes]:
        """The guarded stream's events as the rail releases them, until the loop time
        ``deadline``; an upstream failure after the first byte can change no status, so
        it is one Responses ``error`` event, numbered after the last event sent."""
        seq = -1
        try:
            async with aclosing(self._released(stream, deadline)) as events:
                async for event in events:
                    data = event.to_dict(mode="json")
                    seq = data.get("sequence_number", seq)
                    # An upstream's own error event passes through (the SDK raises on
                    # none): what it says is scrubbed of the key, as a 4xx's is.
                    yield _sse(self._scrubbed(data) if data["type"] == "error" else data)
        except Exception as exc:
            err = self._upstream_error(exc)
            yield _sse(
                {"type": "error", "code": err.code or err.type, "message": err.message,
                 "param": err.param, "sequence_number": seq + 1}
            )  # fmt: skip
        finally:
            await stream.close()
