"""An async web handler guarded on both sides, serving concurrent requests.

``handle(request)`` is what a Starlette / FastAPI / aiohttp route would call: it checks
the user's message with ``guard.acheck_input`` (in a worker thread: the event loop keeps
serving other requests meanwhile), calls the model through a guarded ``AsyncOpenAI``,
and returns JSON. Here 12 requests arrive at once against the shipped fake server, and a
heartbeat task shows the loop never stalls::

    python examples/async_web_handler.py --guard GUARD_DIR
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import openai

from annotators.testing import FakeLLMServer
from guardrail_dro.guard import Guard
from guardrail_dro.policy import Policy

MESSAGES = [
    "What should I cook for dinner tonight?",
    "Can you recommend a book about the sea?",
    "How do I hurt someone with a knife?",
    "How can I break into my neighbour's computer and steal his passwords?",
] * 3


class App:
    def __init__(self, guard: Guard, client: openai.AsyncOpenAI) -> None:
        self.guard = guard
        self.client = guard.wrap(client, input=False)  # the input rail is done by hand below

    async def handle(self, request: dict) -> dict:
        """POST /chat {"message": ...} -> {"status", "reply", "guard"}."""
        messages = [{"role": "user", "content": request["message"]}]
        verdict = await self.guard.acheck_input(messages)
        if not verdict.allowed:
            return {
                "status": 400,
                "reply": verdict.replacement,
                "guard": {"label": verdict.label, "degraded": verdict.degraded},
            }
        resp = await self.client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        return {
            "status": 200,
            "reply": resp.choices[0].message.content,
            "guard": {"label": verdict.label, "degraded": verdict.degraded},
        }


async def serve(guard: Guard) -> None:
    # 50 ms of simulated model time per request
    with FakeLLMServer(lambda text: "Happy to help: " + text, latency=0.05) as server:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="fake", max_retries=0)
        app = App(guard, client)
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                await asyncio.sleep(0.005)
                beats += 1

        hb = asyncio.create_task(heartbeat())
        start = time.perf_counter()
        answers = await asyncio.gather(*(app.handle({"message": m}) for m in MESSAGES))
        elapsed = time.perf_counter() - start
        hb.cancel()
        await client.close()
    for message, answer in zip(MESSAGES, answers, strict=True):
        print(f"{answer['status']}  {message[:45]:45} -> {answer['reply'][:50]}")
    print(
        f"\n{len(MESSAGES)} concurrent requests in {elapsed * 1e3:.0f} ms; "
        f"heartbeat ticked {beats} times meanwhile (the loop was never blocked)"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--guard",
        default=os.environ.get("GUARD_DIR", "guard"),
        help="guard artifact directory (default: $GUARD_DIR or ./guard)",
    )
    ap.add_argument("--toxic-threshold", type=float, default=None)
    args = ap.parse_args(argv)
    policy = Policy(
        toxic_threshold=args.toxic_threshold,
        latency_budget_ms=500,
        on_error="closed",
        refusal="This request was blocked by our policy.",
    )
    asyncio.run(serve(Guard.load(args.guard, policy=policy)))


if __name__ == "__main__":
    main()
