"""Claude's adaptive thinking where it meets the shared code: a dry run counts its room in
the ceiling a reply can bill (``report``), and a cut reply's error names the room to raise
(``labelling.cut_error``). Real SDK against the fake server.
"""

from __future__ import annotations

import re

import pytest

from annotators import AnthropicAnnotator
from annotators.runner import annotate_with_report
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY, make_dataset
from tests.annotators.test_reasoning_budget import _ask


def test_a_dry_run_counts_the_thinking_room_in_the_ceiling(schema: LabelSchema) -> None:
    ann = AnthropicAnnotator("claude-sonnet-4-5", api_key="k", thinking="adaptive")
    run = annotate_with_report(
        make_dataset(["a", "b", "c"], schema), [ann], dry_run=True, progress=False
    )
    lines = run.report.summary_lines()
    (line,) = [ln for ln in lines if ln.startswith("  anthropic:claude-sonnet-4-5:")]
    assert "up to 16300 a reply with hidden reasoning" in line
    cost, most = (float(x) for x in re.findall(r"\$(\d+\.\d+)", line))
    assert most > 10 * cost
    n_in = int(line.split("request(s), ")[1].split()[0])
    assert most == pytest.approx((n_in * 3.0 + 3 * 16300 * 15.0) / 1e6, abs=1e-4)
    assert "(up to 48900 out with reasoning)" in lines[-1]


def test_a_cut_adaptive_reply_names_the_room_to_raise(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    server.add_fault(Fault("cut"))
    ann = AnthropicAnnotator(
        "claude-opus-4-6",
        api_key=KEY,
        base_url=server.anthropic_base_url,
        thinking="adaptive",
        thinking_room=2000,
    )
    res = _ask(ann, schema)
    error = res.error or ""
    assert "cut at max_tokens 2300 (thinking_room 2000 for adaptive thinking + max_tokens" in error
    assert "after 2300 output tokens, thinking included" in error
    assert "raise thinking_room" in error and "only the cut items are asked again" in error
