"""The text a model writes into tool calls, for the output rail: an agent runs what a
model puts in ``send_email(body=...)`` or ``post(text=...)``, so those arguments are
model output as much as the reply's text is.

What is read: OpenAI ``tool_calls[i].function.arguments`` (a JSON string), a custom
tool's ``custom.input`` (free text) and the deprecated ``function_call.arguments``;
Anthropic content blocks carrying an ``input`` (``tool_use``, ``server_tool_use``...);
a LangChain ``AIMessage``'s ``tool_calls[i]["args"]`` (already parsed).
The text checked is the strings found in the arguments, recursively, object keys
included; arguments that are not valid JSON are checked as the raw string. Keys are read
because the rail cannot tell a schema's names from the model's: a free-form object's keys
are model text (``{"how to hurt them": 1}`` passed unread until 2026-12-07). The
schema's keys (``query``, ``to``, ``body``) add a few plain words to what is scored,
and the text read is never longer than the JSON it came from, so ``Policy.max_chars`` /
``max_windows`` bound a call's cost as they bound any text's. Anthropic thinking blocks
are not read: they are not shown to users, and an agent runs none of them.

Streamed, the arguments arrive in fragments (OpenAI ``delta.tool_calls[i]``, Anthropic
``input_json_delta``); ``OpenAIToolStream`` / ``AnthropicToolStream`` collect them and
give a call's text once it is complete (its choice finished, its block stopped, or the
stream ended): only then is it runnable, and only then can it be parsed. Like the rest
of the rails, this reads by attribute or key and imports neither SDK.

``definition_texts`` reads the other side, for the input rail under
``Policy.input_turns="all"``: the tool definitions a request sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AnthropicToolStream",
    "OpenAIToolStream",
    "arguments_text",
    "attr_or_key",
    "definition_texts",
    "string_values",
    "tool_text",
]


def attr_or_key(obj: Any, key: str) -> Any:
    """``obj[key]`` of a mapping, else ``obj.key`` (None when absent): the rails read SDK
    objects and plain dicts alike, without importing an SDK."""
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def string_values(value: Any) -> list[str]:
    """The strings in ``value``, depth first: dict keys (each before its value) and
    values, list items, and the fields of a pydantic model (an SDK's typed tool input).

    Walked with a stack, not recursion: a model's arguments may nest deeper than
    Python's recursion limit (``[[[...]]]``, 600 levels), which was a RecursionError out
    of the rail instead of a decision. A container met twice is read once (a cycle in a
    caller's dict would otherwise never end); ``seen`` keeps each one alive, so that the
    id of a model's dump, freed, is never taken for the next one's."""
    out: list[str] = []
    seen: dict[int, Any] = {}
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        dump = getattr(item, "model_dump", None)
        if callable(dump) and not isinstance(item, type):
            item = dump()
        if isinstance(item, Mapping):
            children = [x for pair in item.items() for x in pair]  # a non-str key: skipped
        elif isinstance(item, Sequence) and not isinstance(item, bytes | bytearray):
            children = list(item)
        else:
            continue
        if id(item) not in seen:
            seen[id(item)] = item
            stack.extend(reversed(children))
    return out


def arguments_text(arguments: Any) -> str:
    """The text checked for a tool call's arguments: the strings of the JSON, keys and
    values (or of a dict already parsed), one per line; the raw string when it is not valid JSON
    (a model that writes broken JSON still wrote those words), or nests deeper than
    ``json`` parses (a RecursionError, not a ValueError)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            return arguments
    return "\n".join(s for s in string_values(arguments) if s)


def definition_texts(tools: Any) -> list[str]:
    """The text of each tool definition a request sends, which the model reads as
    instructions (a caller's "Before answering, explain how to ..." in a description):
    its name, description and the strings of its schema (``string_values``: a property's
    name, description and enum values). OpenAI ``{"type": "function", "function": ...}``,
    ``{"type": "custom", "custom": ...}`` (its ``format``) and ``functions`` items;
    Anthropic ``{"name", "description", "input_schema"}`` and the ``input_examples`` the
    model reads beside the schema (a server tool: its name, and its examples).

    Raises:
        TypeError: ``tools`` is not a list (or tuple) of objects: read as none, a
            definition would reach the model unchecked.
    """
    if not isinstance(tools, list | tuple):
        raise TypeError(f"tools must be a list of tool definitions, not {type(tools).__name__}")
    texts = []
    for tool in tools:
        if not isinstance(tool, Mapping) and not hasattr(tool, "model_dump"):
            raise TypeError(f"a tool definition must be an object, not {type(tool).__name__}")
        spec = attr_or_key(tool, "function") or attr_or_key(tool, "custom") or tool
        found = [attr_or_key(spec, "name"), attr_or_key(spec, "description")]
        for key in ("parameters", "input_schema", "format", "input_examples"):
            found += string_values(attr_or_key(spec, key))
        texts.append("\n".join(t for t in found if isinstance(t, str) and t))
    return texts


def _call_texts(message: Any) -> list[str]:
    texts = []
    calls = attr_or_key(message, "tool_calls") or []
    for call in calls:
        custom, function = attr_or_key(call, "custom"), attr_or_key(call, "function")
        if custom is not None:  # a custom tool's input is free text, not JSON
            texts.append(attr_or_key(custom, "input") or "")
        elif function is None and attr_or_key(call, "args") is not None:
            texts.append(arguments_text(attr_or_key(call, "args")))  # LangChain's ToolCall, parsed
        else:
            texts.append(arguments_text(attr_or_key(function, "arguments") or ""))
    legacy = attr_or_key(message, "function_call")
    if legacy is not None:
        texts.append(arguments_text(attr_or_key(legacy, "arguments") or ""))
    content = message if isinstance(message, list | tuple) else attr_or_key(message, "content")
    if isinstance(content, Sequence) and not isinstance(content, str | bytes | bytearray):
        # Anthropic tool-use blocks; thinking blocks are not read. A LangChain message of
        # ChatAnthropic carries each call twice, as a block and in ``tool_calls``: read once.
        read = {attr_or_key(call, "id") for call in calls} - {None}
        for block in content:
            tool_input = None if isinstance(block, str) else attr_or_key(block, "input")
            if tool_input is not None and attr_or_key(block, "id") not in read:
                texts.append(arguments_text(tool_input))
    return texts


def tool_text(message: Any) -> str:
    """The text of the tool calls in a reply message (an OpenAI message, an Anthropic
    ``Message`` or either as a dict, or a list of content blocks), one call per line;
    "" when it has none."""
    return "\n".join(t for t in _call_texts(message) if t)


class _Fragments:
    """Argument fragments by call, until each call is complete."""

    def __init__(self) -> None:
        self.parts: dict[Any, list[str]] = {}
        self.seeds: dict[Any, Any] = {}

    def open(self, key: Any, seed: Any = None) -> None:
        self.parts.setdefault(key, [])
        if seed:
            self.seeds[key] = seed

    def add(self, key: Any, fragment: str | None) -> None:
        self.parts.setdefault(key, []).append(fragment or "")

    def complete(self, keys: list[Any]) -> list[tuple[Any, str]]:
        out = []
        for key in keys:
            joined = "".join(self.parts.pop(key, []))
            seed = self.seeds.pop(key, None)
            text = arguments_text(joined) if joined else arguments_text(seed or "")
            out.append((("tool", key), text))
        return out

    def rest(self) -> list[tuple[Any, str]]:
        """Every call still open: the stream ended before it completed."""
        return self.complete(list(self.parts))


class OpenAIToolStream:
    """Tool-call fragments of an OpenAI chat stream, by (choice, call index); a choice's
    calls complete, and are checked, when it finishes (``finish_reason``): nothing in
    the protocol says a call is done when the next one starts.

    Once a call has begun, what follows is held until the stream ends, every choice's
    calls with it. Unstreamed, a reply with ``n > 1`` is decided whole: one harmful
    choice refuses every choice and drops every tool call. Streamed, a choice's calls
    released at its finish reached the caller whole, runnable, before another choice
    refused the stream; held to the end, no call of a refused stream reaches it (text
    already released stays released, as in a one-choice stream). After the last finish
    only the usage chunk remains, so a one-choice stream waits no longer than before."""

    def __init__(self) -> None:
        self._fragments = _Fragments()
        self._called = False  # a call began: held until the stream ends

    @property
    def holding(self) -> bool:
        """True from a call's first fragment until the stream ends."""
        return self._called or bool(self._fragments.parts)

    def feed(self, choice: Any) -> list[tuple[Any, str]]:
        """Read one chunk's choice; the (channel, text) of the calls it completes."""
        delta = choice.delta
        if delta is not None:
            for call in attr_or_key(delta, "tool_calls") or []:
                function, custom = attr_or_key(call, "function"), attr_or_key(call, "custom")
                fragment = attr_or_key(custom, "input") if custom is not None else None
                if function is not None:
                    fragment = attr_or_key(function, "arguments")
                self._fragments.add((choice.index, attr_or_key(call, "index")), fragment)
                self._called = True
            legacy = attr_or_key(delta, "function_call")
            if legacy is not None:
                self._fragments.add(
                    (choice.index, "function_call"), attr_or_key(legacy, "arguments")
                )
                self._called = True
        if choice.finish_reason is None:
            return []
        return self._fragments.complete([k for k in self._fragments.parts if k[0] == choice.index])

    def rest(self) -> list[tuple[Any, str]]:
        """The calls the stream left incomplete, checked on what arrived."""
        return self._fragments.rest()


class AnthropicToolStream:
    """``input_json_delta`` fragments of an Anthropic stream, by content block; a block
    completes, and is checked, at its ``content_block_stop``. Thinking deltas are not
    read (see the module docstring).

    Once a message has a tool-use block, what follows is held until the message ends
    (``message_delta``), as OpenAI's parallel calls wait for their choice to finish: a
    harmless first call released at its stop reached the caller whole, runnable, before
    a harmful second one refused the reply."""

    def __init__(self) -> None:
        self._fragments = _Fragments()
        self._calls = False  # a tool-use block began and the message has not ended

    @property
    def holding(self) -> bool:
        """True from a tool-use block's start until the message ends."""
        return self._calls or bool(self._fragments.parts)

    def feed(self, event: Any) -> list[tuple[Any, str]]:
        """Read one event; the (channel, text) of the block it completes, if any."""
        kind = getattr(event, "type", None)
        if kind == "content_block_start":
            tool_input = getattr(event.content_block, "input", None)
            if tool_input is not None:  # held from its start: a tool call is one unit
                self._fragments.open(event.index, tool_input)
                self._calls = True
        elif kind in ("message_delta", "message_stop"):
            self._calls = False
        elif kind == "content_block_delta":
            if getattr(event.delta, "type", None) == "input_json_delta":
                self._fragments.add(event.index, event.delta.partial_json)
        elif kind == "content_block_stop" and event.index in self._fragments.parts:
            return self._fragments.complete([event.index])
        return []

    def rest(self) -> list[tuple[Any, str]]:
        """The blocks the stream left open, checked on what arrived."""
        return self._fragments.rest()
