"""``guardrail-dro serve --anthropic-upstream``: the options' errors (CliRunner), and the
real command in a subprocess guarding the shipped fake Anthropic server, called with the
real ``anthropic`` SDK: its answer is what ``guard.wrap`` gives in process, and the
upstream's key appears nowhere in what the command prints (its access log included)."""

from __future__ import annotations

import os
from pathlib import Path

import anthropic
import pytest
from typer.testing import CliRunner

from annotators.testing import FakeLLMServer
from guardrail_dro.cli.app import app
from guardrail_dro.serve.guard import Guard

from .serve_process import first_call, serve_process

UPSTREAM_KEY = "sk-ant-upstream-SECRET-cli-89"
SERVER_KEY = "server-key-cli-12"
UP, UP_KEY_ENV = "--anthropic-upstream", "--anthropic-upstream-key-env"


def test_help_teaches_the_messages_proxy() -> None:
    res = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for part in ("/v1/messages", "--anthropic-upstream", "--anthropic-upstream-key-env"):
        assert part in res.output


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            ["--anthropic-upstream", "http://127.0.0.1:9"],
            "--anthropic-upstream needs --anthropic-upstream-key-env",
        ),
        (
            [UP, "http://127.0.0.1:9", UP_KEY_ENV, "GUARDRAIL_UNSET_X"],
            "--anthropic-upstream-key-env GUARDRAIL_UNSET_X: the variable is unset or empty",
        ),
        (
            ["--anthropic-upstream", "127.0.0.1:9", "--anthropic-upstream-key-env", "UP_KEY"],
            "an http(s) URL",
        ),
        (
            [UP, "https://api.anthropic.com/v1", UP_KEY_ENV, "UP_KEY"],
            "without /v1",
        ),
        (["--anthropic-upstream-key-env", "UP_KEY"], "give --anthropic-upstream URL too"),
    ],
    ids=["no-key-env", "unset", "not-a-url", "with-v1", "key-without-upstream"],
)
def test_bad_messages_proxy_options_are_named(
    guard_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], match: str
) -> None:
    monkeypatch.setenv("UP_KEY", UPSTREAM_KEY)
    res = CliRunner().invoke(
        app, ["serve", "--guard", str(guard_dir), *args], env={"COLUMNS": "200"}
    )
    assert res.exit_code != 0
    message = f"{res.exception}\n{res.output}"
    assert match in message, message
    assert UPSTREAM_KEY not in message


#: Texts to pick a prompt and a reply from that the tiny (meaningless) model allows.
SAYINGS = (
    "hello",
    "what is the history of the printing press",
    "Flour, water, salt, yeast.",
    "people from that town are all idiots",
    "thanks",
)


def test_the_command_guards_messages(guard_dir: Path, guard: Guard) -> None:
    allowed = [t for t in SAYINGS if guard.check(t).allowed]
    assert allowed, "the tiny model must allow one of SAYINGS"
    messages = [{"role": "user", "content": allowed[0]}]
    with FakeLLMServer(lambda text: allowed[-1]) as fake:
        env = {**os.environ, "UP_KEY": UPSTREAM_KEY, "SERVER_KEY": SERVER_KEY}
        args = ["--guard", str(guard_dir), "--api-key-env", "SERVER_KEY"]
        args += ["--anthropic-upstream", fake.anthropic_base_url]
        args += ["--anthropic-upstream-key-env", "UP_KEY", "--log-level", "info"]
        with serve_process(args, env, "/v1/messages") as served:
            client = anthropic.Anthropic(base_url=served.url, api_key=SERVER_KEY, max_retries=0)
            got = first_call(
                lambda: client.messages.create(model="m", max_tokens=50, messages=messages),
                anthropic.APIConnectionError,
            )
            local = guard.wrap(anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="k"))
            want = local.messages.create(model="m", max_tokens=50, messages=messages)
            assert got.content[0].text == allowed[-1]  # the upstream's answer
            assert got.content == want.content and got.stop_reason == want.stop_reason
            assert fake.received[0]["authorization"] == f"Bearer {UPSTREAM_KEY}"
            assert "/v1/chat/completions" not in "".join(served.lines)  # the OpenAI proxy is off
    printed = served.output
    assert "POST /v1/messages" in printed  # the access log was on
    assert UPSTREAM_KEY not in printed
