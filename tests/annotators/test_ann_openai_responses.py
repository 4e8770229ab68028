"""``OpenAIAnnotator(api="responses")``: labelling through the Responses API
(``responses.create``, ``POST /v1/responses``), for models OpenAI serves only there, which
answered every chat completion with an error. Real SDK, live and batch, against the fake
server; the config file and ``make_annotator`` path too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from annotators import OpenAIAnnotator
from annotators.base import AnnotationResult, Usage
from annotators.batch import batch_annotate_with_report
from annotators.cache import key_for
from annotators.config import load_config
from annotators.labelling import label_text
from annotators.openai_annotator import RESPONSES_ONLY
from annotators.pricing import cost_of
from annotators.prompts import build_prompt
from annotators.retry import RetryPolicy
from annotators.runner import annotate_with_report
from annotators.specs import make_annotator
from annotators.testing import FakeLLMServer, Fault
from annotators.tokens import counter_for, request_tokens
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from tests.annotators.ann_helpers import EXPECTED, KEY, TEXTS, make_dataset


def _label(ann: OpenAIAnnotator, text: str, schema: LabelSchema,
           policy: RetryPolicy) -> AnnotationResult:
    async def go() -> AnnotationResult:
        try:
            return await label_text(ann, text, schema, policy=policy)
        finally:
            await ann.aclose()

    return asyncio.run(go())


def _ann(server: FakeLLMServer, model: str = "gpt-4o-mini", **kw: object) -> OpenAIAnnotator:
    return OpenAIAnnotator(model, api_key=KEY, base_url=server.openai_base_url,
                           **kw)  # type: ignore[arg-type]


def test_labels_through_the_responses_api(server: FakeLLMServer, schema: LabelSchema,
                                          fast: RetryPolicy) -> None:
    res = _label(_ann(server, api="responses"), "you idiot", schema, fast)
    assert (res.outcome, res.label) == ("labelled", "toxic")
    assert server.endpoints == {"responses": 1}
    body = server.requests[0]["body"]
    assert "messages" not in body and "response_format" not in body
    assert body["instructions"]  # the system prompt
    assert body["input"][-1]["role"] == "user" and "you idiot" in body["input"][-1]["content"]
    fmt = body["text"]["format"]
    assert (fmt["type"], fmt["name"], fmt["strict"]) == ("json_schema", "label_reply", True)
    assert fmt["schema"]["properties"]["label"]["enum"] == ["safe", "toxic"]
    assert body["max_output_tokens"] == 300 and body["temperature"] == 0.0


def test_the_same_schema_and_prompt_as_chat(server: FakeLLMServer, schema: LabelSchema) -> None:
    prompt = build_prompt("you idiot", schema)
    chat = _ann(server, api="chat").request_body(prompt, schema)
    resp = _ann(server, api="responses").request_body(prompt, schema)
    assert resp["text"]["format"]["schema"] == chat["response_format"]["json_schema"]["schema"]
    assert [{"role": "system", "content": resp["instructions"]}, *resp["input"]] == \
        chat["messages"]
    assert resp["store"] is False  # a label needs no response stored upstream
    # the dry run prices both requests alike (instructions / input / text were not
    # counted: a Responses request was 3 tokens)
    counter = counter_for("openai", "gpt-4o-mini")
    chat_n, resp_n = request_tokens(chat, counter), request_tokens(resp, counter)
    assert resp_n > 50 and abs(resp_n - chat_n) <= 0.1 * chat_n


def test_a_reasoning_model_sends_effort_and_no_temperature(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    res = _label(_ann(server, "o4-mini", api="responses", reasoning_effort="low"),
                 "you idiot", schema, fast)
    assert res.outcome == "labelled"
    body = server.requests[0]["body"]
    assert body["reasoning"] == {"effort": "low"} and "temperature" not in body
    assert body["max_output_tokens"] == 4000 and "reasoning_effort" not in body


def test_a_refusal_is_a_refusal(server: FakeLLMServer, schema: LabelSchema,
                                fast: RetryPolicy) -> None:
    res = _label(_ann(server, api="responses"), "how do I build a bomb", schema, fast)
    assert res.outcome == "refused" and res.label is None
    assert server.calls["how do I build a bomb"] == 1


def test_an_incomplete_reply_at_max_output_tokens_is_a_cut_reply(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    server.add_fault(Fault("cut"))
    res = _label(_ann(server, api="responses"), "you idiot", schema, fast)
    assert res.outcome == "error" and not res.cacheable
    assert "reply cut at the 300-token budget" in (res.error or "")
    assert server.calls["you idiot"] == 1  # named, not repaired
    assert res.output_tokens == 300  # billed all the same


def test_usage_and_cost_are_the_responses_usage(server: FakeLLMServer, schema: LabelSchema,
                                                fast: RetryPolicy, tmp_path: Path) -> None:
    model = next(iter(RESPONSES_ONLY))
    run = annotate_with_report(make_dataset(TEXTS[:2], schema), [_ann(server, model)],
                               cache=tmp_path / "c.sqlite", policy=fast, progress=False)
    billed = Usage(sum(b["input_tokens"] for b in server.billed),
                   sum(b["output_tokens"] for b in server.billed))
    assert billed.input_tokens > 0 and run.report.usage == billed
    assert run.report.cost == pytest.approx(cost_of(model, billed))
    assert run.report.cost is not None and run.report.cost > 0


def test_cache_key_unchanged_for_chat_and_apart_for_responses(schema: LabelSchema) -> None:
    chat = OpenAIAnnotator("gpt-4o-mini", api_key=KEY)
    assert chat.cache_params() == {"temperature": 0.0, "max_tokens": 300}
    # the key chat caches were written under before the api option existed
    assert key_for(chat, "you idiot", schema) == \
        key_for(OpenAIAnnotator("gpt-4o-mini", api_key=KEY, api="chat"), "you idiot", schema)
    resp = OpenAIAnnotator("gpt-4o-mini", api_key=KEY, api="responses")
    assert resp.cache_params() == {"temperature": 0.0, "max_tokens": 300, "api": "responses"}
    assert key_for(resp, "you idiot", schema) != key_for(chat, "you idiot", schema)


def test_auto_picks_responses_for_a_documented_responses_only_model(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    assert "codex-mini-latest" in RESPONSES_ONLY
    assert RESPONSES_ONLY["codex-mini-latest"].startswith("https://developers.openai.com/")
    ann = _ann(server, "codex-mini-latest")
    assert ann.api == "responses" and _ann(server).api == "chat"
    res = _label(ann, "you idiot", schema, fast)
    assert (res.outcome, res.label) == ("labelled", "toxic")
    assert server.endpoints == {"responses": 1}
    assert "temperature" not in server.requests[0]["body"]  # a reasoning model (o4-mini's)


def test_batch_jobs_go_to_v1_responses(server: FakeLLMServer, schema: LabelSchema,
                                       fast: RetryPolicy) -> None:
    ann = _ann(server, api="responses")
    run = batch_annotate_with_report(make_dataset(TEXTS, schema), [ann], poll_interval=0.01,
                                     policy=fast, progress=False)
    got = {it.text: a.label for it in run.dataset.items for a in it.annotations}
    assert got == EXPECTED
    assert run.report.outcomes[ann.name]["refused"] == 1
    assert sum(server.batch_paid.values()) == len(TEXTS) and not server.paid
    (job,) = server.batches.list_page("openai", {})["data"]
    assert job["endpoint"] == "/v1/responses"
    assert run.report.usage.input_tokens > 0


def test_a_cut_batch_result_is_a_cut_reply(server: FakeLLMServer, schema: LabelSchema,
                                           fast: RetryPolicy) -> None:
    server.add_fault(Fault("cut", match="idiot"))
    ann = _ann(server, api="responses")
    run = batch_annotate_with_report(make_dataset(["you idiot"], schema), [ann],
                                     poll_interval=0.01, policy=fast, progress=False)
    (failure,) = run.report.failures
    assert "reply cut at the 300-token budget" in (failure.error or "")


def test_the_config_file_and_make_annotator_take_api(tmp_path: Path) -> None:
    cfg = tmp_path / "team.toml"
    cfg.write_text('[[annotators]]\nspec = "openai:gpt-4o-mini"\napi = "responses"\n',
                   encoding="utf-8")
    (entry,) = [a.model_dump() for a in load_config(cfg).annotators]  # as `annotate` does
    ann = make_annotator(need_key=False, **entry)
    assert isinstance(ann, OpenAIAnnotator) and ann.api == "responses"
    auto = make_annotator("openai:codex-mini-latest", need_key=False)
    assert isinstance(auto, OpenAIAnnotator) and auto.api == "responses"
    with pytest.raises(ConfigError, match="remove api"):
        make_annotator("anthropic:claude-sonnet-4-5", need_key=False, api="responses")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[annotators]]\nspec = "openai:gpt-4o-mini"\napi = "completions"\n',
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="api"):
        load_config(bad)
