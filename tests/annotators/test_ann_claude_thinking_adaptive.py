"""Claude's adaptive thinking (``thinking="adaptive"``): the request the API takes, the
room it leaves for thinking, cache keys (unchanged for every other annotator), the bad
combinations refused by name, config, CLI, batch, the fake server's checks, and the note
that points claude-opus-4-6 users of ``thinking_budget`` to it. Real anthropic SDK over
HTTP to the fake server.
"""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from pathlib import Path
from typing import Any

import anthropic
import pytest

from annotators import AnnotationCache, AnthropicAnnotator
from annotators.anthropic_annotator import ADAPTIVE_THINKING_ROOM, TOOL_NAME, parse_message
from annotators.batch import batch_annotate_with_report
from annotators.cache import key_for
from annotators.config import load_config
from annotators.prompts import build_prompt
from annotators.retry import RetryPolicy
from annotators.runner import annotate_with_report
from annotators.specs import make_annotator
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from tests.annotators.ann_helpers import KEY, make_dataset
from tests.annotators.test_ann_claude_thinking_wiring import _annotate
from tests.annotators.test_reasoning_budget import _ask

TWO = ["you idiot", "have a nice day"]
OPUS = "claude-opus-4-6"


def _claude(srv: FakeLLMServer, model: str = OPUS, **kw: Any) -> AnthropicAnnotator:
    return AnthropicAnnotator(model, api_key=KEY, base_url=srv.anthropic_base_url, **kw)


def _send(srv: FakeLLMServer, body: dict, *, stream: bool = False) -> anthropic.types.Message:
    """``body`` sent as it is by the real SDK (a stream read to its final message)."""

    async def go() -> anthropic.types.Message:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=srv.url, max_retries=0)
        try:
            if not stream:
                return await client.messages.create(**body)
            async with client.messages.stream(**body) as events:
                return await events.get_final_message()
        finally:
            await client.close()

    return asyncio.run(go())


# ---- the request and the reply ----------------------------------------------------------
def test_an_adaptive_request_is_one_the_api_takes_and_its_label_is_read(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = _ask(_claude(server, thinking="adaptive"), schema)
    body = server.requests[0]["body"]
    assert body["thinking"] == {"type": "adaptive"}  # no budget_tokens: Claude decides
    assert body["max_tokens"] == ADAPTIVE_THINKING_ROOM + 300 == 16300
    assert body["tool_choice"] == {"type": "auto"} and "temperature" not in body
    assert (res.outcome, res.label, res.calls) == ("labelled", "toxic", 1)
    (bill,) = server.billed  # the 200 tokens it thought are billed as output
    assert res.output_tokens == bill["output_tokens"] > 200
    # the SDK warns on every enabled request to claude-opus-4-6; adaptive is what it asks for
    assert not [w for w in seen if "deprecated" in str(w.message)]


def test_thinking_room_sets_the_room_and_thinking_past_it_cuts_the_reply(
    schema: LabelSchema,
) -> None:
    ann_kw: dict[str, Any] = {"thinking": "adaptive", "thinking_room": 1000, "max_tokens": 100}
    with FakeLLMServer(thinking_tokens=5000) as srv:
        res = _ask(_claude(srv, **ann_kw), schema)
        assert srv.requests[0]["body"]["max_tokens"] == 1100
    # Claude thought past its room: cut at max_tokens, billed in full, not repaired
    assert (res.outcome, res.output_tokens, res.calls) == ("error", 1100, 1)
    with FakeLLMServer(thinking_tokens=900) as srv:
        assert _ask(_claude(srv, **ann_kw), schema).outcome == "labelled"


def test_a_cut_adaptive_reply_is_not_cached_and_a_larger_room_reuses_the_rest(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    server.add_fault(Fault("cut", match="idiot"))
    db, ds = tmp_path / "c.sqlite", make_dataset(TWO, schema)
    kw: dict[str, Any] = {"cache": db, "policy": fast, "progress": False}
    run = annotate_with_report(ds, [_claude(server, thinking="adaptive")], **kw)
    (fail,) = run.report.failures
    assert fail.outcome == "error" and fail.item_id == "i0"
    assert [b["output_tokens"] for b in server.billed if b["text"] == "you idiot"] == [16300]
    again = annotate_with_report(
        ds, [_claude(server, thinking="adaptive", thinking_room=32000)], **kw
    )
    assert again.report.from_cache == 1 and server.calls == {"you idiot": 2, "have a nice day": 1}
    assert server.requests[-1]["body"]["max_tokens"] == 32300
    with AnnotationCache(db) as cache:
        assert len(cache) == 2


# ---- cache keys ---------------------------------------------------------------------------
OLD_KEYS = {
    None: "78b32c2242ab7defec847a2d2136d08b98e7ced470e439894bce3cc85f5abe1f",
    2048: "b7c828484280bc0b66bc2c2ace6e84a3fc99f18ea92586b951b2b639b23ccb6d",
}
"""key_for(AnthropicAnnotator("claude-opus-4-6", base_url="http://127.0.0.1:1",
thinking_budget=B), "you idiot", schema), computed on the code before adaptive thinking."""


def test_keys_are_unchanged_without_adaptive_and_apart_with_it(schema: LabelSchema) -> None:
    def key(**kw: Any) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the note on enabled thinking for claude-opus-4-6
            ann = AnthropicAnnotator(OPUS, api_key="k", base_url="http://127.0.0.1:1", **kw)
        return key_for(ann, "you idiot", schema)

    assert {b: key(thinking_budget=b) for b in OLD_KEYS} == OLD_KEYS
    assert key(thinking="enabled", thinking_budget=2048) == OLD_KEYS[2048]  # the same request
    adaptive = key(thinking="adaptive")
    assert adaptive not in OLD_KEYS.values()
    # thinking_room only moves where a reply is cut (cut replies are not cached): not keyed
    assert key(thinking="adaptive", thinking_room=4000) == adaptive
    ann = AnthropicAnnotator(OPUS, api_key="k", base_url="http://h", thinking="adaptive")
    assert ann.cache_params() == {"max_tokens": 300, "thinking": "adaptive", "base_url": "http://h"}


# ---- bad combinations, refused by name -------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"thinking": "adaptive", "thinking_budget": 2048},
            'thinking="adaptive" takes no thinking_budget',
        ),
        (
            {"thinking": "adaptive", "temperature": 0.0},
            r'thinking="adaptive"\) takes no temperature',
        ),
        ({"thinking": "enabled"}, 'thinking="enabled" needs a thinking_budget'),
        ({"thinking": "sometimes"}, r"thinking='sometimes': give \"adaptive\""),
        ({"thinking_room": 4000}, "thinking_room is the max_tokens room of adaptive thinking"),
        (
            {"thinking_budget": 2048, "thinking_room": 4000},
            "thinking_budget is the room of enabled",
        ),
        ({"thinking": "adaptive", "thinking_room": 0}, "thinking_room=0: give a whole number"),
        ({"thinking": "adaptive", "thinking_room": 4000.0}, "thinking_room=4000.0: give a whole"),
    ],
    ids=[
        "with-budget",
        "with-temperature",
        "enabled-no-budget",
        "unknown",
        "room-alone",
        "room-with-budget",
        "room-0",
        "room-float",
    ],
)
def test_bad_combinations_are_refused_by_name(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"anthropic:{OPUS}: .*{message}"):
        AnthropicAnnotator(OPUS, api_key="k", **kw)


def test_adaptive_on_openai_or_with_a_temperature_is_refused_by_make_annotator() -> None:
    with pytest.raises(
        ConfigError, match=r"openai:o4-mini: thinking is Claude's.*remove thinking "
    ):
        make_annotator("openai:o4-mini", need_key=False, thinking="adaptive")
    with pytest.raises(ConfigError, match=r"remove thinking and thinking_room from"):
        make_annotator("openai:gpt-4o", need_key=False, thinking="adaptive", thinking_room=9)
    with pytest.raises(ConfigError, match=r"takes no temperature"):
        make_annotator(f"anthropic:{OPUS}", need_key=False, thinking="adaptive", temperature=1.0)
    ann = make_annotator(
        f"anthropic:{OPUS}", need_key=False, thinking="adaptive", thinking_room=8000
    )
    assert ann.request_max_tokens == 8300  # type: ignore[attr-defined]


# ---- the note that points enabled thinking on claude-opus-4-6 to adaptive ---------------
def test_enabled_thinking_on_a_model_the_sdk_deprecates_it_for_gets_a_note_when_built() -> None:
    def notes(model: str, **kw: Any) -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", ResourceWarning)  # another test's socket, collected
            AnthropicAnnotator(model, api_key="k", **kw)
        return [str(w.message) for w in seen]

    (note,) = notes(OPUS, thinking_budget=2048)
    assert f"anthropic:{OPUS}: thinking_budget=2048 sends extended thinking as " in note
    assert 'thinking="adaptive" (in place of thinking_budget' in note
    assert notes("claude-sonnet-4-5", thinking_budget=2048) == []  # not deprecated there
    assert notes(OPUS, thinking="adaptive") == notes(OPUS) == []


# ---- the fake API: what the SDK says of adaptive ------------------------------------------
@pytest.mark.parametrize(
    ("thinking", "message"),
    [
        (
            {"type": "adaptive", "budget_tokens": 2048},
            "thinking.adaptive.budget_tokens: Extra inputs",
        ),
        ({"type": "adaptive", "display": "full"}, "thinking.adaptive.display: Input should be"),
    ],
    ids=["budget", "display"],
)
def test_the_fake_refuses_an_adaptive_request_the_sdk_types_rule_out(
    thinking: dict, message: str, server: FakeLLMServer, schema: LabelSchema
) -> None:
    body = _claude(server, thinking="adaptive").request_body(
        build_prompt("you idiot", schema), schema
    )
    with pytest.raises(anthropic.BadRequestError, match=re.escape(message)):
        _send(server, {**body, "thinking": thinking})
    assert server.paid.total() == 0


def test_the_fake_answers_adaptive_with_a_thinking_block_streamed_or_not_display_omitted(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    body = _claude(server, thinking="adaptive").request_body(
        build_prompt("you idiot", schema), schema
    )
    streamed = _send(server, body, stream=True)
    assert [b.type for b in streamed.content] == ["thinking", "text"]
    assert parse_message(streamed.model_dump(mode="json")).text is not None
    omitted = _send(server, {**body, "thinking": {"type": "adaptive", "display": "omitted"}})
    block = omitted.content[0]
    assert block.type == "thinking" and block.thinking == "" and block.signature


# ---- config, CLI, dry run, batch -----------------------------------------------------------
def test_config_takes_thinking_and_thinking_room(tmp_path: Path) -> None:
    cfg = tmp_path / "team.toml"
    entry = f'[[annotators]]\nspec = "anthropic:{OPUS}"\n'
    cfg.write_text(entry + 'thinking = "adaptive"\nthinking_room = 8000\n', encoding="utf-8")
    (a,) = load_config(cfg).annotators
    assert (a.thinking, a.thinking_room) == ("adaptive", 8000)
    cfg.write_text(entry + 'thinking = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"annotators\.0\.thinking: Input should be 'adaptive'"):
        load_config(cfg)
    cfg.write_text(entry + 'thinking = "adaptive"\nthinking_room = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"annotators\.0\.thinking_room: .*greater than or equal"):
        load_config(cfg)


def test_cli_takes_adaptive_thinking_from_the_config(tmp_path: Path) -> None:
    cfg, data = tmp_path / "team.toml", tmp_path / "in.csv"
    data.write_text("question\nhello there\n", encoding="utf-8")
    args = ["--data", str(data), "--labels", "safe,toxic", "--config", str(cfg), "--out",
            str(tmp_path / "o.jsonl"), "--dry-run"]  # fmt: skip
    adaptive = f'[[annotators]]\nspec = "anthropic:{OPUS}"\nthinking = "adaptive"\n'
    cfg.write_text(adaptive)
    r = _annotate(args)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout.split("\n", 1)[1])
    assert body["thinking"] == {"type": "adaptive"} and body["max_tokens"] == 16300
    assert body["tool_choice"] == {"type": "auto"}
    cfg.write_text('[[annotators]]\nspec = "openai:o4-mini"\nthinking = "adaptive"\n')
    r = _annotate(args)
    assert r.returncode == 2 and "thinking is Claude's" in r.stderr
    cfg.write_text(adaptive + "thinking_budget = 2048\n")
    r = _annotate(args)
    assert r.returncode == 2 and 'thinking="adaptive" takes no thinking_budget' in r.stderr


def test_a_dry_run_shows_the_adaptive_request(schema: LabelSchema) -> None:
    ann = make_annotator(f"anthropic:{OPUS}", need_key=False, thinking="adaptive")
    run = annotate_with_report(make_dataset(["a"], schema), [ann], dry_run=True, progress=False)
    sample = run.report.sample_requests["anthropic"]
    assert sample["thinking"] == {"type": "adaptive"} and sample["max_tokens"] == 16300
    assert sample["tool_choice"] == {"type": "auto"} and sample["tools"][0]["name"] == TOOL_NAME


def test_batch_requests_carry_adaptive_thinking(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    server.add_fault(Fault("cut", match="idiot"))
    run = batch_annotate_with_report(
        make_dataset(TWO, schema),
        [_claude(server, thinking="adaptive", thinking_room=2000)],
        poll_interval=0.01,
        policy=fast,
        cache=tmp_path / "c.sqlite",
    )
    assert run.report.outcomes[f"anthropic:{OPUS}"]["labelled"] == 1
    (fail,) = run.report.failures
    assert fail.outcome == "error" and fail.item_id == "i0"
    billed = {b["text"]: b["output_tokens"] for b in server.billed if b["batch"]}
    assert billed["you idiot"] == 2300 and billed["have a nice day"] > 200  # it thought
    assert server.calls.total() == 0  # no live repair of the cut one
