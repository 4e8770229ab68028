"""Every call path of the installed OpenAI and Anthropic SDKs, walked from the client
(its resources, sub-resources, ``with_raw_response`` / ``with_streaming_response``
views and their public methods), is guarded, refused or reviewed as making no model
output. A path the coverage table has not reviewed (a new SDK version's) fails here.

The refusals run through the real SDK clients against the shipped fake server: a
blocked prompt on a refused path raises ``UnguardedPathError`` and nothing reaches it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from annotators.testing import FakeLLMServer
from guardrail_dro.errors import UnguardedPathError
from guardrail_dro.serve.rails import wrap
from guardrail_dro.serve.rails.coverage import ANTHROPIC, OPENAI, Coverage, Verdict, is_sdk_object

from .guard_helpers import Calibrated, keyword_guard, run_of

CLIENTS = {
    "openai": (openai.OpenAI, OPENAI),
    "async-openai": (openai.AsyncOpenAI, OPENAI),
    "anthropic": (anthropic.Anthropic, ANTHROPIC),
    "async-anthropic": (anthropic.AsyncAnthropic, ANTHROPIC),
}
# The ways to make a completion the issue names: none may pass through.
MUST_NOT_PASS = {
    "openai": [
        "chat.completions.create",
        "chat.completions.with_raw_response.create",
        "chat.completions.with_streaming_response.create",
        "chat.completions.parse",
        "chat.completions.stream",
        "responses.create",
        "responses.stream",
        "responses.parse",
        "responses.with_raw_response.create",
        "beta.chat.completions.create",
        "beta.chat.completions.parse",
        "beta.chat.completions.stream",
        "completions.create",
        "batches.create",
        "beta.threads.runs.create",
        "beta.threads.create_and_run",
    ],
    "anthropic": [
        "messages.create",
        "messages.stream",
        "messages.parse",
        "messages.with_raw_response.create",
        "messages.with_streaming_response.create",
        "messages.batches.create",
        "beta.messages.create",
        "beta.messages.stream",
        "beta.messages.tool_runner",
        "beta.messages.batches.create",
    ],
}


def walk(obj: Any, sdk: str, path: str = "", depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(path, method) for every public method of every resource under ``obj``."""
    assert depth < 10, path
    for name in sorted(dir(obj)):
        if name.startswith("_"):
            continue
        value = getattr(obj, name)
        if is_sdk_object(value, sdk):
            yield from walk(value, sdk, f"{path}{name}.", depth + 1)
        elif path and callable(value):
            yield f"{path}{name}", value


def client_of(kind: str, server: FakeLLMServer | None = None) -> Any:
    cls, cov = CLIENTS[kind]
    url = "http://127.0.0.1:9" if server is None else getattr(server, f"{cov.sdk}_base_url")
    return cls(base_url=url, api_key="k", max_retries=0)


@pytest.fixture(scope="module")
def cal() -> Calibrated:
    return keyword_guard(refusal="No.")


@pytest.fixture(scope="module")
def attack(cal: Calibrated) -> str:
    return run_of(cal.target)


@pytest.fixture()
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(lambda text: "ok.") as srv:
        yield srv


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_every_sdk_path_is_reviewed(kind: str) -> None:
    _, cov = CLIENTS[kind]
    paths = [p for p, _ in walk(client_of(kind), cov.sdk)]
    assert len(paths) > 100  # the walk reaches the SDK's resources
    unreviewed = [p for p in paths if cov.classify(p) is Verdict.UNREVIEWED]
    assert not unreviewed, (
        f"{len(unreviewed)} {cov.sdk} paths not reviewed in guardrail_dro.serve.rails.coverage "
        f"(new in this SDK version?): {unreviewed[:20]}"
    )


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_completion_paths_never_pass(kind: str) -> None:
    _, cov = CLIENTS[kind]
    paths = {p for p, _ in walk(client_of(kind), cov.sdk)}
    for path in MUST_NOT_PASS[cov.sdk]:
        if path.split(".with_")[0] in {p.split(".with_")[0] for p in paths}:
            assert cov.classify(path) in (Verdict.GUARDED, Verdict.REFUSED), path
    # And generically: a create / stream / parse / run on a generating resource, any
    # view of it, is never passed.
    for path in paths:
        resource, method, _ = Coverage.split(path)
        if not cov.resource_inert(resource) and method in {"create", "stream", "parse", "run"}:
            assert cov.classify(path) is not Verdict.PASSED, path


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_the_wrapped_client_enforces_each_verdict(kind: str, cal: Calibrated) -> None:
    plain = client_of(kind)
    cov = CLIENTS[kind][1]
    wrapped = wrap(plain, cal.guard)
    counts = dict.fromkeys(Verdict, 0)
    for path, method in walk(plain, cov.sdk):
        verdict = cov.classify(path)
        counts[verdict] += 1
        got: Any = wrapped
        for part in path.split("."):
            got = getattr(got, part)
        if verdict is Verdict.GUARDED:
            assert got.__wrapped__ == method, path  # the guarded wrapper of the SDK's own
        elif verdict is Verdict.PASSED:
            assert got == method, path
        else:
            with pytest.raises(UnguardedPathError, match=path.replace(".", r"\.")) as info:
                got(model="m", messages=[])
            assert info.value.path == path and isinstance(info.value, NotImplementedError)
    guarded = len(cov.guarded)  # chat.completions.create and responses.create for openai
    assert counts[Verdict.GUARDED] == guarded and counts[Verdict.REFUSED] > 10, counts
    assert wrapped.unguarded is plain


def test_an_unknown_resource_is_refused(cal: Calibrated) -> None:
    assert OPENAI.classify("brand_new_api.create") is Verdict.UNREVIEWED
    assert OPENAI.classify("chat.completions.brand_new_method") is Verdict.REFUSED
    assert OPENAI.classify("files.create") is Verdict.PASSED
    assert ANTHROPIC.classify("messages.count_tokens") is Verdict.PASSED
    # A new resource on the client: its methods are refused, naming the path.
    plain = openai.OpenAI(base_url="http://127.0.0.1:9", api_key="k", max_retries=0)
    plain.brand_new_api = plain.chat.completions  # stands in for a resource we never saw
    with pytest.raises(UnguardedPathError, match="not in the table"):
        wrap(plain, cal.guard).brand_new_api.create(model="m", messages=[])


def test_openai_bypasses_are_refused(cal: Calibrated, server: FakeLLMServer, attack) -> None:
    client = wrap(client_of("openai", server), cal.guard)
    msgs = [{"role": "user", "content": attack}]
    calls = [
        lambda: client.chat.completions.with_raw_response.create(model="m", messages=msgs),
        lambda: client.chat.completions.with_streaming_response.create(model="m", messages=msgs),
        lambda: client.with_raw_response.chat.completions.create(model="m", messages=msgs),
        lambda: client.responses.parse(model="m", input=attack),
        lambda: client.responses.stream(model="m", input=attack),
        lambda: client.responses.with_raw_response.create(model="m", input=attack),
        lambda: client.responses.create(model="m", input=attack, background=True),
        lambda: client.chat.completions.parse(model="m", messages=msgs),
        lambda: client.post(
            "/chat/completions", body={"model": "m", "messages": msgs}, cast_to=dict
        ),
    ]
    for call in calls:
        with pytest.raises(UnguardedPathError):
            call()
    # with_options / copy give a client guarded the same way: the prompt is refused.
    resp = client.with_options(timeout=5).chat.completions.create(model="m", messages=msgs)
    assert resp.choices[0].message.content == "No."
    assert client.models.list.__self__ is client.unguarded.models  # inert: the SDK's own
    assert server.received == []


def test_anthropic_bypasses_are_refused(cal: Calibrated, server: FakeLLMServer, attack) -> None:
    client = wrap(client_of("anthropic", server), cal.guard)
    msgs = [{"role": "user", "content": attack}]
    kw = {"model": "m", "max_tokens": 10, "messages": msgs}
    calls = [
        lambda: client.messages.with_raw_response.create(**kw),
        lambda: client.messages.stream(**kw),
        lambda: client.beta.messages.create(**kw),
        lambda: client.messages.batches.create(requests=[{"custom_id": "a", "params": kw}]),
    ]
    for call in calls:
        with pytest.raises(UnguardedPathError):
            call()
    assert client.messages.create(**kw).content[0].text == "No."
    assert server.received == []


@pytest.mark.asyncio
async def test_async_raw_response_is_refused(
    cal: Calibrated, server: FakeLLMServer, attack
) -> None:
    client = wrap(client_of("async-openai", server), cal.guard)
    msgs = [{"role": "user", "content": attack}]
    with pytest.raises(UnguardedPathError, match="with_raw_response"):
        await client.chat.completions.with_raw_response.create(model="m", messages=msgs)
    resp = await client.chat.completions.create(model="m", messages=msgs)
    assert resp.choices[0].message.content == "No." and server.received == []
    await client.close()
