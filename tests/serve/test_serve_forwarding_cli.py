"""``guardrail-dro serve --forward-header / --forward-query``: the help teaches them, the
options' errors name them (CliRunner), and the real command in a subprocess forwards what
they name from a real ``openai`` SDK caller to the fake upstream."""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from guardrail_dro.cli.app import app
from guardrail_dro.serve.guard import Guard

from .forwarding_helpers import RecordingFake
from .serve_process import first_call, serve_process

UPSTREAM_KEY = "sk-upstream-SECRET-fwd-31"
UPSTREAMS = {
    "openai": ["--upstream", "http://127.0.0.1:9/v1", "--upstream-key-env", "UP_KEY"],
    "anthropic": [
        "--anthropic-upstream",
        "http://127.0.0.1:9",
        "--anthropic-upstream-key-env",
        "UP_KEY",
    ],
}


def test_help_teaches_forwarding() -> None:
    res = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for part in ("--forward-header", "--forward-query", "HTTP-Referer", "X-Title", "api-version"):
        assert part in res.output, part


NEVER = "--forward-header {}: never forwarded, "


@pytest.mark.parametrize("proxy", UPSTREAMS)
@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--forward-header", "Authorization"], NEVER.format("Authorization") + "a credential"),
        (["--forward-header", "x-api-key"], NEVER.format("x-api-key") + "a credential"),
        (["--forward-header", "X-Title", "--forward-header", "Host"], NEVER.format("Host")),
        (["--forward-header", "Transfer-Encoding"], NEVER.format("Transfer-Encoding") + "hop"),
        (["--forward-header", "Anthropic-Version"], NEVER.format("Anthropic-Version")),
        (["--forward-header", "X Title"], "give a header name"),
        (["--forward-query", "a=b"], "--forward-query 'a=b': give one query parameter's name"),
    ],
    ids=["authorization", "x-api-key", "host", "transfer-encoding", "version", "space", "query"],
)
def test_a_name_that_must_not_travel_is_refused_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: str, args: list[str], match: str
) -> None:
    monkeypatch.setenv("UP_KEY", UPSTREAM_KEY)
    res = CliRunner().invoke(app, ["serve", "--guard", str(tmp_path), *UPSTREAMS[proxy], *args])
    assert res.exit_code != 0
    message = f"{res.exception}\n{res.output}"
    assert match in message, message
    assert UPSTREAM_KEY not in message


@pytest.mark.parametrize("option", ["--forward-header", "--forward-query"])
def test_forwarding_without_a_proxy_is_refused(tmp_path: Path, option: str) -> None:
    args = ["serve", "--guard", str(tmp_path), option, "x-title"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0
    said = " ".join(res.output.replace("│", " ").split())  # rich's panel wraps it
    assert f"Invalid value for {option}: give --upstream URL or --anthropic-upstream" in said


#: Texts to pick a prompt and a reply from that the tiny (meaningless) model allows.
SAYINGS = ("hello", "what is the history of the printing press", "Flour, water.", "thanks")


def test_the_command_forwards_what_it_names(guard_dir: Path, guard: Guard) -> None:
    allowed = [t for t in SAYINGS if guard.check(t).allowed]
    assert allowed, "the tiny model must allow one of SAYINGS"
    with RecordingFake(allowed[-1]) as fake:
        env = {**os.environ, "UP_KEY": UPSTREAM_KEY}
        args = ["--guard", str(guard_dir), "--upstream", fake.openai_base_url]
        args += ["--upstream-key-env", "UP_KEY"]
        args += ["--forward-header", "HTTP-Referer", "--forward-header", "x-title"]
        args += ["--forward-query", "api-version"]
        with serve_process(args, env, "/v1/chat/completions") as served:
            client = openai.OpenAI(
                base_url=f"{served.url}/v1",
                api_key="x",
                max_retries=0,
                default_headers={"HTTP-Referer": "https://app.example", "X-Title": "App"},
                default_query={"api-version": "2024-10-21"},
            )
            messages = [{"role": "user", "content": allowed[0]}]
            got = first_call(
                lambda: client.chat.completions.create(model="m", messages=messages),  # type: ignore[arg-type]
                openai.APIConnectionError,
            )
            assert got.choices[0].message.content == allowed[-1]
            sent = fake.seen[-1]
            assert sent["path"] == "/v1/chat/completions?api-version=2024-10-21"
            assert sent["headers"]["http-referer"] == "https://app.example"
            assert sent["headers"]["x-title"] == "App"
            assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
