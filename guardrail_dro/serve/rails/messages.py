"""Reading chat messages: the text of a message content, of the turns the input rail
checks (the last user turn by default), of a reply. OpenAI and Anthropic shapes, as
dicts or as the SDKs' pydantic objects, read by attribute or key, so this module
imports neither SDK.

It sits below both ``Guard`` (``check_input`` / ``check_output``) and the rails, so
neither has to import the other to read a message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from guardrail_dro.serve.policy import InputTurns
from guardrail_dro.serve.rails.tool_args import attr_or_key, definition_texts, tool_text

__all__ = [
    "INPUT_TURNS",
    "REASONING_FIELDS",
    "content_text",
    "input_texts",
    "last_user_text",
    "listed",
    "reasoning_text",
    "reply_text",
    "spoken_text",
]


def listed(messages: Any) -> Any:
    """``messages`` as a list when they are an iterator (the SDKs accept any iterable):
    read once by an input rail, an iterator would reach the model empty."""
    return list(messages) if isinstance(messages, Iterator) else messages


def _has(obj: Any, key: str) -> bool:
    return key in obj if isinstance(obj, Mapping) else hasattr(obj, key)


def content_text(content: Any) -> str:
    """The text of a message content: a string, or a list of content blocks (``text``
    blocks, the nested content of Anthropic ``tool_result`` blocks, the text of
    ``document`` and ``search_result`` blocks: ``_document_text``); images skipped.

    Raises:
        TypeError: ``content`` is neither a str, a list of blocks nor a message.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
                continue
            text = attr_or_key(block, "text")
            if isinstance(text, str):
                parts.append(text)
            elif attr_or_key(block, "type") == "tool_result":
                parts.append(content_text(attr_or_key(block, "content")))
            elif attr_or_key(block, "type") in ("document", "search_result"):
                parts.append(_document_text(block))
        return "\n".join(p for p in parts if p)
    if _has(content, "content"):  # a whole message, its content None when it holds tool
        # calls or speech only (read as the rails read a reply; it was a TypeError)
        text, spoken = content_text(attr_or_key(content, "content")), spoken_text(content)
        return "\n".join(p for p in (text, spoken) if p)
    raise TypeError(f"message content must be a str or a list of blocks, not {type(content)}")


def _document_text(block: Any) -> str:
    """The text the model reads in an Anthropic ``document`` block (its ``title``,
    ``context`` and a plain-text source's ``data`` or a ``content`` source's blocks) or
    ``search_result`` block (its ``source``, ``title`` and ``content``): a user turn
    holding its request there went past the input rail, which read ``text`` blocks only.
    A search result's ``source`` is a str the model reads with it, a URL or any
    identifier the caller writes (a request written there passed); a document's PDF or
    URL source is no text this can read."""
    source = attr_or_key(block, "source")
    search = attr_or_key(block, "type") == "search_result"
    kind = None if search else attr_or_key(source, "type")
    texts = [source if search else None, attr_or_key(block, "title"), attr_or_key(block, "context")]
    if kind == "text":
        texts.append(attr_or_key(source, "data"))
    nested = attr_or_key(source, "content") if kind == "content" else attr_or_key(block, "content")
    if search or kind == "content":
        texts.append(content_text(nested))
    return "\n".join(t for t in texts if isinstance(t, str) and t)


#: Roles of a user turn: OpenAI / Anthropic ``user``, LangChain's ``human``.
_USER_ROLES = frozenset({"user", "human"})


def _role_and_content(i: int, m: Any) -> tuple[str, Any]:
    """A message's role (lower case) and content, in the shapes chat code passes:
    OpenAI / Anthropic dicts or SDK objects, LangChain messages (``type``) and
    ``(role, content)`` tuples, Gemini-style ``parts``, Cohere-style ``message``.

    Raises:
        TypeError: no role can be read, or a user turn has no content to read: the input
            rail would otherwise score "" and let the turn through unchecked.
    """
    if isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str):
        return m[0].lower(), m[1]
    role = attr_or_key(m, "role")
    if not isinstance(role, str):
        role = attr_or_key(m, "type")  # LangChain's HumanMessage / AIMessage
    if not isinstance(role, str):
        raise TypeError(
            f"cannot read chat message {i}: {type(m).__name__} with no role; give dicts "
            "with 'role' and 'content' (or LangChain messages, or (role, text) tuples)"
        )
    # Gemini's {"parts": [{"text": ...}]}, Cohere v1's {"role": "USER", "message": ...};
    # a "content" given as None is an empty turn, a turn with none of them unreadable
    key = next((k for k in ("content", "parts", "message") if _has(m, k)), None)
    content = None if key is None else attr_or_key(m, key)
    if key is None and role.lower() in _USER_ROLES:
        raise TypeError(
            f"cannot read chat message {i}: a {role!r} turn with no 'content' (nor "
            "'parts' or 'message'); the input rail will not check it as empty"
        )
    return role.lower(), content


def _turns(messages: Iterable[Any]) -> Iterator[tuple[Any, str, Any]]:
    """Each message with its role and content (``_role_and_content``).

    Raises:
        TypeError: ``messages`` is a str, bytes or not iterable, or a message has no
            role this can read (fail closed rather than check "").
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Iterable):
        raise TypeError(f"messages must be a list of chat messages, not {type(messages).__name__}")
    for i, m in enumerate(messages):
        yield (m, *_role_and_content(i, m))


def last_user_text(messages: Iterable[Any]) -> str:
    """The text of the last user turn ("" when there is none); roles in any case.

    Raises:
        TypeError: ``messages`` is a str, bytes or not iterable, or a message has no
            role this can read (fail closed rather than check "").
    """
    last = None
    for _, role, content in _turns(messages):
        if role in _USER_ROLES:
            last = content
    return "" if last is None else content_text(last)


#: ``Policy.input_turns``' values, which ``input_texts`` reads.
INPUT_TURNS = tuple(t.value for t in InputTurns)


def _turn_text(m: Any, content: Any) -> str:
    """A turn's text for ``input_texts(..., "all")``: its content (an OpenAI tool
    result's, an Anthropic ``tool_result`` block's included) and, as the output rail
    reads a reply, an assistant turn's ``refusal``, audio transcript and tool-call
    arguments (OpenAI ``tool_calls``, Anthropic ``tool_use`` blocks, LangChain's
    ``tool_calls``; Anthropic ``server_tool_use`` / ``mcp_tool_use`` inputs with them),
    its server-tool results and citations (``_server_block_text``): a caller who writes
    the history writes those too."""
    if isinstance(m, tuple):  # a (role, text) tuple: its text is all there is
        return content_text(content)
    # an assistant turn's refusal parts ({"type": "refusal", "refusal": ...}) the model
    # reads as its own words, as the Agents SDK integration reads them
    blocks = content if isinstance(content, list) else []
    refusals = [r for r in (attr_or_key(b, "refusal") for b in blocks) if isinstance(r, str)]
    served = [_server_block_text(b) for b in blocks if not isinstance(b, str)]
    parts = (content_text(content), *refusals, *served, _refusal_text(m), spoken_text(m))
    return "\n".join(p for p in (*parts, tool_text(m)) if p)


#: Anthropic server-tool results (``web_search`` / ``web_fetch`` / code execution / MCP)
#: an assistant turn holds: the model reads their output as fact, and a caller who
#: writes the history writes them (a request written there went past ``all``).
_SERVER_RESULTS = frozenset(
    {
        "web_search_tool_result",
        "web_fetch_tool_result",
        "mcp_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
    }
)

#: The text fields of a server-tool result's content, by the content's ``type``; an
#: error object's code, a result's ``encrypted_content`` / ``encrypted_stdout`` (the
#: API decrypts those, no text this can read) and file ids are not text.
_RESULT_FIELDS = {
    "web_search_result": ("title", "url", "page_age"),
    "web_fetch_result": ("url",),
    "code_execution_result": ("stdout", "stderr"),
    "bash_code_execution_result": ("stdout", "stderr"),
    "encrypted_code_execution_result": ("stderr",),
    "text_editor_code_execution_view_result": ("content",),
    "text_editor_code_execution_str_replace_result": ("lines",),
}


def _server_block_text(block: Any) -> str:
    """What an assistant turn's block holds beyond ``content_text``'s reading: the
    ``cited_text`` of a text block's ``citations`` (quoted to the model as its source)
    and a server-tool result's text (``_SERVER_RESULTS``: an MCP result's content, a
    fetched page's document, search results' titles and URLs, code output, a viewed
    file). Items of an unknown type or shape are skipped; linear in the block's size.

    Raises:
        TypeError: an MCP result's or a fetched document's content is not text or
            blocks (as ``content_text``).
    """
    kind = attr_or_key(block, "type")
    if kind not in _SERVER_RESULTS:
        cites = attr_or_key(block, "citations")
        cites = cites if isinstance(cites, list | tuple) else []
        return "\n".join(
            t for c in cites if isinstance(t := attr_or_key(c, "cited_text"), str) and t
        )
    content = attr_or_key(block, "content")
    if kind == "mcp_tool_result":
        return content_text(content)
    texts: list[Any] = []
    for item in content if isinstance(content, list | tuple) else [content]:
        item_kind = attr_or_key(item, "type")
        for key in _RESULT_FIELDS.get(item_kind, ()) if isinstance(item_kind, str) else ():
            value = attr_or_key(item, key)
            texts += value if isinstance(value, list | tuple) else [value]
        if item_kind == "web_fetch_result":  # its content is a document block
            texts.append(content_text([attr_or_key(item, "content")]))
    return "\n".join(t for t in texts if isinstance(t, str) and t)


def input_texts(
    messages: Iterable[Any], turns: str = "last", system: Any = None, tools: Any = None
) -> list[str]:
    """The texts the input rail scores, each alone (the guard was trained on single
    texts), in order: ``turns`` is ``Policy.input_turns``.

    ``last``: ``[last_user_text(messages)]``, "" included when there is no user turn
    (the rail's behaviour before the other scopes). ``user``: every user turn's text.
    ``all``: every turn's text (``_turn_text``), after ``system`` (Anthropic's
    ``system`` parameter: a str or a list of text blocks) and then each of ``tools``
    (the request's tool definitions: ``definition_texts``) when given: a caller who
    writes the request writes those too. Empty texts are left out; a list with none is
    ``[""]``, scored as ``last`` scores a list without a user turn.

    Raises:
        TypeError: as ``last_user_text`` (no role, a user turn with no content), and
            under ``all`` a turn whose content is neither text nor blocks, or ``tools``
            not a list of objects.
        ValueError: ``turns`` is not one of ``INPUT_TURNS``.
    """
    if turns == "last":
        return [last_user_text(messages)]
    if turns not in INPUT_TURNS:
        raise ValueError(f"input turns must be one of {list(INPUT_TURNS)}, not {turns!r}")
    texts = [content_text(system)] if turns == "all" and system is not None else []
    if turns == "all" and tools is not None:
        texts += definition_texts(tools)
    for m, role, content in _turns(messages):
        if role in _USER_ROLES:
            texts.append(content_text(content))
        elif turns == "all":
            texts.append(_turn_text(m, content))
    return [t for t in texts if t] or [""]


def spoken_text(message: Any) -> str:
    """The transcript of an OpenAI message's (or stream delta's) ``audio``, "" without
    one: with ``modalities=["audio"]`` the reply is speech, its ``content`` None, and the
    transcript is the only text of what the model said (it went unchecked before)."""
    transcript = attr_or_key(attr_or_key(message, "audio") or {}, "transcript")
    return transcript if isinstance(transcript, str) else ""


def _refusal_text(message: Any) -> str:
    """An OpenAI message's own ``refusal`` (the model declining, in its own words)."""
    text = attr_or_key(message, "refusal")
    return text if isinstance(text, str) else ""


#: The reasoning fields of OpenAI-compatible servers: vLLM's and DeepSeek's
#: ``reasoning_content``, OpenRouter's (and others') ``reasoning``, and OpenRouter's
#: structured ``reasoning_details`` beside it. Extra fields on the openai SDK's objects
#: (``model_extra``), read by attribute or key; a refused reply loses all of them.
REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_details")


def _details_texts(details: Any) -> list[str]:
    """The text parts of OpenRouter's ``reasoning_details``: the ``text`` of a
    ``reasoning.text`` entry, the ``summary`` of a ``reasoning.summary`` one, read
    whatever an entry's ``type`` (a type added later, with text, is still read). The
    ``data`` of ``reasoning.encrypted`` is not text anyone is shown, so not read."""
    if isinstance(details, str):  # not the documented shape, but text all the same
        return [details]
    if isinstance(details, Mapping):  # one entry where a list was expected
        details = [details]
    if not isinstance(details, list | tuple):
        return []
    texts = [attr_or_key(d, key) for d in details for key in ("text", "summary")]
    return [t for t in texts if isinstance(t, str)]


def reasoning_text(message: Any) -> str:
    """The reasoning an OpenAI-compatible server sent with a message (or stream delta),
    "" without any. Read as output because chat UIs show it to users, so harmful text
    there reached them past the rail; only a str is model text (a non-str ``reasoning``
    is some server's settings object, not something shown; of OpenRouter's
    ``reasoning_details``, its entries' ``text`` and ``summary``). LangChain keeps it in
    ``additional_kwargs``. Anthropic thinking blocks are not shown, so not read."""
    extra = attr_or_key(message, "additional_kwargs")
    sources = (message, extra) if isinstance(extra, Mapping) else (message,)
    parts: list[Any] = []
    for src in sources:
        for key in REASONING_FIELDS:
            value = attr_or_key(src, key)
            parts += _details_texts(value) if key == "reasoning_details" else [value]
    # vLLM sends the same text under both names while it renames the field, OpenRouter
    # in ``reasoning`` and again in ``reasoning_details``: read once
    return "\n".join(dict.fromkeys(p for p in parts if isinstance(p, str) and p))


def reply_text(reply: Any) -> str:
    """The text of a model's reply: every choice of an OpenAI ``ChatCompletion`` (one
    per line, with its audio transcript and its ``refusal``: model text shown to users,
    unread until 2026-12-07), else what ``content_text`` reads (a str, a message,
    content blocks); each with the strings of its tool calls' arguments (``tool_args``:
    an agent runs them, so they are output too; they went unchecked before) and its
    reasoning (``reasoning_text``: shown by chat UIs, unread before). Anthropic
    thinking blocks are not read: they are not shown to users."""
    choices = getattr(reply, "choices", None)
    if choices is not None:  # an OpenAI ChatCompletion
        parts = [
            t
            for c in choices
            for m in (c.message,)
            for t in (reasoning_text(m), m.content, _refusal_text(m), spoken_text(m), tool_text(m))
            if t
        ]
        return "\n".join(parts)
    if isinstance(reply, str):
        return reply
    texts = (reasoning_text(reply), content_text(reply), _refusal_text(reply), tool_text(reply))
    return "\n".join(p for p in texts if p)
