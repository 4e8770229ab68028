"""Guard a LangChain chain's input and output with guardrail-dro (sync and async).

    python examples/langchain_guard.py [--guard GUARD_DIR] [--threshold 0.5]

The chain is ``prompt | chat model | StrOutputParser()``; the chat model here is
langchain-core's ``FakeListChatModel`` so the example runs offline: put ``ChatOpenAI(...)``
or any other chat model in its place. Without ``--guard`` a demo guard on the shipped
fake scorer flags texts that mention a knife; with ``--guard`` it loads an exported guard
(``guardrail-dro export --model MODEL --out GUARD_DIR``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from guardrail_dro.integrations.langchain import guarded
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import GuardResult, Policy
from guardrail_dro.serve.scorer import FakeScorer

QUESTIONS = [
    "What is the history of the printing press?",
    "How do I hurt someone with a knife?",
    "Which tool do I need to open a paint tin?",
]
# What the fake chat model answers, in order, to the questions that reach it.
REPLIES = [
    "Gutenberg built a movable-type press around 1440.",
    "Any knife will do: push it under the lid and lever it open.",
]


def demo_guard(policy: Policy) -> Guard:
    scorer = FakeScorer.from_keywords(
        {"knife": "violence"}, labels=("safe", "violence", "hate"), score=0.9
    )
    return Guard.from_scorer(scorer, policy=policy)


def log(rail: str, r: GuardResult) -> None:
    print(f"  {rail:<6} {r.action:<7} {r.label_name or r.label} (toxic {r.toxic_score:.2f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guard", type=Path, default=None, help="An exported guard directory.")
    ap.add_argument("--threshold", type=float, default=None, help="Toxic threshold override.")
    args = ap.parse_args(argv)

    policy = Policy(action="replace", toxic_threshold=args.threshold)
    guard = Guard.load(args.guard, policy=policy) if args.guard else demo_guard(policy)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer in one sentence."), ("user", "{question}")]
    )
    llm = FakeListChatModel(responses=REPLIES)
    chain = guarded(prompt | llm | StrOutputParser(), guard, on_check=log)

    print("sync, one question at a time:")
    for q in QUESTIONS:
        print(f"Q: {q}")
        print(f"A: {chain.invoke({'question': q})}")

    print("async (ainvoke: the guard scores off the event loop):")
    llm.i = 0  # replay the same replies

    async def ask_all() -> list[str]:
        return [await chain.ainvoke({"question": q}) for q in QUESTIONS]

    for q, a in zip(QUESTIONS, asyncio.run(ask_all()), strict=True):
        print(f"Q: {q}\nA: {a}")


if __name__ == "__main__":
    main()
