"""A streamed reply stopped mid-way by the output rail (OpenAI and Anthropic SDKs).

The fake model starts a harmless answer, then turns violent. Chunks are held back until
the sentence they belong to has been checked, so the caller sees the harmless part, then
the refusal, and the stream ends (``finish_reason="content_filter"`` /
``stop_reason="refusal"``); the upstream response is closed. Each rail may decide under
its own policy: here the output rail gets its own guard (``wrap(client, output=...)``)::

    python examples/streaming_stop.py --guard GUARD_DIR
"""

from __future__ import annotations

import argparse
import os
import sys

import anthropic
import openai

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import GuardResult, Policy

REPLY = (
    "Tomatoes need sun and water every day. Keep a diary of the plant's growth. "
    "Water them in the morning. Use a good compost in spring. "
    "Then take the knife and hurt your neighbour with it so he learns. "
    "Water them in the morning."
)
PROMPT = [{"role": "user", "content": "How do I care for a tomato plant?"}]
REFUSAL = " [reply stopped by the guardrail]"


def on_check(rail: str, result: GuardResult) -> None:  # where a real service logs
    print(f"  check {rail:6} {result.action:7} toxic={result.toxic_score:.4f}", file=sys.stderr)


def stream_openai(guard: Guard, output: Guard, server: FakeLLMServer) -> None:
    client = guard.wrap(
        openai.OpenAI(base_url=server.openai_base_url, api_key="fake", max_retries=0),
        output=output,
        on_check=on_check,
    )
    finish = None
    with client.chat.completions.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True
    ) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                sys.stdout.write(choice.delta.content or "")
                sys.stdout.flush()
                finish = choice.finish_reason or finish
    print(f"\n[openai finish_reason={finish}]\n")


def stream_anthropic(guard: Guard, output: Guard, server: FakeLLMServer) -> None:
    client = guard.wrap(
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="fake", max_retries=0),
        output=output,
        on_check=on_check,
    )
    stop = None
    for event in client.messages.create(
        model="claude-haiku-4-5", max_tokens=200, messages=PROMPT, stream=True
    ):
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            sys.stdout.write(event.delta.text)
            sys.stdout.flush()
        elif event.type == "message_delta":
            stop = event.delta.stop_reason
    print(f"\n[anthropic stop_reason={stop}]\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--guard",
        default=os.environ.get("GUARD_DIR", "guard"),
        help="guard artifact directory (default: $GUARD_DIR or ./guard)",
    )
    ap.add_argument("--input-threshold", type=float, default=None, help="input rail")
    ap.add_argument("--output-threshold", type=float, default=None, help="output rail")
    args = ap.parse_args(argv)
    guard = Guard.load(
        args.guard, policy=Policy(toxic_threshold=args.input_threshold, refusal=REFUSAL)
    )
    output = guard.with_policy(Policy(toxic_threshold=args.output_threshold, refusal=REFUSAL))
    print(f"full reply the model would send:\n{REPLY}\n")
    with FakeLLMServer(lambda text: REPLY) as server:
        stream_openai(guard, output, server)
        print(f"[model calls: {sum(server.calls.values())}]\n")
        server.reset_counts()
        stream_anthropic(guard, output, server)
        print(f"[model calls: {sum(server.calls.values())}]\n")


if __name__ == "__main__":
    main()
