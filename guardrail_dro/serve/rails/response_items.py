"""The text of an OpenAI Responses API item (the Agents SDK's items are the same), for
the input rail under ``Policy.input_turns="all"`` (a guarded ``responses.create``, the
Agents integration's input guardrail): a caller whose client writes the items can forge
any of them (a fabricated assistant turn, a tool's output, a tool search's results), so
``all`` reads the text the model reads in each. The output rail reads a ``Response``'s
output items with it too (``rails.responses``).

Among the rails, not the integrations, so that both read items by one function (it was
``integrations.agents_items``); it imports neither SDK (items are read by key or
attribute), so it is importable without the ``agents`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guardrail_dro.serve.rails.messages import content_text
from guardrail_dro.serve.rails.tool_args import arguments_text, attr_or_key, string_values

__all__ = ["SCHEMAS_AT", "TEXT_AT", "item_text", "strings_at"]


#: The text of a list of tool definitions the model reads: names, descriptions, an MCP
#: server's description, and a namespace's tools' names and descriptions; their
#: parameter schemas are in ``SCHEMAS_AT``.
_TOOLS = (
    "tools.name",
    "tools.description",
    "tools.server_description",
    "tools.tools.name",
    "tools.tools.description",
)

#: Where the other input item types (the openai SDK's ``ResponseInputItemParam``) keep
#: text the model reads: dotted keys, a list on the way read item by item; read for an
#: item with a role too (``additional_tools`` is a developer item with tools, no
#: content). Not read: screenshots (computer_call_output), images, item references,
#: compaction (opaque), URLs.
TEXT_AT: dict[str, tuple[str, ...]] = {
    "mcp_call": ("output", "error.message", "error.content", "error.content.text"),
    "mcp_list_tools": ("tools.name", "tools.description", "error"),
    "mcp_approval_response": ("reason",),
    "tool_search_output": _TOOLS,
    "additional_tools": _TOOLS,
    "code_interpreter_call": ("code", "outputs.logs"),
    "file_search_call": ("queries", "results.text"),
    "web_search_call": ("action.query", "action.queries", "action.pattern"),
    "local_shell_call": ("action.command",),
    "local_shell_call_output": ("output",),
    "shell_call": ("action.commands",),
    "shell_call_output": ("output.stdout", "output.stderr"),
    "apply_patch_call": ("operation.diff",),
    "apply_patch_call_output": ("output",),
    "computer_call": ("action.text", "actions.text"),  # one action, or a list of them
    "image_generation_call": ("revised_prompt",),
    "program": ("code",),
    "program_output": ("result",),
}
#: Where tool definitions keep their parameter schemas (a custom tool: its ``format``, a
#: grammar's definition), whose strings (property names, descriptions, enum values:
#: ``string_values``) the model reads as it reads a description, so a caller can hide a
#: request there as well; the chat rails read a request's ``tools`` so
#: (``tool_args.definition_texts``).
_SCHEMAS = ("tools.parameters", "tools.format", "tools.tools.parameters", "tools.tools.format")
SCHEMAS_AT: dict[str, tuple[str, ...]] = {
    "mcp_list_tools": ("tools.input_schema",),
    "tool_search_output": _SCHEMAS,
    "additional_tools": _SCHEMAS,
}
# Arguments (JSON, or a parsed object), read as a function call's
_ARGUMENTS = (
    "function_call",
    "custom_tool_call",
    "mcp_call",
    "mcp_approval_request",
    "tool_search_call",
)
#: The item types read above, and those with no text the model reads (an item
#: reference, compaction's opaque content, a screenshot); an item of any other type (a
#: newer API's, a compatible server's own: the openai SDK parses it loosely) has every
#: string of it read (``_unknown_strings``), so that text in it is not passed unread.
_KNOWN = frozenset(
    {*TEXT_AT, *SCHEMAS_AT, *_ARGUMENTS, "message", "reasoning", "function_call_output",
     "custom_tool_call_output", "item_reference", "compaction", "computer_call_output"}
)  # fmt: skip
#: An unknown item's fields that are no text a model wrote.
_LABELS = frozenset({"id", "type", "status"})


def _spread(values: list[Any]) -> list[Any]:
    return [
        x
        for v in values
        for x in (v if isinstance(v, Sequence) and not isinstance(v, str | bytes) else [v])
    ]


def _values_at(item: Any, path: str) -> list[Any]:
    values = [item]
    for key in path.split("."):
        values = [attr_or_key(v, key) for v in _spread(values) if not isinstance(v, str)]
    return _spread(values)


def strings_at(item: Any, paths: Sequence[str]) -> list[str]:
    """The strings at each dotted path in ``item`` (a mapping or an SDK model)."""
    return [v for path in paths for v in _values_at(item, path) if isinstance(v, str)]


def _schema_strings(item: Any, kind: Any) -> list[str]:
    paths = SCHEMAS_AT.get(kind, ()) if isinstance(kind, str) else ()
    return [s for path in paths for v in _values_at(item, path) for s in string_values(v)]


def _unknown_strings(item: Any) -> list[str]:
    """An unknown item's strings; none for an item that is no object (the proxy refuses
    a reply holding one as the upstream's fault, ``responses_proxy._check_reply``)."""
    dump = item.model_dump() if callable(getattr(item, "model_dump", None)) else item
    if not isinstance(dump, Mapping):
        return []
    return string_values({k: v for k, v in dump.items() if k not in _LABELS})


def item_text(item: Any) -> str:
    """An input item's text for ``input_texts(..., "all")``: a message's content (its
    ``output_text`` and ``refusal`` parts too), a call's arguments (their strings, as the
    tool guardrails read them), a tool's output, a reasoning summary and text, and the
    text fields of MCP, shell, code interpreter, file / web search, tool search, patch
    and computer items (``TEXT_AT``), and tool definitions' schemas (``SCHEMAS_AT``);
    an item of a type not known here, every string of it but its id, type and status.

    Raises:
        TypeError: a message's or tool output's content is neither text nor parts.
    """
    kind, content = attr_or_key(item, "type"), attr_or_key(item, "content")
    if attr_or_key(item, "role") is not None or kind == "message":
        refusals = [attr_or_key(p, "refusal") for p in content] if isinstance(content, list) else []
        texts = [content_text(content), *(r for r in refusals if isinstance(r, str))]
    elif kind in ("function_call_output", "custom_tool_call_output"):
        texts = [content_text(attr_or_key(item, "output"))]
    elif kind == "reasoning":
        texts = [content_text(attr_or_key(item, "summary") or []), content_text(content or [])]
    elif not (isinstance(kind, str) and kind in _KNOWN):
        texts = _unknown_strings(item)
    else:
        args = (
            attr_or_key(item, "arguments") or attr_or_key(item, "input")
            if kind in _ARGUMENTS
            else None
        )
        texts = [arguments_text(args or "")]
    texts += strings_at(item, TEXT_AT.get(kind, ()) if isinstance(kind, str) else ())
    texts += _schema_strings(item, kind)
    return "\n".join(t for t in texts if t)
