"""Chat-pipeline rails around any guard (``Guard`` is one; see ``decide.RailGuard``).

One concept a module, arrows downward only (none of them imports ``Guard``)::

    protect   the decorator for chat callables
    sdk       the OpenAI / Anthropic client wrappers
    replies   everything that knows SDK shapes: events, refusals, rebuilt replies
    responses the same for the OpenAI Responses API (``responses.create``)
    coverage  which SDK paths are guarded, passed or refused, and the view enforcing it
    streams   StreamRail, the event protocol, guarded stream iteration
    decide    one rail's decision: RailGuard, on_check, GuardViolation naming the rail
    messages  reading message lists, contents and replies
    tool_args reading the arguments a reply puts in tool calls, whole or streamed
    response_items reading the text of a Responses API item (the Agents SDK's too)

The names re-exported here are the public face of the rails.
"""

from guardrail_dro.serve.rails.coverage import Verdict
from guardrail_dro.serve.rails.decide import OnCheck, RailGuard, adecide_input, decide_input
from guardrail_dro.serve.rails.messages import content_text, input_texts, last_user_text
from guardrail_dro.serve.rails.protect import protect
from guardrail_dro.serve.rails.sdk import (
    anthropic_refusal,
    openai_refusal,
    wrap,
    wrap_anthropic,
    wrap_openai,
)
from guardrail_dro.serve.rails.streams import AsyncGuardedStream, GuardedStream, StreamRail

__all__ = [
    "AsyncGuardedStream",
    "GuardedStream",
    "OnCheck",
    "RailGuard",
    "StreamRail",
    "Verdict",
    "adecide_input",
    "anthropic_refusal",
    "content_text",
    "decide_input",
    "input_texts",
    "last_user_text",
    "openai_refusal",
    "protect",
    "wrap",
    "wrap_anthropic",
    "wrap_openai",
]
