"""Claude's extended thinking (``thinking_budget``): the request the API takes, the label
read past the thinking block, a cut reply never repaired nor cached, cache keys, config,
dry-run ceiling and batch. Real anthropic SDK over HTTP to the fake server, which refuses
(400) a thinking request the real API would refuse.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import anthropic
import pytest

from annotators import AnnotationCache, AnthropicAnnotator
from annotators.anthropic_annotator import TOOL_NAME, parse_message
from annotators.batch import batch_annotate_with_report
from annotators.cache import key_for
from annotators.config import load_config
from annotators.prompts import build_prompt
from annotators.retry import RetryPolicy
from annotators.runner import annotate_with_report
from annotators.specs import make_annotator
from annotators.templates import default_config_text
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from tests.annotators.ann_helpers import KEY, make_dataset
from tests.annotators.test_reasoning_budget import _ask

TWO = ["you idiot", "have a nice day"]


def _claude(srv: FakeLLMServer, **kw: object) -> AnthropicAnnotator:
    return AnthropicAnnotator(
        "claude-sonnet-4-5", api_key=KEY, base_url=srv.anthropic_base_url, **kw
    )  # type: ignore[arg-type]


# ---- the request and the reply ----------------------------------------------------------
def test_a_thinking_request_is_one_the_api_takes_and_its_label_is_read(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    res = _ask(_claude(server, thinking_budget=2048), schema)
    body = server.requests[0]["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 2048 + 300  # the answer keeps its 300 after thinking
    assert "temperature" not in body
    assert body["tool_choice"] == {"type": "auto"}  # a forced tool is a 400 with thinking
    assert (res.outcome, res.label, res.calls) == ("labelled", "toxic", 1)
    # thinking is billed as output: what usage says, 200 thinking tokens and the answer
    (bill,) = server.billed
    assert res.output_tokens == bill["output_tokens"] > 200


def test_a_redacted_thinking_block_is_skipped_too(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    server.add_fault(Fault("redacted_thinking", times=2))
    ann = _claude(server, thinking_budget=1024)
    body = ann.request_body(build_prompt("you idiot", schema), schema)

    async def send() -> anthropic.types.Message:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
        try:
            return await client.messages.create(**body)
        finally:
            await client.close()

    assert [b.type for b in asyncio.run(send()).content] == ["redacted_thinking", "text"]
    res = _ask(ann, schema)
    assert (res.outcome, res.label) == ("labelled", "toxic")
    assert server.requests[1]["body"]["max_tokens"] == 1324


def test_parse_message_reads_the_tool_call_or_the_text_never_the_thinking() -> None:
    # A guard on the parser: thinking text that looks like an answer is never the answer.
    think = {"type": "thinking", "thinking": '{"label": "safe"}', "signature": "s"}
    hidden = {"type": "redacted_thinking", "data": "xx"}
    answer = {"label": "toxic", "rationale": "an insult", "confidence": 0.9}
    usage = {"input_tokens": 10, "output_tokens": 500}
    tool = parse_message(
        {
            "content": [
                think,
                hidden,
                {"type": "text", "text": "Recording."},
                {"type": "tool_use", "id": "t", "name": TOOL_NAME, "input": answer},
            ],
            "stop_reason": "tool_use",
            "usage": usage,
        }
    )
    text = parse_message(
        {
            "content": [think, {"type": "text", "text": '{"label": "toxic"}'}],
            "stop_reason": "end_turn",
            "usage": usage,
        }
    )
    assert tool.text is not None and '"toxic"' in tool.text and '"safe"' not in tool.text
    assert text.text == '{"label": "toxic"}' and text.usage.output_tokens == 500


def test_a_reply_cut_after_thinking_is_an_error_not_repaired_not_cached(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    server.add_fault(Fault("cut", match="idiot", times=2))
    db = tmp_path / "c.sqlite"
    ds = make_dataset(TWO, schema)
    run = annotate_with_report(
        ds, [_claude(server, thinking_budget=2048)], cache=db, policy=fast, progress=False
    )
    (fail,) = run.report.failures
    assert fail.outcome == "error" and "cut" in (fail.error or "")
    assert "max_tokens" in (fail.error or "") and "Not repaired" in (fail.error or "")
    assert server.calls["you idiot"] == 1  # no repair call at the same budget
    cut = [b for b in server.billed if b["text"] == "you idiot"]
    assert [b["output_tokens"] for b in cut] == [2348]  # billed in full
    with AnnotationCache(db) as cache:
        assert len(cache) == 1  # only the labelled one
    again = annotate_with_report(
        ds, [_claude(server, thinking_budget=2048)], cache=db, policy=fast, progress=False
    )
    assert server.calls["you idiot"] == 2 and again.report.from_cache == 1  # asked again


def test_a_reply_too_long_for_max_tokens_after_thinking_is_cut_by_the_fake(
    schema: LabelSchema,
) -> None:
    with FakeLLMServer(thinking_tokens=5000) as srv:
        res = _ask(_claude(srv, thinking_budget=2048, max_tokens=5), schema)
    assert res.outcome == "error" and res.output_tokens == 2053 and res.calls == 1


# ---- the default is unchanged -----------------------------------------------------------
OLD_KEY = "999faf72ea4a133953753d2f6634ed6e89d5a0dcb2135c1888a094c849ed4439"
"""key_for(AnthropicAnnotator("claude-haiku-4-5", base_url="http://127.0.0.1:1"),
"you idiot", schema) computed on the code before thinking_budget existed."""


def test_without_a_budget_requests_and_keys_are_as_before(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    old = AnthropicAnnotator("claude-haiku-4-5", api_key="k", base_url="http://127.0.0.1:1")
    assert key_for(old, "you idiot", schema) == OLD_KEY
    assert old.cache_params() == {"max_tokens": 300, "base_url": "http://127.0.0.1:1"}
    body = old.request_body(build_prompt("you idiot", schema), schema)
    assert list(body) == ["model", "max_tokens", "system", "messages", "tools", "tool_choice"]
    _ask(
        make_annotator("anthropic:claude-haiku-4-5", anthropic_base_url=server.url, need_key=False),
        schema,
    )
    sent = server.requests[0]["body"]
    assert "thinking" not in sent and sent["max_tokens"] == 300
    assert sent["tool_choice"] == {"type": "tool", "name": TOOL_NAME}


def test_the_thinking_budget_is_in_the_cache_key_only_when_set(schema: LabelSchema) -> None:
    keys = {
        b: key_for(
            AnthropicAnnotator("claude-sonnet-4-5", api_key="k", thinking_budget=b), "t", schema
        )
        for b in (None, 1024, 4096)
    }
    assert len(set(keys.values())) == 3
    ann = AnthropicAnnotator(
        "claude-sonnet-4-5", api_key="k", base_url="http://h", thinking_budget=4096
    )
    assert ann.cache_params() == {
        "max_tokens": 300,
        "thinking_budget": 4096,
        "base_url": "http://h",
    }


# ---- refusals, ours and the fake API's ---------------------------------------------------
@pytest.mark.parametrize("budget", [1023, 0, True, "2048"], ids=["1023", "0", "bool", "str"])
def test_a_budget_under_the_minimum_is_refused_by_name(budget: object) -> None:
    with pytest.raises(ConfigError, match=r"thinking_budget=.*at least 1024"):
        AnthropicAnnotator("claude-sonnet-4-5", api_key="k", thinking_budget=budget)  # type: ignore[arg-type]


def test_thinking_with_a_temperature_or_on_openai_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"thinking_budget\) takes no temperature.*remove"):
        AnthropicAnnotator("claude-sonnet-4-5", api_key="k", thinking_budget=2048, temperature=0.0)
    with pytest.raises(ConfigError, match=r"openai:o4-mini: thinking_budget is Claude's"):
        make_annotator("openai:o4-mini", need_key=False, thinking_budget=2048)
    with pytest.raises(ConfigError, match=r"takes no temperature"):
        make_annotator(
            "anthropic:claude-sonnet-4-5", need_key=False, thinking_budget=2048, temperature=1.0
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": 2048}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
        ({"extra_body": {"temperature": 0.5}}, "`temperature` may only be set to 1"),
        ({"tool_choice": {"type": "tool", "name": TOOL_NAME}}, "tool_choice forces tool use"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "greater than or equal to 1024"),
    ],
    ids=["budget-not-below-max", "temperature", "forced-tool", "small-budget"],
)
def test_the_fake_refuses_what_the_api_refuses(
    change: dict, message: str, server: FakeLLMServer, schema: LabelSchema
) -> None:
    ann = _claude(server, thinking_budget=2048)
    body = {**ann.request_body(build_prompt("you idiot", schema), schema), **change}

    async def send() -> None:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
        try:
            await client.messages.create(**body)
        finally:
            await client.close()

    with pytest.raises(anthropic.BadRequestError, match=re.escape(message)):
        asyncio.run(send())
    assert server.paid.total() == 0


def test_the_fake_streams_the_thinking_block(server: FakeLLMServer, schema: LabelSchema) -> None:
    body = _claude(server, thinking_budget=2048).request_body(
        build_prompt("you idiot", schema), schema
    )

    async def stream() -> anthropic.types.Message:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
        try:
            async with client.messages.stream(**body) as events:
                return await events.get_final_message()
        finally:
            await client.close()

    message = asyncio.run(stream())
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature  # type: ignore[union-attr]
    assert parse_message(message.model_dump(mode="json")).text is not None


# ---- config, dry run, batch --------------------------------------------------------------
def test_config_takes_thinking_budget_and_refuses_one_under_1024(tmp_path: Path) -> None:
    cfg = tmp_path / "team.toml"
    cfg.write_text(
        '[[annotators]]\nspec = "anthropic:claude-sonnet-4-5"\nthinking_budget = 2048\n',
        encoding="utf-8",
    )
    (entry,) = load_config(cfg).annotators
    assert entry.thinking_budget == 2048
    ann = make_annotator(entry.spec, need_key=False, thinking_budget=entry.thinking_budget)
    assert ann.request_max_tokens == 2348  # type: ignore[attr-defined]
    cfg.write_text(
        '[[annotators]]\nspec = "anthropic:claude-sonnet-4-5"\nthinking_budget = 512\n',
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError,
        match=r"annotators\.0\.thinking_budget: .*512 is below "
        r"Anthropic's minimum of 1024",
    ):
        load_config(cfg)
    # The shipped example, uncommented, loads and builds.
    text = default_config_text()
    block = text[text.index('# spec = "anthropic:claude-sonnet-4-5"') :].split("\n\n")[0]
    cfg.write_text(
        "[[annotators]]\n" + "\n".join(ln.removeprefix("# ") for ln in block.splitlines())
    )
    (entry,) = load_config(cfg).annotators
    assert (entry.max_tokens, entry.thinking_budget) == (300, 2048)


def test_dry_run_shows_the_thinking_ceiling(schema: LabelSchema) -> None:
    ann = make_annotator("anthropic:claude-sonnet-4-5", need_key=False, thinking_budget=2048)
    run = annotate_with_report(
        make_dataset(["a", "b", "c"], schema), [ann], dry_run=True, progress=False
    )
    lines = run.report.summary_lines()
    (line,) = [ln for ln in lines if ln.startswith("  anthropic:claude-sonnet-4-5:")]
    assert "output: 60 a reply assumed, up to 2348 a reply with hidden reasoning)" in line
    cost, most = (float(x) for x in re.findall(r"\$(\d+\.\d+)", line))
    assert most > 10 * cost
    n_in = int(line.split("request(s), ")[1].split()[0])
    assert most == pytest.approx((n_in * 3.0 + 3 * 2348 * 15.0) / 1e6, abs=1e-4)
    assert "(up to 7044 out with reasoning)" in lines[-1]
    assert run.report.sample_requests["anthropic"]["thinking"]["budget_tokens"] == 2048


def test_batch_requests_carry_the_same_thinking_params(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    server.add_fault(Fault("cut", match="idiot"))
    run = batch_annotate_with_report(
        make_dataset(TWO, schema),
        [_claude(server, thinking_budget=2048)],
        poll_interval=0.01,
        policy=fast,
        cache=tmp_path / "c.sqlite",
    )
    # The fake answers a request the API would refuse with an errored result: this one
    # was taken, and thought (200 tokens billed as output) before it answered.
    assert run.report.outcomes["anthropic:claude-sonnet-4-5"]["labelled"] == 1
    (fail,) = run.report.failures
    assert fail.outcome == "error" and "cut" in (fail.error or "")
    billed = {b["text"]: b["output_tokens"] for b in server.billed if b["batch"]}
    assert billed["you idiot"] == 2348 and billed["have a nice day"] > 200
    assert server.calls.total() == 0  # no live repair of the cut one
    with AnnotationCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 1
