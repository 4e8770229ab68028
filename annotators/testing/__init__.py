"""A local fake of the OpenAI and Anthropic HTTP APIs, shipped for tests and demos.

Run the official SDKs against it instead of patching them: it is a real HTTP server on
127.0.0.1 (an ephemeral port by default), threaded, speaking enough of

- OpenAI: ``POST /v1/chat/completions``, ``POST /v1/responses`` (``responses_wire``),
  ``POST /v1/files``, ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``,
  ``POST /v1/batches``, ``GET /v1/batches`` (list, newest first, ``limit`` /
  ``after``), ``GET /v1/batches/{id}``;
- Anthropic: ``POST /v1/messages``, ``POST /v1/messages/batches``,
  ``GET /v1/messages/batches`` (list, newest first, ``limit`` / ``after_id``),
  ``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results``.

What it answers is decided by a plain **handler** function, ``text -> FakeReply |
Refuse | str`` (a ``str`` is sent as the raw reply text, e.g. malformed JSON), so a test
writes a rule, not a patch::

    def rule(text: str) -> FakeReply:
        return FakeReply("hate" if "idiot" in text else "safe", "keyword rule", 0.8)

    with FakeLLMServer(rule) as server:
        ann = OpenAIAnnotator("gpt-fake", base_url=server.openai_base_url, api_key="k")
        ...
        assert server.calls["some text"] == 1

**Faults** (``server.add_fault(Fault(...))``) make it misbehave for matching items, a
given number of times: ``rate_limit`` (429 with ``Retry-After``), ``server_error``
(500), ``slow`` (sleep before answering, to trip client timeouts), ``malformed``
(200 with text that is not JSON), ``out_of_schema`` (a label not in the schema),
``refusal``, and for batch jobs ``batch_expired`` / ``batch_errored`` (per request) and
``batch_create_timeout`` / ``batch_create_error`` (the job *is* created, then the
create reply is held for ``delay`` seconds / answered 500: a lost reply; ``match`` is
tested against the batch's item texts joined by newlines), ``batch_poll_rate_limit``
(a poll of such a job answered 429 with ``Retry-After``). ``content_filter`` is Azure
OpenAI's content filter declining the prompt: HTTP 400 with code ``content_filter``
live, and in an OpenAI batch a result line with that 400 response. ``insufficient_quota``
is OpenAI's answer to an account out of credit: HTTP 429 (no ``Retry-After``) with code
``insufficient_quota``, which no wait cures. ``cut`` answers 200
with a reply cut at the request's token budget (OpenAI ``finish_reason`` ``"length"``,
empty content for a reasoning model, which thought the budget away; Anthropic
``stop_reason`` ``"max_tokens"``). ``FakeLLMServer(reasoning_tokens=N)`` makes OpenAI
reasoning models (by name) think N hidden tokens before they answer, paid from
``max_completion_tokens`` and shown in ``usage.completion_tokens_details``: a budget too
small for them and the reply gets the same cut reply, without a fault. Claude's extended
thinking (a request with ``thinking``) is checked as the API checks it (400 for a budget
under 1024 or not below ``max_tokens``, a temperature but 1, a forced tool; for
``{"type": "adaptive"}``, a ``budget_tokens`` or a ``display`` the SDK does not list), and
answered with a thinking block of ``FakeLLMServer(thinking_tokens=N)`` tokens (200;
billed as output; adaptive thinking is bounded by ``max_tokens`` only) before the reply
JSON as text; a ``redacted_thinking`` fault sends a ``redacted_thinking`` block instead.

It counts what it receives: ``calls[text]`` (every live request about an item,
failures included), ``paid[text]`` (live requests answered 200 with a reply: what a
real API bills), ``batch_paid[text]`` and ``endpoints[name]``. ``requests`` keeps each
live request's JSON body (and its arrival time ``t``, ``time.monotonic()``) so a test
can read the prompt that was sent. ``received`` lists every HTTP request whatever its
path (method, path, the ``authorization`` / ``x-api-key`` headers: what a client sent,
even to a path the fake does not know), and ``billed`` the usage of every reply it
billed (text, ``batch`` flag, input and output tokens), so a test can sum them. A caller in
another process reads the counters at ``GET /_fake/stats`` and zeroes them with
``POST /_fake/reset``.

Also a command: ``python -m annotators.testing --port 8000 [--latency 0.3]`` serves the
keyword demo rule until interrupted, for subprocess tests and demos.

Streaming (``stream=True`` / ``"stream": true``) is spoken too: the reply is built once
by the pure body functions (``openai_completion_body``, ``anthropic_message_body``), so
the faults and counters are the same, and then written as Server-Sent Events by
``openai_stream_body`` (``chat.completion.chunk`` deltas, ``[DONE]``),
``responses_wire.responses_stream_body`` (``response.created`` ...
``response.output_text.delta`` ... ``response.completed``) or
``anthropic_stream_body`` (``message_start`` ... ``content_block_delta`` ...
``message_stop``). Errors (429, 500) are plain JSON answers, as the real APIs send them
before a stream starts.

The package, by concern: ``rules`` (``FakeReply``, ``Refuse``, ``Fault``, the keyword
rule), ``wire`` / ``openai_wire`` / ``anthropic_wire`` (the two wire formats, as pure
functions), ``streaming`` (SSE), ``ledger`` (the counters), ``batch`` (the batch APIs)
and ``server`` (``FakeLLMServer``, the HTTP plumbing, ``main``).
"""

from annotators.testing.anthropic_wire import anthropic_message_body
from annotators.testing.openai_wire import openai_completion_body
from annotators.testing.rules import FakeReply, Fault, FaultKind, Handler, Refuse, keyword_handler
from annotators.testing.server import FakeLLMServer, main
from annotators.testing.streaming import anthropic_stream_body, openai_stream_body

__all__ = [
    "FakeLLMServer",
    "FakeReply",
    "Fault",
    "FaultKind",
    "Handler",
    "Refuse",
    "anthropic_message_body",
    "anthropic_stream_body",
    "keyword_handler",
    "main",
    "openai_completion_body",
    "openai_stream_body",
]
