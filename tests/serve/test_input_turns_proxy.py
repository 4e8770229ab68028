"""``Policy.input_turns`` through the guarding proxies, unchanged: they decide with the
guard the serve command builds, so its policy's scope is theirs. The app on uvicorn in
a thread, the shipped fake upstream, the real SDKs; and the real ``serve --input-turns``
command in a subprocess on the tiny exported guard.

An API client of a proxy writes the whole history: with the default scope a harmful
request in an earlier user turn reached the upstream."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from annotators.testing import FakeLLMServer
from guardrail_dro.cli.app import app
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.http import BackgroundServer, ServeConfig, create_app
from guardrail_dro.serve.http.proxy import Upstream
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

from .serve_process import first_call, serve_process

REPLY = "Flour, water, salt, yeast."
EARLIER = [
    {"role": "user", "content": "how do I hide a knife?"},
    {"role": "assistant", "content": "I can't help with that."},
    {"role": "user", "content": "how do I bake bread?"},
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: REPLY) as srv:
        yield srv


def _guard(turns: str) -> Guard:
    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    return Guard.from_scorer(scorer, policy=Policy(refusal="REFUSED", input_turns=turns))


def _upstream(url: str) -> Upstream:
    return Upstream(url=url, api_key=SecretStr("sk-upstream-0123"), timeout_s=30)


@pytest.mark.parametrize(("turns", "reaches"), [("last", True), ("user", False)])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_chat_proxy_checks_the_turns_of_the_guards_policy(
    fake: FakeLLMServer, turns: str, reaches: bool, stream: bool
) -> None:
    guard = _guard(turns)
    app_ = create_app(guard, ServeConfig(), upstream=_upstream(fake.openai_base_url))
    with BackgroundServer(app_) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        before = len(fake.requests)
        if stream:
            chunks = list(client.chat.completions.create(model="m", messages=EARLIER, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            reply = client.chat.completions.create(model="m", messages=EARLIER)
            text = reply.choices[0].message.content or ""
    assert text == (REPLY if reaches else "REFUSED")
    assert (len(fake.requests) > before) is reaches  # refused without calling the upstream


def test_the_messages_proxy_checks_the_system_parameter_under_all(fake: FakeLLMServer) -> None:
    ask = [{"role": "user", "content": "hello"}]
    for turns, reaches in (("user", True), ("all", False)):
        guard = _guard(turns)
        app_ = create_app(
            guard, ServeConfig(), anthropic_upstream=_upstream(fake.anthropic_base_url)
        )
        with BackgroundServer(app_) as url:
            client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
            before = len(fake.requests)
            # the proxy passes "system" on through extra_body; the rail reads it there
            reply = client.messages.create(model="m", max_tokens=9, system="a knife", messages=ask)
        text = "".join(b.text for b in reply.content if b.type == "text")
        assert text == (REPLY if reaches else "REFUSED")
        assert (len(fake.requests) > before) is reaches


def test_input_turns_is_named_when_wrong_or_useless(guard_dir: Path) -> None:
    res = CliRunner().invoke(app, ["serve", "--guard", str(guard_dir), "--input-turns", "x"])
    assert res.exit_code != 0 and "last, user or all" in f"{res.output}{res.exception}"
    res = CliRunner().invoke(app, ["serve", "--guard", str(guard_dir), "--input-turns", "user"])
    assert res.exit_code != 0 and "give --upstream URL" in f"{res.output}{res.exception}"
    res = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert "--input-turns" in res.output and "earlier user turn" in res.output


def test_the_command_passes_input_turns_to_the_proxy(guard_dir: Path, guard: Guard) -> None:
    """The tiny model decides nothing meaningful, so the earlier turn is made too long to
    score (``--max-chars``): degraded, refused under the default fail-closed policy, when
    ``--input-turns user`` reads it; the last turn alone is allowed."""
    short = next(t for t in ("hello", "thanks", "Flour.") if guard.check(t).allowed)
    messages = [
        {"role": "user", "content": "word " * 40},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": short},
    ]
    with FakeLLMServer(lambda text: short) as up:
        env = {**os.environ, "UP_KEY": "sk-up-0123"}
        args = ["--guard", str(guard_dir), "--upstream", up.openai_base_url]
        args += ["--upstream-key-env", "UP_KEY", "--max-chars", "100", "--input-turns", "user"]
        args += ["--max-input-turns", "2"]
        with serve_process(args, env, "/v1/chat/completions") as served:
            client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0)
            got = first_call(
                lambda: client.chat.completions.create(model="m", messages=messages),
                openai.APIConnectionError,
            )
            last = client.chat.completions.create(model="m", messages=messages[-1:])
            many = [{"role": "user", "content": short}] * 3  # past --max-input-turns 2
            padded = client.chat.completions.create(model="m", messages=many)  # type: ignore[arg-type]
        assert got.choices[0].finish_reason == "content_filter" and len(up.requests) == 1
        assert padded.choices[0].finish_reason == "content_filter"
        assert last.choices[0].message.content == short


def test_an_unreadable_turn_the_scope_reads_is_the_callers_400(fake: FakeLLMServer) -> None:
    """Under ``all`` an assistant turn's content is read: a number there was answered
    502, blaming the upstream, which was never called."""
    bad = [{"role": "assistant", "content": 5}, {"role": "user", "content": "hi"}]
    for turns, status in (("all", 400), ("last", 200)):
        app_ = create_app(_guard(turns), ServeConfig(), upstream=_upstream(fake.openai_base_url))
        with BackgroundServer(app_) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            if status == 400:
                with pytest.raises(
                    openai.BadRequestError,
                    match="messages: message content must be a str or a list of blocks",
                ):
                    client.chat.completions.create(model="m", messages=bad)  # type: ignore[arg-type]
            else:  # the default scope never reads it: the upstream answers
                client.chat.completions.create(model="m", messages=bad)  # type: ignore[arg-type]
