"""The OpenAI Responses API (``client.responses.create``) for the rails: the texts its
input rail reads (``responses_input_texts``), the text of a ``Response`` and the one
that replaces it, the reply a blocked input gets, and its stream's events
(``ResponsesEvents``, for ``streams.guard_stream``).

A request's ``input`` is a str (one user message) or a list of items: messages with a
role, and items of other types (function calls and their outputs, reasoning, MCP,
shell...), read by ``response_items.item_text``; ``instructions`` is its system prompt;
a ``prompt`` template's variables are read by ``prompt_texts``.
A refused reply keeps the Responses shape: ``status="incomplete"`` with
``incomplete_details.reason="content_filter"`` (the API's own word for a filtered reply,
as chat's ``finish_reason="content_filter"``), its output one message holding the
refusal. Like the rest of the rails this reads by attribute or key, and imports the
openai SDK only to build a reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from guardrail_dro.serve.policy import GuardResult
from guardrail_dro.serve.rails.messages import INPUT_TURNS, content_text
from guardrail_dro.serve.rails.response_items import item_text
from guardrail_dro.serve.rails.streams import Events
from guardrail_dro.serve.rails.tool_args import arguments_text, attr_or_key, definition_texts

__all__ = ["ResponsesAdapter", "ResponsesEvents", "prompt_texts", "responses_input_texts"]


def responses_input_texts(input: Any, instructions: Any, tools: Any, turns: str) -> list[str]:
    """The texts the input rail scores for a Responses request, each alone, under
    ``turns`` (``Policy.input_turns``), as ``messages.input_texts`` reads a chat:
    ``last`` the last user message's text ("" without one), ``user`` every user
    message's, ``all`` ``instructions``, each of ``tools`` (an MCP server's description
    and a namespace's tools too) and every item's text (``item_text``: an assistant
    message, a function call's arguments, a tool's output... a caller who writes the
    request writes those too). Empty texts are left out; a list with none is ``[""]``.

    Raises:
        TypeError: ``input`` is neither a str nor a list of items, or under ``all`` an
            item's content is neither text nor parts, ``instructions`` is not text, or
            ``tools`` is not a list of objects.
        ValueError: ``turns`` is not one of ``INPUT_TURNS``.
    """
    if turns not in INPUT_TURNS:
        raise ValueError(f"input turns must be one of {list(INPUT_TURNS)}, not {turns!r}")
    items = [{"role": "user", "content": input}] if isinstance(input, str) else input or []
    if isinstance(items, bytes | bytearray | Mapping) or not isinstance(items, Iterable):
        raise TypeError(f"input must be a str or a list of items, not {type(input).__name__}")
    items = list(items)
    users = [
        content_text(attr_or_key(i, "content")) for i in items if attr_or_key(i, "role") == "user"
    ]
    if turns == "last":
        return [users[-1] if users else ""]
    texts = users
    if turns == "all":
        texts = [content_text(instructions), *(_tool_texts(tools) if tools else [])]
        texts += [item_text(i) for i in items]
    return [t for t in texts if t] or [""]


def _tool_texts(tools: Any) -> list[str]:
    """Each Responses tool definition's text: ``definition_texts`` (which raises on what
    is not a list of objects) misses an MCP tool's ``server_description`` and a
    namespace's tools, which ``item_text`` reads in a list of tools."""
    definition_texts(tools)
    return [item_text({"type": "additional_tools", "tools": [t]}) for t in tools]


def prompt_texts(prompt: Any) -> list[str]:
    """The text values of a ``prompt`` template's ``variables`` (a str, or an
    ``input_text``'s text), each alone: the caller's words, put into a template the
    guard cannot read, so the input rail scores them under every ``input_turns``.

    Raises:
        TypeError: ``variables`` is not a mapping.
    """
    variables = attr_or_key(prompt, "variables") if prompt is not None else None
    if variables is None:
        return []
    if not isinstance(variables, Mapping):
        raise TypeError(f"prompt variables must be a mapping, not {type(variables).__name__}")
    values = [v if isinstance(v, str) else attr_or_key(v, "text") for v in variables.values()]
    return [v for v in values if isinstance(v, str) and v]


def _reply_text(resp: Any) -> str:
    """A ``Response``'s output, every item's text (``item_text``): its messages'
    ``output_text`` and ``refusal`` parts, function calls' arguments (an agent runs
    them), reasoning summaries (shown to users, as chat's reasoning is read)."""
    return "\n".join(t for t in (item_text(i) for i in resp.output or []) if t)


def _message(text: str, item_id: str = "msg_guard_refusal") -> dict[str, Any]:
    parts = [{"type": "output_text", "text": text, "annotations": []}] if text else []
    return {"id": item_id, "type": "message", "role": "assistant", "status": "completed",
            "content": parts}  # fmt: skip


def _filtered(resp: Any, message: dict[str, Any], usage: Any = None) -> Any:
    """``resp`` refused: its output the one ``message``, ``status="incomplete"`` for
    ``content_filter``; ``usage`` as given when it is known."""
    from openai.types.responses import ResponseOutputMessage
    from openai.types.responses.response import IncompleteDetails

    update = {
        "output": [ResponseOutputMessage.model_validate(message)],
        "status": "incomplete",
        "incomplete_details": IncompleteDetails(reason="content_filter"),
    }
    return resp.model_copy(update={**update, **({"usage": usage} if usage else {})})


def _response(model: str, status: str) -> Any:
    """An empty ``Response`` of the guard's own (no request was made)."""
    from openai.types.responses import Response

    return Response.model_validate(
        {"id": "resp_guard_refusal", "object": "response", "created_at": time.time(),
         "model": model, "output": [], "status": status, "parallel_tool_calls": True,
         "tool_choice": "auto", "tools": []}
    )  # fmt: skip


#: Stream events whose ``delta`` is text shown to the caller: the reply, the model's
#: refusal, its reasoning (summaries, and the raw text some models send), the transcript
#: of its audio.
_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.audio.transcript.delta",
    }
)
#: The ``.done`` events that carry a text part's whole text, and its field. They repeat
#: the deltas (OpenAI sends both), but a compatible or hostile server need not, and SDK
#: users read them (and the end event's ``output``) rather than the deltas.
_DONE_TEXTS = {
    "response.output_text.done": "text",
    "response.refusal.done": "refusal",
    "response.reasoning_summary_text.done": "text",
    "response.reasoning_text.done": "text",
}
_PART_DONES = frozenset({"response.content_part.done", "response.reasoning_summary_part.done"})
#: Items whose text arrives in the deltas ``texts`` reads; every other item (a call, a
#: server tool's call and its results: MCP, code interpreter, searches...) carries its
#: text in its own events or only in its ``output_item.done``, so it is held from its
#: ``output_item.added`` and checked whole there (``item_text``, as ``_reply_text``).
_STREAMED = frozenset({"message", "reasoning"})
#: Items an agent runs, and the events their arguments arrive in.
_CALLS = frozenset({"function_call", "custom_tool_call"})
_CALL_DELTAS = frozenset(
    {"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"}
)
#: The events that end a response: they carry its usage (and its whole output).
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _bare(text: str) -> str:
    return "".join(text.split())


def _done_text(ev: Any) -> Any:
    """The text a ``.done`` event of a text part or a message / reasoning item carries
    whole (None for any other event)."""
    kind = ev.type
    if kind in _DONE_TEXTS:
        return getattr(ev, _DONE_TEXTS[kind], None)
    if kind in _PART_DONES:
        texts = [attr_or_key(ev.part, "text"), attr_or_key(ev.part, "refusal")]
        return "\n".join(t for t in texts if isinstance(t, str))
    return item_text(ev.item) if kind == "response.output_item.done" else None


class ResponsesEvents(Events):
    """A Responses stream's events: the text deltas on one channel (a line break where a
    new part begins, so two items' words stay apart), any other item (a function call,
    an MCP call and its output, code interpreter code...) held from its
    ``output_item.added`` and checked whole at its ``output_item.done``; once a call an
    agent runs began, everything is held until the response ends (as chat's calls wait
    for the stream's end: a harmless first call released whole, runnable, before a
    harmful second one refused the reply).

    The text a ``.done`` event or the response's end carries whole (a part's text, a
    message or reasoning item, the end's ``output``) is checked on a channel of its own
    only when the deltas did not already show it (its whitespace-free form is not in
    theirs, nor a held item's checked text): a stream whose done events repeat its
    deltas costs string comparisons, not model windows. Such a text is due at once, so
    its event waits for its check like a held item's."""

    accounted = True

    def __init__(self, model: str = "guard") -> None:
        self.model = model
        self.created: Any = None  # the response.created event's response
        self.seq = -1  # the last sequence_number the caller was given
        self.last_index = -1  # the highest output_index the caller was given
        self.part: list[Any] | None = None  # the open output_text part: id, index, content, text
        self.texting: tuple[Any, Any] | None = None  # the part whose text came last
        self.calls: dict[Any, list[str]] = {}  # argument fragments of the calls not done
        self.called = False  # a call began and the response has not ended
        self.shown = ""  # every text delta so far, whitespace removed
        self.checked: set[str] = set()  # held items' checked texts, whitespace removed
        self.repeats = 0  # the channels of the uncovered whole texts checked

    def texts(self, ev: Any) -> list[tuple[Any, str]]:
        if ev.type not in _TEXT_DELTAS:
            return []
        piece = ev.delta
        where = (getattr(ev, "item_id", None), getattr(ev, "content_index", None))
        self.shown += _bare(piece)
        if self.texting is not None and where != self.texting:
            piece = "\n" + piece
        self.texting = where
        return [(0, piece)]

    def tool_texts(self, ev: Any) -> list[tuple[Any, str]]:
        kind = ev.type
        if kind == "response.output_item.added" and ev.item.type not in _STREAMED:
            self.calls[ev.item.id] = []
            self.called |= ev.item.type in _CALLS
        elif kind in _CALL_DELTAS:
            self.calls.setdefault(ev.item_id, []).append(ev.delta)
            self.called = True
        elif kind.endswith(".delta") and getattr(ev, "item_id", None) in self.calls:
            self.calls[ev.item_id].append(ev.delta)  # MCP arguments, code: for ``rest``
        elif kind == "response.output_item.done" and ev.item.type not in _STREAMED:
            self.calls.pop(ev.item.id, None)
            text = item_text(ev.item)
            self.checked.add(_bare(text))
            return [(("tool", ev.item.id), text)]
        elif kind in _ENDS:
            self.called = False
            return self._unshown([item_text(i) for i in ev.response.output or []])
        else:
            return self._unshown([_done_text(ev)])
        return []

    def _unshown(self, texts: list[Any]) -> list[tuple[Any, str]]:
        """Of the whole texts an event carries, those the deltas did not show, as one
        piece on a new channel (none when all were shown)."""
        bare = [(t, _bare(t)) for t in texts if isinstance(t, str)]
        new = [t for t, b in bare if b not in self.shown and b not in self.checked]
        if not new:
            return []
        self.repeats += 1
        return [(("whole", self.repeats), "\n".join(new))]

    @property
    def holding(self) -> bool:
        return self.called or bool(self.calls)

    def rest(self) -> list[tuple[Any, str]]:
        """The held items the stream ended without finishing, checked on the deltas
        that arrived."""
        out = [(("tool", k), arguments_text("".join(v))) for k, v in self.calls.items()]
        self.calls.clear()
        return out

    def released(self, items: list[Any]) -> None:
        for ev in items:
            self.seq = max(self.seq, ev.sequence_number)
            kind = ev.type
            if kind == "response.created":
                self.created = ev.response
            elif kind == "response.output_item.added":
                self.last_index = max(self.last_index, ev.output_index)
            elif kind == "response.content_part.added" and ev.part.type == "output_text":
                self.part = [ev.item_id, ev.output_index, ev.content_index, ""]
            elif kind == "response.output_text.delta" and self.part is not None:
                self.part[3] += ev.delta
            elif kind == "response.content_part.done" and self.part is not None:
                self.part = None

    def accounting(self, ev: Any) -> bool | None:
        """The response's end is accounting (its usage is kept; its output is not:
        ``stop`` sends a response of its own); a ``.done`` event or ``in_progress``
        repeats what came before (skipped); anything else is output."""
        if ev.type in _ENDS:
            return True
        return False if ev.type.endswith(".done") or ev.type == "response.in_progress" else None

    def _events(self, *events: dict[str, Any]) -> Iterator[Any]:
        from openai.types import responses as types

        for ev in events:
            self.seq += 1
            cls = getattr(types, ev.pop("cls"))
            yield cls.model_validate({**ev, "sequence_number": self.seq})

    def stop(self, result: GuardResult, tail: Iterable[Any] = ()) -> list[Any]:
        """The refusal, in step with what the caller was given: into the output_text
        part it has open, else in a new message item; that item closed, then
        ``response.incomplete`` (``content_filter``), its output that message and its
        usage the upstream's when ``tail`` has the response's end."""
        text = result.replacement or ""
        out: list[dict[str, Any]] = []
        if self.part is None:
            self.part = ["msg_guard_refusal", self.last_index + 1, 0, ""]
            added = {**_message("", self.part[0]), "status": "in_progress"}
            part = {"type": "output_text", "text": "", "annotations": []}
            out += [
                {"cls": "ResponseOutputItemAddedEvent", "type": "response.output_item.added",
                 "output_index": self.part[1], "item": added},
                {"cls": "ResponseContentPartAddedEvent", "type": "response.content_part.added",
                 "item_id": self.part[0], "output_index": self.part[1], "content_index": 0,
                 "part": part},
            ]  # fmt: skip
        item_id, index, content_index, before = self.part
        at = {"item_id": item_id, "output_index": index, "content_index": content_index}
        if text:
            out.append({"cls": "ResponseTextDeltaEvent", "type": "response.output_text.delta",
                        **at, "delta": text, "logprobs": []})  # fmt: skip
        message = _message(before + text, item_id)
        out += [
            {"cls": "ResponseTextDoneEvent", "type": "response.output_text.done", **at,
             "text": before + text, "logprobs": []},
            {"cls": "ResponseContentPartDoneEvent", "type": "response.content_part.done", **at,
             "part": {"type": "output_text", "text": before + text, "annotations": []}},
            {"cls": "ResponseOutputItemDoneEvent", "type": "response.output_item.done",
             "output_index": index, "item": message},
        ]  # fmt: skip
        ends = [ev for ev in tail if getattr(ev, "type", None) in _ENDS]
        usage = ends[-1].response.usage if ends else None
        base = self.created if self.created is not None else _response(self.model, "in_progress")
        out.append({"cls": "ResponseIncompleteEvent", "type": "response.incomplete",
                    "response": _filtered(base, message, usage)})  # fmt: skip
        self.part = None
        return list(self._events(*out))


class ResponsesAdapter:
    """What the guarded ``responses.create`` needs to know of its replies and streams."""

    events = ResponsesEvents
    reply_text = staticmethod(_reply_text)

    @staticmethod
    def replaced(resp: Any, text: str) -> Any:
        return _filtered(resp, _message(text))

    @staticmethod
    def blocked(kwargs: dict, result: GuardResult) -> Any:
        base = _response(str(kwargs.get("model", "guard")), "incomplete")
        return _filtered(base, _message(result.replacement or ""))

    @staticmethod
    def blocked_stream(kwargs: dict, result: GuardResult) -> list[Any]:
        from openai.types.responses import ResponseCreatedEvent

        model = str(kwargs.get("model", "guard"))
        created = ResponseCreatedEvent(
            type="response.created", sequence_number=0, response=_response(model, "in_progress")
        )
        events = ResponsesEvents(model)
        events.released([created])
        return [created, *events.stop(result)]
