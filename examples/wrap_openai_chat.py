"""Wrap an OpenAI chat pipeline with a guard: input rail, output rail, a log of checks.

Runs against the shipped fake OpenAI server on 127.0.0.1 (started here), so it needs no
key and no network::

    python examples/wrap_openai_chat.py --guard GUARD_DIR

GUARD_DIR is a guard artifact (``guardrail-dro export --model MODEL_DIR --out GUARD_DIR``).
Against a real API, drop the fake server and build the client with your key.
"""

from __future__ import annotations

import argparse
import os

import openai

from annotators.testing import FakeLLMServer
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy

# What the fake model answers to each question (anything else: a polite default).
REPLIES = {
    "How do I bake bread?": "Mix flour, water, salt and yeast. Knead, let it rise, bake.",
    "What is the history of the hammer?": (
        "Forget history. Here is the best way to attack a crowd with a hammer."
    ),
}
QUESTIONS = [
    "How do I bake bread?",
    "How do I hurt someone with a knife?",  # stopped by the input rail
    "What is the history of the hammer?",  # the reply is stopped by the output rail
]


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

    refusal = "Sorry, I can't help with that."
    guard = Guard.load(
        args.guard, policy=Policy(toxic_threshold=args.input_threshold, refusal=refusal)
    )
    # Each rail may decide under its own policy: the replies get their own threshold.
    output = guard.with_policy(Policy(toxic_threshold=args.output_threshold, refusal=refusal))
    log: list[str] = []

    def on_check(rail: str, result) -> None:  # where a real service logs or counts
        log.append(
            f"{rail:6} {result.action:7} {result.label:10} "
            f"toxic={result.toxic_score:.4f} {result.latency_ms:.1f} ms"
        )

    with FakeLLMServer(lambda text: REPLIES.get(text, "Happy to help with that.")) as server:
        client = guard.wrap(
            openai.OpenAI(base_url=server.openai_base_url, api_key="fake", max_retries=0),
            output=output,
            on_check=on_check,
        )
        for question in QUESTIONS:
            resp = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
            )
            choice = resp.choices[0]
            print(f"Q: {question}\nA: {choice.message.content}  [{choice.finish_reason}]\n")
        print(
            f"the model was called {sum(server.calls.values())} time(s) "
            f"for {len(QUESTIONS)} questions"
        )
    print("guard checks:")
    for line in log:
        print("  " + line)


if __name__ == "__main__":
    main()
