"""The shipped fake server itself: streaming for both SDKs, handler outcomes, errors."""

from __future__ import annotations

import json

import pytest

from annotators import AnthropicAnnotator, OpenAIAnnotator, build_prompt
from annotators.testing import FakeLLMServer, FakeReply, Fault, Refuse
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY


@pytest.mark.asyncio
async def test_openai_streaming_with_the_official_sdk(server: FakeLLMServer,
                                                      schema: LabelSchema) -> None:
    ann = OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)
    client = ann.batch_client()
    body = ann.request_body(build_prompt("you idiot", schema), schema)
    stream = await client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True})
    parts, usage, finish = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    await ann.aclose()
    assert json.loads("".join(parts))["label"] == "toxic"
    assert finish == "stop" and usage is not None and usage.prompt_tokens > 0
    assert server.calls["you idiot"] == 1


@pytest.mark.asyncio
async def test_anthropic_streaming_with_the_official_sdk(server: FakeLLMServer,
                                                         schema: LabelSchema) -> None:
    ann = AnthropicAnnotator("claude-haiku-4-5", api_key=KEY,
                             base_url=server.anthropic_base_url)
    client = ann.batch_client()
    body = ann.request_body(build_prompt("you idiot", schema), schema)
    async with client.messages.stream(**body) as stream:
        message = await stream.get_final_message()
    await ann.aclose()
    (block,) = message.content
    assert block.type == "tool_use" and block.input["label"] == "toxic"
    assert message.stop_reason == "tool_use" and message.usage.output_tokens > 1


@pytest.mark.asyncio
async def test_streamed_refusal(schema: LabelSchema) -> None:
    with FakeLLMServer(lambda text: Refuse("no")) as srv:
        ann = OpenAIAnnotator("m", api_key=KEY, base_url=srv.openai_base_url)
        body = ann.request_body(build_prompt("x", schema), schema)
        refusal = ""
        async for chunk in await ann.batch_client().chat.completions.create(**body, stream=True):
            for choice in chunk.choices:
                refusal += choice.delta.refusal or ""
        await ann.aclose()
    assert refusal == "no"


@pytest.mark.asyncio
async def test_handler_outcomes_and_default_label(schema: LabelSchema) -> None:
    from annotators import label_text

    replies = {"a": FakeReply(), "b": FakeReply("toxic", "r", 0.3), "c": '{"nope": 1}'}
    with FakeLLMServer(lambda text: replies[text]) as srv:
        ann = OpenAIAnnotator("m", api_key=KEY, base_url=srv.openai_base_url)
        a = await label_text(ann, "a", schema)
        b = await label_text(ann, "b", schema)
        c = await label_text(ann, "c", schema)
        await ann.aclose()
    assert a.label == "safe"  # first class the request allows
    assert (b.label, b.confidence) == ("toxic", 0.3)
    assert c.outcome == "invalid" and c.raw == '{"nope": 1}'


def test_rate_limit_fault_sends_retry_after(server: FakeLLMServer) -> None:
    import urllib.error
    import urllib.request

    server.add_fault(Fault("rate_limit", retry_after=7))
    req = urllib.request.Request(
        f"{server.openai_base_url}/chat/completions", method="POST",
        data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req)
    assert exc.value.code == 429 and exc.value.headers["retry-after"] == "7"
    assert json.load(exc.value)["error"]["type"] == "rate_limit_error"
    assert server.calls["hi"] == 1 and server.paid["hi"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_handler_default_answers_the_first_allowed_class(provider: str) -> None:
    from annotators import label_text

    # classes in an order where the first is not "safe": the default handler's label is
    # whatever the request enumerates first, through either API
    schema = LabelSchema(classes=("toxic", "safe", "spam"))
    with FakeLLMServer() as srv:
        if provider == "openai":
            ann = OpenAIAnnotator("m", api_key=KEY, base_url=srv.openai_base_url)
        else:
            ann = AnthropicAnnotator("m", api_key=KEY, base_url=srv.anthropic_base_url)
        res = await label_text(ann, "have a nice day", schema)
        await ann.aclose()
    assert (res.outcome, res.label) == ("labelled", "toxic")
    assert FakeReply().label is None and srv.paid["have a nice day"] == 1
