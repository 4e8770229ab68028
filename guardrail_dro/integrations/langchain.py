"""LangChain: guard the input and / or the output of any Runnable (a chain, a chat model).

Two shapes, both real ``langchain_core`` Runnables (``invoke``, ``ainvoke``, ``batch``,
``stream``, ``|``)::

    from guardrail_dro.integrations.langchain import guarded, input_rail, output_rail

    chain = guarded(prompt | llm | StrOutputParser(), guard)   # input and output rails
    chain = prompt | llm | output_rail(guard)                  # a step in a pipe
    chain = input_rail(guard) | prompt | llm                   # a step in a pipe

What a disallowed result does follows the guard's ``Policy``:

- ``action="replace"`` (the default): the content is replaced by ``Policy.refusal``. On
  the output rail the reply becomes the refusal, in the reply's own type (a ``str``
  stays a ``str``, a message becomes an ``AIMessage`` without tool calls). On the input
  rail ``guarded`` skips the wrapped chain and answers the refusal, shaped as the
  chain's ``OutputType`` (``str`` or ``AIMessage``; ``refusal_as`` overrides).
- ``action="block"`` or ``raise_on_violation=True``: ``GuardViolation`` (carrying the
  ``GuardResult`` and naming the rail) is raised; nothing downstream runs.
- ``action="flag"``: the content passes; ``on_check(rail, result)`` sees the result.

``input_rail`` as a pipe step passes its input on unchanged; it cannot skip the steps
after it, so a disallowed input raises ``GuardViolation`` under every action but
``flag``: use ``guarded`` to answer with the refusal instead.

Which text is checked: a ``str``; a message (its text content; on the output rail with
the string values of its tool calls' ``args``); a list of messages or a
``PromptValue`` (input: the last human turn; output: the last message); a ``dict`` of
prompt variables (input: every ``str`` value and the last human turn of every message
list, e.g. a ``MessagesPlaceholder``'s history, each scored alone as the guard was
trained on single texts, the worst deciding). Under the guard's
``Policy(input_turns="user")`` the input rail reads every human turn of a message list
instead, under ``"all"`` every turn with text (``rails.messages.input_texts``), for
chains whose history a client writes. On the input rail a message list may also
hold LangChain's ``(role, text)`` tuples or role dicts. Anything else is a ``TypeError``
that says to pass ``text_of=`` (a function from the value to the text).

``stream`` / ``astream`` of ``guarded`` and ``output_rail`` yield the checked output once,
after the check: an output rail needs the whole reply, so no unchecked chunk leaks to
what they yield. Callbacks and ``astream_events`` are the wrapped chain's own: they see
the model's raw tokens and reply, before any rail, and no event carries the refusal.
``ainvoke`` scores off the event loop (``Guard.adecide``) and awaits the wrapped chain's
own ``ainvoke``.

LlamaIndex: not included. ``llama-index-core`` (0.14.25) declares 29 direct requirements
(SQLAlchemy, NLTK, aiohttp, tiktoken, networkx, pillow...) for what would be an optional
extra around a wrapper of the same few lines; ``guard.protect`` already guards a LlamaIndex
``chat`` / ``achat`` callable, and ``guarded`` guards one wrapped as a Runnable.

Needs the ``langchain`` extra (``pip install 'guardrail-dro[langchain]'``): ``import
guardrail_dro`` never imports LangChain; importing this module does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from guardrail_dro.errors import require
from guardrail_dro.serve.policy import GuardResult, GuardViolation
from guardrail_dro.serve.rails.decide import (
    OnCheck,
    RailGuard,
    adecide_all,
    decide_all,
    rail_guard,
)
from guardrail_dro.serve.rails.messages import content_text, input_texts, reply_text

require("langchain_core", "langchain")

from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.prompt_values import PromptValue  # noqa: E402
from langchain_core.runnables import Runnable, RunnableConfig  # noqa: E402

__all__ = ["GuardRail", "GuardedRunnable", "guarded", "input_rail", "output_rail"]

Rail = Literal["input", "output"]
TextOf = Callable[[Any], "str | Sequence[str]"]
RefusalAs = Literal["auto", "str", "message"]


def _message_text(m: BaseMessage, rail: Rail = "input") -> str:
    """A message's text content; on the output rail with its tool calls' arguments too
    (``AIMessage.tool_calls[i]["args"]``: an agent runs them; they went unchecked)."""
    return reply_text(m) if rail == "output" else content_text(m.content)


def _last(messages: Sequence[BaseMessage], rail: Rail) -> str:
    if rail == "input":
        humans = [m for m in messages if m.type == "human"]
        return _message_text(humans[-1]) if humans else ""
    return _message_text(messages[-1], rail) if messages else ""


def _is_chat(value: Any) -> bool:
    """A non-empty list of chat messages in a shape LangChain's prompts take: messages,
    ``(role, text)`` tuples or role dicts. Tuples and dicts were once skipped, so a
    ``{"lang": "en", "messages": [("human", ...)]}`` input passed its user turn unchecked
    whenever another variable was a str."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        return False
    return all(
        isinstance(m, BaseMessage)
        or (isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str))
        or (isinstance(m, Mapping) and "role" in m)
        for m in value
    )


def _chat_texts(messages: Sequence[Any], rail: Rail, turns: str) -> list[str]:
    """A list of LangChain messages' texts: the last message on the output rail, the
    last human turn on the input rail, or there the turns ``turns`` names."""
    if rail == "input" and turns != "last":
        return input_texts(messages, turns)
    return [_last(messages, rail)]


def default_texts(value: Any, rail: Rail, turns: str = "last") -> list[str]:
    """The texts a rail scores in ``value`` (see the module docstring); ``turns``: the
    input rail's ``Policy.input_turns`` (``last``, ``user`` or ``all``).

    Raises:
        TypeError: a value of another type, naming it and ``text_of=``.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, BaseMessage):
        return [_message_text(value, rail)]
    if isinstance(value, PromptValue):
        return _chat_texts(value.to_messages(), rail, turns)
    if isinstance(value, Sequence) and value and all(isinstance(m, BaseMessage) for m in value):
        return _chat_texts(list(value), rail, turns)
    if rail == "input" and _is_chat(value):
        return input_texts(value, turns)
    if rail == "input" and isinstance(value, Mapping):
        # every str variable, and the last human turn (or the turns ``turns`` names) of a
        # message list (a MessagesPlaceholder's chat history: the user's turn is there,
        # not in a str), in any shape a placeholder takes: messages, (role, text) tuples,
        # role dicts
        texts = [v for v in value.values() if isinstance(v, str)]
        texts += [t for v in value.values() if _is_chat(v) for t in input_texts(v, turns)]
        if texts:
            return texts
    raise TypeError(
        f"the guard's {rail} rail cannot read a {type(value).__name__}: pass text_of= "
        "(a function from the value to the text to check)"
    )


class _Checker:
    """One rail: which texts, which guard, and what a disallowed result does."""

    def __init__(
        self, guard: RailGuard, rail: Rail, text_of: TextOf | None, on_check: OnCheck | None
    ) -> None:
        self.guard, self.rail, self.on_check = guard, rail, on_check
        self.text_of = text_of

    def texts(self, value: Any) -> list[str]:
        if self.text_of is None:
            return default_texts(value, self.rail, self.guard.policy.input_turns)
        got = self.text_of(value)
        # No text at all (e.g. a conversation with no user turn yet) is checked as ""
        # (the default readers' answer to a message list without a human turn).
        return [got] if isinstance(got, str) else list(got) or [""]

    def _after(self, r: GuardResult, *, may_replace: bool) -> GuardResult:
        """The deciding result ``r``; raises GuardViolation when it must not pass and
        cannot (or must not) be replaced."""
        if self.on_check is not None:
            self.on_check(self.rail, r)
        replace = may_replace and r.replacement is not None and r.action != "block"
        if not r.allowed and (self.guard.policy.raise_on_violation or not replace):
            raise GuardViolation(r, self.rail)
        return r

    def check(self, value: Any, *, may_replace: bool) -> GuardResult:
        # max_input_turns bounds the input rail's texts, not an output's text_of pieces
        r = decide_all(self.guard, self.texts(value), bounded=self.rail == "input")
        return self._after(r, may_replace=may_replace)

    async def acheck(self, value: Any, *, may_replace: bool) -> GuardResult:
        r = await adecide_all(self.guard, self.texts(value), bounded=self.rail == "input")
        return self._after(r, may_replace=may_replace)


def _refusal(text: str, like: Any, refusal_as: RefusalAs) -> Any:
    """The refusal in the shape of ``like`` (a value, or a type for ``auto``)."""
    if refusal_as == "str":
        return text
    if refusal_as == "message":
        return AIMessage(content=text)
    is_str = like is str if isinstance(like, type) else isinstance(like, str)
    return text if is_str else AIMessage(content=text)


class GuardRail(Runnable[Any, Any]):
    """A pipe step that checks what flows through it (``input_rail`` / ``output_rail``)."""

    def __init__(
        self,
        guard: RailGuard,
        rail: Rail,
        *,
        text_of: TextOf | None = None,
        on_check: OnCheck | None = None,
        refusal_as: RefusalAs = "auto",
    ) -> None:
        if rail not in ("input", "output"):
            raise ValueError(f"rail must be 'input' or 'output', not {rail!r}")
        self._checker = _Checker(guard, rail, text_of, on_check)
        self.refusal_as: RefusalAs = refusal_as
        self.name = f"guardrail-dro {rail} rail"

    def _result(self, value: Any, r: GuardResult) -> Any:
        if r.allowed:
            return value
        return _refusal(r.replacement or "", value, self.refusal_as)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """``input`` unchanged when allowed; the refusal (output rail, replace) or
        ``GuardViolation`` otherwise."""
        may_replace = self._checker.rail == "output"
        return self._result(input, self._checker.check(input, may_replace=may_replace))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        may_replace = self._checker.rail == "output"
        return self._result(input, await self._checker.acheck(input, may_replace=may_replace))


class GuardedRunnable(Runnable[Any, Any]):
    """A Runnable with an input rail before it and an output rail after it (``guarded``)."""

    def __init__(
        self,
        bound: Runnable,
        guard: RailGuard,
        *,
        input: bool | RailGuard = True,
        output: bool | RailGuard = True,
        text_of_input: TextOf | None = None,
        text_of_output: TextOf | None = None,
        on_check: OnCheck | None = None,
        refusal_as: RefusalAs = "auto",
    ) -> None:
        if not isinstance(bound, Runnable):
            raise TypeError(f"guarded() takes a LangChain Runnable, not {type(bound).__name__}")
        self.bound = bound
        gi, go = rail_guard(guard, input), rail_guard(guard, output)
        self._input = None if gi is None else _Checker(gi, "input", text_of_input, on_check)
        self._output = None if go is None else _Checker(go, "output", text_of_output, on_check)
        self.refusal_as: RefusalAs = refusal_as
        self.name = f"guarded({bound.get_name()})"

    @property
    def InputType(self) -> Any:
        return self.bound.InputType

    @property
    def OutputType(self) -> Any:
        return self.bound.OutputType

    def _refused(self, r: GuardResult) -> Any:
        return _refusal(r.replacement or "", self.bound.OutputType, self.refusal_as)

    def _replied(self, reply: Any, r: GuardResult | None) -> Any:
        if r is None or r.allowed:
            return reply
        return _refusal(r.replacement or "", reply, self.refusal_as)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Check the input, run the wrapped Runnable, check its output."""
        if self._input is not None:
            r = self._input.check(input, may_replace=True)
            if not r.allowed:
                return self._refused(r)
        reply = self.bound.invoke(input, config, **kwargs)
        out = None if self._output is None else self._output.check(reply, may_replace=True)
        return self._replied(reply, out)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self._input is not None:
            r = await self._input.acheck(input, may_replace=True)
            if not r.allowed:
                return self._refused(r)
        reply = await self.bound.ainvoke(input, config, **kwargs)
        out = None if self._output is None else await self._output.acheck(reply, may_replace=True)
        return self._replied(reply, out)


def input_rail(
    guard: RailGuard, *, text_of: TextOf | None = None, on_check: OnCheck | None = None
) -> GuardRail:
    """A pipe step checking the chain's input (passed on unchanged when allowed).

    Example:
        >>> chain = input_rail(guard) | prompt | llm
    """
    return GuardRail(guard, "input", text_of=text_of, on_check=on_check)


def output_rail(
    guard: RailGuard,
    *,
    text_of: TextOf | None = None,
    on_check: OnCheck | None = None,
    refusal_as: RefusalAs = "auto",
) -> GuardRail:
    """A pipe step checking a reply: passed on, replaced by the refusal, or raised.

    Example:
        >>> chain = prompt | llm | output_rail(guard)
    """
    return GuardRail(guard, "output", text_of=text_of, on_check=on_check, refusal_as=refusal_as)


def guarded(
    runnable: Runnable,
    guard: RailGuard,
    *,
    input: bool | RailGuard = True,
    output: bool | RailGuard = True,
    text_of_input: TextOf | None = None,
    text_of_output: TextOf | None = None,
    on_check: OnCheck | None = None,
    refusal_as: RefusalAs = "auto",
) -> GuardedRunnable:
    """``runnable`` with the guard's input and / or output rail.

    Args:
        runnable: any LangChain Runnable (a chain, a chat model).
        guard: a ``Guard``; its policy decides replace / raise / flag.
        input, output: check this rail (True), not (False), or with another guard (e.g.
            ``guard.with_policy(Policy(action="block"))``).
        text_of_input, text_of_output: value -> text (or texts) to check, for shapes
            the defaults do not read.
        on_check: ``on_check(rail, result)`` sees every result (logging, metrics).
        refusal_as: the refusal's type: ``auto`` (a ``str`` where the chain gives
            ``str``, else an ``AIMessage``), ``str`` or ``message``.

    Example:
        >>> chain = guarded(prompt | llm | StrOutputParser(), guard)
        >>> chain.invoke({"question": "how do I hurt someone with a knife"})
        "I can't help with that."
    """
    return GuardedRunnable(
        runnable,
        guard,
        input=input,
        output=output,
        text_of_input=text_of_input,
        text_of_output=text_of_output,
        on_check=on_check,
        refusal_as=refusal_as,
    )
