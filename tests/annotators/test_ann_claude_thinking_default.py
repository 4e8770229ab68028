"""Claude models that think by default (``CLAUDE_RULES``): the default request is one the
API takes (no forced tool while thinking is on, room for the thinking in ``max_tokens``),
a ``thinking_budget`` a model refuses is refused before any request, and the fake server
answers the documented 400s. Real anthropic SDK over HTTP to the fake server.
"""

from __future__ import annotations

import anthropic
import pytest

from annotators import AnthropicAnnotator
from annotators.anthropic_annotator import ADAPTIVE_THINKING_ROOM, TOOL_NAME
from annotators.prompts import build_prompt
from annotators.retry import RetryPolicy
from annotators.specs import make_annotator
from annotators.testing import FakeLLMServer
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from tests.annotators.ann_helpers import KEY
from tests.annotators.test_ann_claude_thinking_adaptive import _send
from tests.annotators.test_reasoning_budget import _ask

THINKING_BY_DEFAULT = ["claude-opus-5", "claude-sonnet-5", "claude-sonnet-5-5",
                       "claude-opus-5-5", "claude-fable-5-1"]
NO_BUDGET = ["claude-sonnet-5", "claude-sonnet-5-5", "claude-opus-5-5", "claude-fable-5-1"]
FORCED = "Thinking may not be enabled when tool_choice forces tool use."


@pytest.mark.parametrize("model", THINKING_BY_DEFAULT)
def test_the_default_request_labels_on_a_model_that_thinks_by_default(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, model: str
) -> None:
    ann = AnthropicAnnotator(model, api_key=KEY, base_url=server.anthropic_base_url)
    res = _ask(ann, schema, fast)
    assert (res.outcome, res.label) == ("labelled", "toxic"), res.error
    body = server.requests[-1]["body"]
    assert body["tool_choice"] == {"type": "auto"}  # a forced tool is a 400 while thinking
    assert body["thinking"] == {"type": "adaptive"}  # the docs' equivalent of the default
    assert body["max_tokens"] == 300 + ADAPTIVE_THINKING_ROOM  # thinking counts toward it
    assert ann.cache_params()["thinking"] == "adaptive"


def test_thinking_room_is_taken_without_naming_adaptive(schema: LabelSchema) -> None:
    ann = make_annotator("anthropic:claude-opus-5-5", need_key=False, thinking_room=2000)
    assert ann.request_body(build_prompt("hi", schema), schema)["max_tokens"] == 2300


def test_a_model_that_thinks_only_when_asked_keeps_its_forced_tool(schema: LabelSchema) -> None:
    ann = AnthropicAnnotator("claude-sonnet-4-5", api_key=KEY)
    body = ann.request_body(build_prompt("hi", schema), schema)
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert "thinking" not in body and body["max_tokens"] == 300
    assert "thinking" not in ann.cache_params()


@pytest.mark.parametrize("model", NO_BUDGET)
def test_a_budget_the_model_refuses_is_refused_before_any_request(model: str) -> None:
    with pytest.raises(ConfigError, match=f'{model} takes no thinking_budget.*"adaptive"'):
        make_annotator(f"anthropic:{model}", need_key=False, thinking_budget=2048)


def test_opus_5_still_takes_a_budget() -> None:  # documented only as thinking by default
    ann = make_annotator("anthropic:claude-opus-5", need_key=False, thinking_budget=2048)
    assert ann.thinking == "enabled"


# ---- the fake server knows the documented rules -----------------------------------------
def _body(model: str, **extra: object) -> dict:
    return {"model": model, "max_tokens": 4096,
            "messages": [{"role": "user", "content": "Text: hello"}],
            "tools": [{"name": TOOL_NAME, "input_schema": {"type": "object"}}], **extra}


def test_fake_refuses_a_forced_tool_while_thinking_is_on_by_default(
    server: FakeLLMServer,
) -> None:
    forced = {"type": "tool", "name": TOOL_NAME}
    for body in (_body("claude-opus-5-5", tool_choice=forced),
                 _body("claude-sonnet-4-6", tool_choice=forced, thinking={"type": "adaptive"})):
        with pytest.raises(anthropic.BadRequestError) as info:
            _send(server, body)
        assert info.value.status_code == 400
        assert info.value.body == {"type": "error", "error": {  # the API's error shape
            "type": "invalid_request_error", "message": FORCED}}
    assert _send(server, _body("claude-sonnet-4-6", tool_choice=forced)).stop_reason == "tool_use"


def test_fake_refuses_enabled_thinking_where_the_docs_say_400(server: FakeLLMServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        _send(server, _body("claude-opus-5-5",
                            thinking={"type": "enabled", "budget_tokens": 2048}))
    assert info.value.body["error"]["message"].startswith(
        '"thinking.type.enabled" is not supported for this model.')
