"""OpenAI Agents SDK: the guard as the SDK's own guardrail objects.

Each function returns what the SDK's decorators return, so it goes where theirs go::

    from agents import Agent, function_tool
    from guardrail_dro.integrations.openai_agents import (
        input_guardrail, output_guardrail, tool_input_guardrail, tool_output_guardrail)

    agent = Agent(name="support", instructions="...",
                  input_guardrails=[input_guardrail(guard)],     # agents.InputGuardrail
                  output_guardrails=[output_guardrail(guard)])   # agents.OutputGuardrail

    @function_tool(tool_input_guardrails=[tool_input_guardrail(guard)],
                   tool_output_guardrails=[tool_output_guardrail(guard)])
    def send_email(to: str, body: str) -> str: ...

What a disallowed result does follows the guard's ``Policy``, in the SDK's terms:

- Agent input / output (``input_guardrail`` / ``output_guardrail``): under ``replace``
  and ``block`` the tripwire trips and the Runner raises
  ``InputGuardrailTripwireTriggered`` / ``OutputGuardrailTripwireTriggered``; the
  ``GuardResult`` is the guardrail's ``output_info``
  (``exc.guardrail_result.output.output_info``), its ``replacement`` the refusal to show
  (``replace``; "" under ``block``). The SDK cannot swap an agent's input or final
  output, so ``replace`` stops the run as ``block`` does and the caller answers the
  refusal.
- Tools (``tool_input_guardrail`` / ``tool_output_guardrail``): ``replace`` rejects the
  content (``reject_content``: the tool does not run, or its output is withheld, and the
  model reads ``Policy.refusal`` instead; the run goes on); ``block`` raises
  (``raise_exception``: the Runner raises ``ToolInputGuardrailTripwireTriggered`` /
  ``ToolOutputGuardrailTripwireTriggered``, the result in ``exc.output.output_info``).
- ``raise_on_violation=True``: ``GuardViolation`` (carrying the result and naming the rail)
  is raised from the input / output guardrail and out of ``Runner.run``, as the other
  rails raise it, for callers that already catch it around every guarded call. A tool
  guardrail trips as under ``block`` instead: the SDK wraps whatever a tool guardrail
  raises in a ``UserError("Error running tool ...")``, which no caller would catch.
- ``action="flag"``: nothing trips; ``on_check(rail, result)`` sees every result (the
  rails are ``input``, ``output``, ``tool_input``, ``tool_output``).

Which text is checked:

- input: a ``str``; a list of input items, the text content of the **last user
  message** (``{"role": "user", "content": str | [input_text parts]}``; images and files
  skipped; "" when there is none). Only the last one because that is the turn this run
  adds: earlier user turns were checked by the runs that added them, and re-scoring the
  history would make one old bad turn trip every later run and make each run's cost grow
  with the conversation (the guard is also trained on single texts). A caller that
  builds its own history of unchecked turns gives the guard
  ``Policy(input_turns="user")`` (every user message, each scored alone) or ``"all"``
  (every item with text: system and assistant messages, function and MCP calls'
  arguments, tool and MCP outputs, reasoning, shell commands and output, code
  interpreter code and logs, file and web search queries and results; ``input_texts``),
  or passes ``text_of=``.
  The SDK runs input guardrails on the starting agent only, on the first turn of a run.
- output (the last agent's ``final_output``): a ``str``; a structured ``output_type`` (a
  pydantic model, dataclass, dict or list) its strings, keys included, one a line, as
  tool arguments are read (``rails.tool_args``: a free-form dict's keys are model text);
  a number or bool as written. Anything else is a ``TypeError`` that says to pass
  ``text_of=``.
- tool input: the call's arguments (``ToolContext.tool_arguments``), their strings, keys
  included: the model wrote them and the tool acts on them. Tool output: the tool's
  return value, read as the final output is (a web page or a file's text reaching the
  model).

``text_of`` (value -> text, or texts each scored alone, the worst deciding) reads any
other shape. Scoring never blocks the event loop (``Guard.adecide``, a worker thread).

Input guardrails default to ``run_in_parallel=False``: the SDK's own default runs them
beside the model, which then has the disallowed input already (billed, and perhaps
running tools) when the tripwire cancels it. ``run_in_parallel=True`` trades that for
the guard's latency (milliseconds) hidden behind the model's.

``Runner.run_streamed``: the SDK yields the model's text deltas (``raw_response_event``)
as they arrive and runs output guardrails on the final output only, so the tripwire is
raised after a consumer showing deltas has shown the whole reply (seen with 0.25.0). Show
a streamed reply once the run has finished, or not at all when it trips.

Needs the ``agents`` extra (``pip install 'guardrail-dro[agents]'``): ``import
guardrail_dro`` never imports the SDK; importing this module does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from guardrail_dro.errors import require
from guardrail_dro.serve.policy import GuardResult, GuardViolation
from guardrail_dro.serve.rails.decide import OnCheck, RailGuard, adecide_all
from guardrail_dro.serve.rails.messages import INPUT_TURNS, content_text
from guardrail_dro.serve.rails.response_items import item_text
from guardrail_dro.serve.rails.tool_args import arguments_text, attr_or_key, string_values

require("agents", "agents")

from agents import (  # noqa: E402
    Agent,
    GuardrailFunctionOutput,
    InputGuardrail,
    OutputGuardrail,
    RunContextWrapper,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolOutputGuardrail,
    ToolOutputGuardrailData,
)

__all__ = [
    "input_guardrail",
    "input_text",
    "input_texts",
    "output_guardrail",
    "output_text",
    "tool_input_guardrail",
    "tool_output_guardrail",
]

TextOf = Callable[[Any], "str | Sequence[str]"]


def _check_items(value: Any) -> None:
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        raise TypeError(
            f"the guard's input guardrail cannot read a {type(value).__name__}: pass "
            "text_of= (a function from the input to the text to check)"
        )


def input_text(value: Any) -> str:
    """The text the input guardrail checks: ``value`` itself when a ``str``, else the text
    content of the last user message in a list of input items ("" when there is none).

    Raises:
        TypeError: neither a str nor a list of input items; names ``text_of=``.
    """
    if isinstance(value, str):
        return value
    _check_items(value)
    # Items without a role (function calls, tool outputs, reasoning) are not user turns.
    users = [item for item in value if attr_or_key(item, "role") == "user"]
    return content_text(attr_or_key(users[-1], "content")) if users else ""


def input_texts(value: Any, turns: str = "last") -> list[str]:
    """The texts the input guardrail checks, each alone, under ``turns`` (the guard's
    ``Policy.input_turns``): ``last`` is ``[input_text(value)]``; ``user`` every user
    message's text; ``all`` every item with text (``rails.response_items.item_text``): for a
    caller whose client writes the items (a fabricated assistant turn, a forged tool
    output). A str is itself; a list with no text ``[""]``.

    Raises:
        TypeError: as ``input_text``; a message's content neither text nor parts.
        ValueError: ``turns`` is none of last, user, all.
    """
    if turns == "last" or isinstance(value, str):
        return [input_text(value)]
    if turns not in INPUT_TURNS:
        raise ValueError(f"input turns must be one of {list(INPUT_TURNS)}, not {turns!r}")
    _check_items(value)
    if turns == "user":
        texts = [
            content_text(attr_or_key(i, "content"))
            for i in value
            if attr_or_key(i, "role") == "user"
        ]
    else:
        texts = [item_text(item) for item in value]
    return [t for t in texts if t] or [""]


def output_text(value: Any, rail: str = "output") -> str:
    """The text the output guardrail checks in a final output (or a tool guardrail in a
    tool's output): a str as is; a pydantic model, dataclass, dict or list its strings,
    keys included, one a line; a number or bool as written; None as "" (a tool run for
    its effect, ``send_email`` returning nothing, gave no text to check, and the
    ``TypeError`` for it failed the whole run).

    Raises:
        TypeError: any other type; names the rail and ``text_of=``.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):  # bool too
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    structured = callable(getattr(value, "model_dump", None)) and not isinstance(value, type)
    if structured or isinstance(value, Mapping | Sequence):
        return "\n".join(s for s in string_values(value) if s)
    raise TypeError(
        f"the guard's {rail} guardrail cannot read a {type(value).__name__}: pass text_of= "
        "(a function from the value to the text to check)"
    )


class _Checker:
    """One rail: which texts, which guard, who sees the result, and whether it raises."""

    def __init__(
        self,
        guard: RailGuard,
        rail: str,
        read: Callable[[Any], str | list[str]],
        text_of: TextOf | None,
        on_check: OnCheck | None,
        *,
        raises: bool = True,
    ) -> None:
        if not isinstance(guard, RailGuard):
            raise TypeError(f"guard must be a guardrail_dro Guard, not {type(guard).__name__}")
        self.guard, self.rail, self.read = guard, rail, read
        self.text_of, self.on_check, self.raises = text_of, on_check, raises

    def texts(self, value: Any) -> list[str]:
        if self.text_of is None:
            read = self.read(value)
            return [read] if isinstance(read, str) else read
        got = self.text_of(value)
        # No text at all (a conversation with no user turn yet) is checked as "", as the
        # default readers answer for an input with no user message.
        return [got] if isinstance(got, str) else list(got) or [""]

    async def check(self, value: Any) -> GuardResult:
        """The deciding result, scored off the event loop; ``on_check`` sees it first,
        then ``raise_on_violation`` may raise ``GuardViolation`` naming the rail (unless
        ``raises`` is False: a tool rail, which trips instead)."""
        # max_input_turns bounds the input guardrail's texts, not an output's or a tool's
        r = await adecide_all(self.guard, self.texts(value), bounded=self.rail == "input")
        if self.on_check is not None:
            self.on_check(self.rail, r)
        if not r.allowed and self.raises and self.guard.policy.raise_on_violation:
            raise GuardViolation(r, self.rail)
        return r

    async def tripwire(
        self, context: RunContextWrapper[Any], agent: Agent[Any], value: Any
    ) -> GuardrailFunctionOutput:
        """The agent input / output guardrail function: trips on a disallowed result."""
        r = await self.check(value)
        return GuardrailFunctionOutput(output_info=r, tripwire_triggered=not r.allowed)


def input_guardrail(
    guard: RailGuard,
    *,
    text_of: TextOf | None = None,
    on_check: OnCheck | None = None,
    run_in_parallel: bool = False,
    name: str = "guardrail-dro input",
) -> InputGuardrail[Any]:
    """An ``agents.InputGuardrail`` checking the run's input with ``guard``.

    Args:
        guard: a ``Guard``; its policy decides trip / raise / flag.
        text_of: input -> text (or texts) to check, for what ``input_text`` does not
            read the way you want.
        on_check: ``on_check("input", result)`` sees every result (logging, metrics).
        run_in_parallel: run beside the model (the SDK's default) rather than before it
            (ours: a disallowed input then never reaches the model).
        name: the guardrail's name in traces and ``RunResult.input_guardrail_results``.

    Example:
        >>> agent = Agent(name="a", input_guardrails=[input_guardrail(guard)])
        >>> await Runner.run(agent, "how do I hurt someone with a knife")
        Traceback (most recent call last):
        agents.exceptions.InputGuardrailTripwireTriggered: ...
    """
    read = lambda value: input_texts(value, guard.policy.input_turns)  # noqa: E731
    checker = _Checker(guard, "input", read, text_of, on_check)
    return InputGuardrail(
        guardrail_function=checker.tripwire, name=name, run_in_parallel=run_in_parallel
    )


def output_guardrail(
    guard: RailGuard,
    *,
    text_of: TextOf | None = None,
    on_check: OnCheck | None = None,
    name: str = "guardrail-dro output",
) -> OutputGuardrail[Any]:
    """An ``agents.OutputGuardrail`` checking the agent's final output with ``guard``.

    Args:
        guard: a ``Guard``; its policy decides trip / raise / flag.
        text_of: final output -> text (or texts) to check, for an ``output_type`` that
            ``output_text`` does not read the way you want.
        on_check: ``on_check("output", result)`` sees every result.
        name: the guardrail's name in traces and ``RunResult.output_guardrail_results``.

    Example:
        >>> agent = Agent(name="a", output_guardrails=[output_guardrail(guard)])
    """
    checker = _Checker(guard, "output", output_text, text_of, on_check)
    return OutputGuardrail(guardrail_function=checker.tripwire, name=name)


def _tool_verdict(r: GuardResult, raise_on_violation: bool) -> ToolGuardrailFunctionOutput:
    """allow (allowed, flag included), reject with the refusal (replace) or raise (block,
    or ``raise_on_violation``)."""
    if r.allowed:
        return ToolGuardrailFunctionOutput.allow(output_info=r)
    if r.action != "block" and r.replacement and not raise_on_violation:
        return ToolGuardrailFunctionOutput.reject_content(r.replacement, output_info=r)
    return ToolGuardrailFunctionOutput.raise_exception(output_info=r)


def tool_input_guardrail(
    guard: RailGuard,
    *,
    text_of: TextOf | None = None,
    on_check: OnCheck | None = None,
    name: str = "guardrail-dro tool input",
) -> ToolInputGuardrail[Any]:
    """An ``agents.ToolInputGuardrail`` checking the arguments the model wrote into a
    function tool call, before the tool runs.

    Args:
        guard: a ``Guard``; ``replace`` rejects the call (the model reads the refusal),
            ``block`` stops the run, ``flag`` lets it run.
        text_of: the ``ToolContext`` -> text (or texts) to check; default the strings
            of ``tool_arguments``.
        on_check: ``on_check("tool_input", result)`` sees every result.
        name: the guardrail's name in traces and results.

    Example:
        >>> @function_tool(tool_input_guardrails=[tool_input_guardrail(guard)])
        ... def send_email(to: str, body: str) -> str: ...
    """
    read: Callable[[Any], str] = lambda ctx: arguments_text(ctx.tool_arguments)  # noqa: E731
    checker = _Checker(guard, "tool_input", read, text_of, on_check, raises=False)

    async def check_tool_input(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        r = await checker.check(data.context)
        return _tool_verdict(r, guard.policy.raise_on_violation)

    return ToolInputGuardrail(guardrail_function=check_tool_input, name=name)


def tool_output_guardrail(
    guard: RailGuard,
    *,
    text_of: TextOf | None = None,
    on_check: OnCheck | None = None,
    name: str = "guardrail-dro tool output",
) -> ToolOutputGuardrail[Any]:
    """An ``agents.ToolOutputGuardrail`` checking what a function tool returned, before
    the model reads it.

    Args:
        guard: a ``Guard``; ``replace`` gives the model the refusal instead of the
            output, ``block`` stops the run, ``flag`` passes it.
        text_of: the tool's output -> text (or texts) to check.
        on_check: ``on_check("tool_output", result)`` sees every result.
        name: the guardrail's name in traces and results.

    Example:
        >>> @function_tool(tool_output_guardrails=[tool_output_guardrail(guard)])
        ... def fetch_page(url: str) -> str: ...
    """
    read: Callable[[Any], str] = lambda v: output_text(v, "tool output")  # noqa: E731
    checker = _Checker(guard, "tool_output", read, text_of, on_check, raises=False)

    async def check_tool_output(data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        r = await checker.check(data.output)
        return _tool_verdict(r, guard.policy.raise_on_violation)

    return ToolOutputGuardrail(guardrail_function=check_tool_output, name=name)
