"""Claude's extended thinking where it meets the shared code: a cut reply's error names the
thinking budget (``labelling.cut_error``), and ``annotate --config`` passes an entry's
``thinking_budget`` on (``cli/annotate.py``). Real SDK and CLI against the fake server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from annotators import AnthropicAnnotator
from annotators.labelling import label_text
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY

ROOT = Path(__file__).resolve().parents[2]


def test_a_cut_reply_after_thinking_names_the_thinking_budget(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    server.add_fault(Fault("cut"))
    ann = AnthropicAnnotator(
        "claude-sonnet-4-5", api_key=KEY, base_url=server.anthropic_base_url, thinking_budget=2048
    )

    async def go() -> str:
        try:
            return (await label_text(ann, "you idiot", schema, policy=fast)).error or ""
        finally:
            await ann.aclose()

    error = asyncio.run(go())
    assert "cut at max_tokens 2348 (thinking_budget 2048 + max_tokens 300 for the answer)" in error
    assert "after 2348 output tokens, thinking included" in error
    assert "raise max_tokens" in error and "reasoning_effort" not in error
    assert server.calls["you idiot"] == 1


def _annotate(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    return subprocess.run(
        [sys.executable, "-m", "guardrail_dro", "annotate", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_takes_thinking_budget_from_the_config(tmp_path: Path) -> None:
    cfg, data = tmp_path / "team.toml", tmp_path / "in.csv"
    data.write_text("question\nhello there\n", encoding="utf-8")
    args = [
        "--data",
        str(data),
        "--labels",
        "safe,toxic",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "o.jsonl"),
        "--dry-run",
    ]
    cfg.write_text('[[annotators]]\nspec = "anthropic:claude-sonnet-4-5"\nthinking_budget = 2048\n')
    r = _annotate(args)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout.split("\n", 1)[1])
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 2348 and body["tool_choice"] == {"type": "auto"}
    assert "up to 2348 a reply with hidden reasoning" in r.stderr
    cfg.write_text('[[annotators]]\nspec = "openai:o4-mini"\nthinking_budget = 2048\n')
    r = _annotate(args)
    assert r.returncode == 2 and "thinking_budget is Claude's" in r.stderr
