"""Reasoning models and their reply budget: a reply cut at the budget is named, never
repaired at the same budget and never cached; ``reasoning_effort`` is sent only when set;
a dry run shows what hidden reasoning may cost. Real SDKs over HTTP to the fake server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotators import (
    AnnotationCache,
    AnnotationResult,
    Annotator,
    AnthropicAnnotator,
    OpenAIAnnotator,
)
from annotators.batch import batch_annotate_with_report
from annotators.cache import key_for
from annotators.config import DEFAULT_CONFIG, load_config
from annotators.labelling import CutReply, judge, label_text
from annotators.retry import RetryPolicy
from annotators.runner import annotate_with_report
from annotators.specs import make_annotator
from annotators.templates import default_config_text
from annotators.testing import FakeLLMServer, Fault, keyword_handler
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, RepeatedAPIError
from tests.annotators.ann_helpers import KEY, make_dataset

CLI = str(Path(sys.executable).parent / "guardrail-dro")

TWO = ["you idiot", "have a nice day"]


@pytest.fixture
def thinker() -> Iterator[FakeLLMServer]:
    """A fake whose reasoning models think 500 hidden tokens before they answer."""
    with FakeLLMServer(keyword_handler, reasoning_tokens=500) as srv:
        yield srv


def _ask(
    ann: Annotator, schema: LabelSchema, policy: RetryPolicy | None = None
) -> AnnotationResult:
    """Label "you idiot" and close the client, in one event loop."""

    async def go() -> AnnotationResult:
        try:
            return await label_text(ann, "you idiot", schema, policy=policy)
        finally:
            await ann.aclose()

    return asyncio.run(go())


def _o4(srv: FakeLLMServer, **kw: object) -> OpenAIAnnotator:
    return OpenAIAnnotator("o4-mini", api_key=KEY, base_url=srv.openai_base_url, **kw)


# ---- a cut reply ------------------------------------------------------------------------
def test_a_reply_cut_by_reasoning_is_named_not_repaired_not_cached_and_asked_again(
    thinker: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    db = tmp_path / "c.sqlite"
    ds = make_dataset(TWO, schema)
    run = annotate_with_report(
        ds, [_o4(thinker, max_tokens=300)], cache=db, policy=fast, progress=False
    )
    rep = run.report
    assert rep.outcomes["openai:o4-mini"]["error"] == 2 and len(rep.failures) == 2
    err = rep.failures[0].error or ""
    assert "cut at the 300-token budget" in err
    assert "300 of its 300 output tokens were hidden reasoning" in err
    assert "max_tokens" in err and "reasoning_effort" in err
    assert dict(thinker.calls) == {t: 1 for t in TWO}  # no repair call at the same budget
    assert rep.calls == 2 and rep.usage.output_tokens == 600  # billed, and counted
    with AnnotationCache(db) as cache:
        assert len(cache) == 0  # not an answer: nothing cached
    # The same budget asks again (reasoning length varies from call to call).
    annotate_with_report(ds, [_o4(thinker, max_tokens=300)], cache=db, policy=fast, progress=False)
    assert dict(thinker.calls) == {t: 2 for t in TWO}
    # A bigger budget is another cache key, and enough.
    big = annotate_with_report(
        ds, [_o4(thinker, max_tokens=4000)], cache=db, policy=fast, progress=False
    )
    assert big.report.outcomes["openai:o4-mini"]["labelled"] == 2
    assert dict(thinker.calls) == {t: 3 for t in TWO}
    assert thinker.requests[-1]["body"]["max_completion_tokens"] == 4000
    again = annotate_with_report(
        ds, [_o4(thinker, max_tokens=4000)], cache=db, policy=fast, progress=False
    )
    assert again.report.from_cache == 2 and dict(thinker.calls) == {t: 3 for t in TWO}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_cut_fault_is_named_for_both_providers(
    provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    ann = (
        OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)
        if provider == "openai"
        else AnthropicAnnotator("claude-haiku-4-5", api_key=KEY, base_url=server.anthropic_base_url)
    )
    server.add_fault(Fault("cut", match="idiot"))
    res = _ask(ann, schema, fast)
    assert res.outcome == "error" and not res.cacheable
    assert "cut at the 300-token budget" in (res.error or "")
    assert "hidden reasoning" not in (res.error or "")  # neither says of reasoning
    assert server.calls["you idiot"] == 1 and res.calls == 1 and res.output_tokens == 300


def test_a_repair_reply_that_is_cut_is_named_too(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    server.add_fault(Fault("malformed"))
    server.add_fault(Fault("cut"))
    ann = OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)
    res = _ask(ann, schema, fast)
    assert res.outcome == "error" and "cut at the 300-token budget" in (res.error or "")
    assert server.calls["you idiot"] == 2 and res.calls == 2


def test_a_cut_reply_whose_json_is_complete_is_a_label(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    ann = _o4(server)
    reply = CutReply(
        text='{"label": "toxic", "rationale": "an insult", "confidence": 0.9}', reasoning_tokens=250
    )
    res = asyncio.run(judge(ann, "you idiot", schema, reply, policy=RetryPolicy()))
    assert (res.outcome, res.label) == ("labelled", "toxic")


def test_a_run_whose_replies_are_all_cut_stops(
    thinker: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy
) -> None:
    ds = make_dataset([f"text number {i}" for i in range(8)], schema)
    with pytest.raises(RepeatedAPIError, match="cut at the 300-token budget") as info:
        annotate_with_report(
            ds,
            [_o4(thinker, max_tokens=300)],
            policy=fast,
            concurrency=1,
            max_repeated_errors=3,
            progress=False,
        )
    assert thinker.calls.total() == 3  # not eight cut replies paid for
    assert "replies in a row came back unusable" in str(info.value)
    assert "HTTP 200" not in str(info.value)  # the calls succeeded: no HTTP error to name


def test_a_cut_batch_result_is_named_and_not_cached(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    server.add_fault(Fault("cut", match="idiot"))
    ann = OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url)
    run = batch_annotate_with_report(
        make_dataset(TWO, schema),
        [ann],
        poll_interval=0.01,
        policy=fast,
        cache=tmp_path / "c.sqlite",
    )
    (fail,) = run.report.failures
    assert fail.outcome == "error" and "cut at the 300-token budget" in (fail.error or "")
    assert server.calls.total() == 0  # no live repair call
    with AnnotationCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 1  # only the labelled one


# ---- default budget and reasoning_effort -------------------------------------------------
def test_make_annotator_gives_reasoning_models_a_workable_budget(
    thinker: FakeLLMServer, schema: LabelSchema
) -> None:
    ann = make_annotator("openai:o4-mini", base_url=thinker.openai_base_url, need_key=False)
    res = _ask(ann, schema)
    assert res.outcome == "labelled" and res.output_tokens > 500  # reasoning billed
    assert thinker.requests[0]["body"]["max_completion_tokens"] == 4000
    assert make_annotator("openai:o4-mini", need_key=False, max_tokens=300).max_tokens == 300
    assert make_annotator("openai:gpt-4o-mini", need_key=False).max_tokens == 300
    assert make_annotator("anthropic:claude-haiku-4-5", need_key=False).max_tokens == 300


def test_reasoning_effort_is_sent_only_when_set(server: FakeLLMServer, schema: LabelSchema) -> None:
    async def body(ann: OpenAIAnnotator) -> dict:
        await label_text(ann, "you idiot", schema)
        await ann.aclose()
        return server.requests[-1]["body"]

    assert asyncio.run(body(_o4(server, reasoning_effort="low")))["reasoning_effort"] == "low"
    assert "reasoning_effort" not in asyncio.run(body(_o4(server)))


def test_reasoning_effort_is_part_of_the_cache_key(schema: LabelSchema) -> None:
    keys = {
        e: key_for(OpenAIAnnotator("o4-mini", api_key="k", reasoning_effort=e), "t", schema)
        for e in (None, "low", "high")
    }
    assert len(set(keys.values())) == 3
    assert OpenAIAnnotator("o4-mini", api_key="k", max_tokens=300).cache_params() == {
        "temperature": None,
        "max_tokens": 300,
    }  # keys made before it existed still hit at the old budget


@pytest.mark.parametrize(
    "spec", ["openai:gpt-4o-mini", "openai:llama3.1", "anthropic:claude-haiku-4-5"]
)
def test_reasoning_effort_is_refused_for_other_models(spec: str) -> None:
    with pytest.raises(ConfigError, match=rf"{spec}: reasoning_effort.*remove"):
        make_annotator(spec, need_key=False, reasoning_effort="low")


def test_an_unknown_reasoning_effort_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"reasoning_effort must be one of .*'hgih'"):
        OpenAIAnnotator("o3", api_key="k", reasoning_effort="hgih")  # type: ignore[arg-type]


def test_non_reasoning_requests_and_keys_are_unchanged(
    server: FakeLLMServer, schema: LabelSchema
) -> None:
    ann = make_annotator("openai:gpt-4o-mini", base_url=server.openai_base_url, need_key=False)
    assert ann.cache_params() == {
        "temperature": 0.0,
        "max_tokens": 300,
        "base_url": server.openai_base_url,
    }
    _ask(ann, schema)
    body = server.requests[0]["body"]
    assert set(body) == {"model", "messages", "temperature", "max_tokens", "response_format"}
    assert (body["temperature"], body["max_tokens"]) == (0.0, 300)


# ---- dry run ----------------------------------------------------------------------------
def _dry(anns: list, schema: LabelSchema) -> list[str]:
    run = annotate_with_report(
        make_dataset(["a", "b", "c"], schema), anns, dry_run=True, progress=False
    )
    return run.report.summary_lines()


def test_dry_run_shows_the_reasoning_ceiling(schema: LabelSchema) -> None:
    o4 = make_annotator("openai:o4-mini", need_key=False)
    mini = make_annotator("openai:gpt-4o-mini", need_key=False)
    lines = _dry([o4, mini], schema)
    (o4_line,) = [ln for ln in lines if ln.startswith("  openai:o4-mini:")]
    assert "output: 60 a reply assumed, up to 4000 a reply with hidden reasoning)" in o4_line
    cost, most = (float(x) for x in re.findall(r"\$(\d+\.\d+)", o4_line))
    n_in = int(o4_line.split("request(s), ")[1].split()[0])
    assert most == pytest.approx((n_in * 1.10 + 3 * 4000 * 4.40) / 1e6, abs=1e-4)
    assert most > 10 * cost
    (mini_line,) = [ln for ln in lines if ln.startswith("  openai:gpt-4o-mini:")]
    assert "up to" not in mini_line
    assert "(up to 12180 out with reasoning); estimated cost $" in lines[-1]
    assert re.search(r"estimated cost \$\d+\.\d{4}, up to \$\d+\.\d{4}$", lines[-1])


def test_dry_run_lines_of_other_models_are_as_before(schema: LabelSchema) -> None:
    anns = [
        make_annotator("openai:gpt-4o-mini", need_key=False),
        make_annotator("anthropic:claude-haiku-4-5", need_key=False),
    ]
    lines = _dry(anns, schema)
    for line in lines[1:-1]:
        assert re.fullmatch(
            r"  \S+: 3 request\(s\), \d+ tokens in \+ 180 out \(input tokens: "
            r"[^;]+; output: 60 a reply assumed\); cost \$\d+\.\d{4}",
            line,
        ), line
    assert re.fullmatch(
        r"estimated tokens: \d+ in, 360 out; estimated cost \$\d+\.\d{4}", lines[-1]
    )


# ---- config ------------------------------------------------------------------------------
def test_config_round_trip_and_the_commented_example(tmp_path: Path) -> None:
    cfg = tmp_path / "team.toml"
    cfg.write_text(
        '[[annotators]]\nspec = "openai:o4-mini"\nmax_tokens = 2000\nreasoning_effort = "low"\n',
        encoding="utf-8",
    )
    (entry,) = load_config(cfg).annotators
    assert (entry.max_tokens, entry.reasoning_effort) == (2000, "low")
    assert DEFAULT_CONFIG.annotators == ()
    # The shipped example, uncommented, loads and builds.
    text = default_config_text()
    block = text[text.index('# spec = "openai:o4-mini"') :].split("\n\n")[0]
    example = "[[annotators]]\n" + "\n".join(ln.removeprefix("# ") for ln in block.splitlines())
    cfg.write_text(example, encoding="utf-8")
    (entry,) = load_config(cfg).annotators
    ann = make_annotator(
        entry.spec,
        need_key=False,
        max_tokens=entry.max_tokens,
        reasoning_effort=entry.reasoning_effort,
    )
    assert ann.cache_params()["reasoning_effort"] == "low"
    cfg.write_text('[[annotators]]\nspec = "openai:o4-mini"\nreasoning_effort = "hgih"\n')
    with pytest.raises(ConfigError, match=r"annotators\.0\.reasoning_effort"):
        load_config(cfg)


def _annotate(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    return subprocess.run(
        [CLI, "annotate", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_takes_reasoning_effort_from_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "team.toml"
    data = tmp_path / "in.csv"
    data.write_text("question\nhello there\n", encoding="utf-8")
    args = [
        "--data",
        str(data),
        "--labels",
        "safe,toxic",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "o.jsonl"),
        "--dry-run",
    ]
    cfg.write_text('[[annotators]]\nspec = "openai:o4-mini"\nreasoning_effort = "low"\n')
    r = _annotate(args)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout.split("\n", 1)[1])
    assert (body["reasoning_effort"], body["max_completion_tokens"]) == ("low", 4000)
    assert "up to 4000 a reply with hidden reasoning" in r.stderr
    cfg.write_text('[[annotators]]\nspec = "openai:gpt-4o-mini"\nreasoning_effort = "low"\n')
    r = _annotate(args)
    assert r.returncode == 2 and "reasoning_effort" in r.stderr
