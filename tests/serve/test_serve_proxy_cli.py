"""``guardrail-dro serve --upstream``: the options' errors (CliRunner), and the real
command in a subprocess guarding the shipped fake OpenAI server, called with the real
``openai`` SDK: its answer is what ``guard.wrap`` gives in process, and the upstream's
key appears nowhere in what the command prints (its access log included)."""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from annotators.testing import FakeLLMServer
from guardrail_dro.cli.app import app
from guardrail_dro.serve.guard import Guard

from .serve_process import first_call, serve_process

UPSTREAM_KEY = "sk-upstream-SECRET-cli-89"


def test_help_teaches_the_proxy() -> None:
    res = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for part in ("/v1/chat/completions", "--upstream", "--upstream-key-env", "base_url"):
        assert part in res.output


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--upstream", "http://127.0.0.1:9/v1"], "--upstream needs --upstream-key-env"),
        (
            ["--upstream", "http://127.0.0.1:9/v1", "--upstream-key-env", "GUARDRAIL_UNSET_X"],
            "--upstream-key-env GUARDRAIL_UNSET_X: the variable is unset or empty",
        ),
        (["--upstream", "127.0.0.1:9", "--upstream-key-env", "UP_KEY"], "an http(s) URL"),
        (["--upstream-key-env", "UP_KEY"], "give --upstream URL too"),
    ],
    ids=["no-key-env", "unset", "not-a-url", "key-without-upstream"],
)
def test_bad_proxy_options_are_named(
    guard_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], match: str
) -> None:
    monkeypatch.setenv("UP_KEY", UPSTREAM_KEY)
    res = CliRunner().invoke(app, ["serve", "--guard", str(guard_dir), *args])
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


def test_the_command_guards_chat_completions(guard_dir: Path, guard: Guard) -> None:
    allowed = [t for t in SAYINGS if guard.check(t).allowed]
    assert allowed, "the tiny model must allow one of SAYINGS"
    messages = [{"role": "user", "content": allowed[0]}]
    with FakeLLMServer(lambda text: allowed[-1]) as fake:
        env = {**os.environ, "UP_KEY": UPSTREAM_KEY}
        args = ["--guard", str(guard_dir), "--upstream", fake.openai_base_url]
        args += ["--upstream-key-env", "UP_KEY", "--log-level", "info"]
        with serve_process(args, env, "/v1/chat/completions") as served:
            client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0)
            got = first_call(
                lambda: client.chat.completions.create(model="m", messages=messages),
                openai.APIConnectionError,
            )
            local = guard.wrap(openai.OpenAI(base_url=fake.openai_base_url, api_key="k"))
            want = local.chat.completions.create(model="m", messages=messages)
            assert got.choices[0].message.content == allowed[-1]  # the upstream's answer
            assert got.choices[0].message == want.choices[0].message
            assert fake.received[0]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    printed = served.output
    assert "POST /v1/chat/completions" in printed  # the access log was on
    assert UPSTREAM_KEY not in printed
