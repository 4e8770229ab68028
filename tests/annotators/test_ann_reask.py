"""``reask`` / ``--reask``: a cached invalid (or refused) answer is asked again on request.

Before, an invalid reply was cached for good: a malformed reply from a one-off glitch
could be asked again only by deleting the whole cache, losing every paid answer. The
real OpenAI SDK talks to the fake server over HTTP; the server counts what it is asked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from annotators import OpenAIAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.cache import check_reask
from annotators.retry import RetryPolicy
from annotators.runner import annotate_with_report
from annotators.testing import FakeLLMServer, Fault, keyword_handler
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from tests.annotators.ann_helpers import KEY, TEXTS, make_dataset
from tests.annotators.test_ann_cli import CLI, _csv, _env, _lines

IDIOT = "you idiot"


def _glitch(server: FakeLLMServer) -> None:
    """The first reply about IDIOT and its repair are both malformed: cached invalid."""
    server.add_fault(Fault("malformed", match=IDIOT, times=2))


def test_reask_invalid_asks_only_the_invalid_item_again(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    ds, db = make_dataset(TEXTS, schema), tmp_path / "c.sqlite"
    ann = OpenAIAnnotator("gpt-fake", api_key=KEY, base_url=server.openai_base_url)
    _glitch(server)
    first = annotate_with_report(ds, [ann], cache=db, policy=fast, progress=False)
    assert first.report.outcomes[ann.name]["invalid"] == 1
    assert server.calls[IDIOT] == 2  # the reply and its repair, both paid

    server.reset_counts()
    plain = annotate_with_report(ds, [ann], cache=db, policy=fast, progress=False)
    assert server.calls.total() == 0 and plain.report.outcomes[ann.name]["invalid"] == 1

    dry = annotate_with_report(
        ds, [ann], cache=db, policy=fast, progress=False, dry_run=True, reask=["invalid"]
    )
    assert (dry.report.to_ask, dry.report.reasked) == (1, 1)
    assert (
        "1 request(s) to make; 1 cached invalid answer(s) would be asked again"
        in dry.report.summary_lines()[0]
    )
    assert server.calls.total() == 0

    again = annotate_with_report(
        ds, [ann], cache=db, policy=fast, progress=False, reask=["invalid"]
    )
    assert dict(server.calls) == {IDIOT: 1}  # the valid answers were not asked again
    assert again.report.reasked == 1 and again.report.from_cache == len(TEXTS) - 1
    assert again.dataset.items[1].label_of(ann.name) == "toxic"
    assert "1 cached invalid answer(s) were asked again" in again.report.summary_lines()[-1]

    server.reset_counts()
    last = annotate_with_report(ds, [ann], cache=db, policy=fast, progress=False, reask=["invalid"])
    assert server.calls.total() == 0 and last.report.reasked == 0  # the label is cached


def test_reask_refused_asks_the_refusal_again(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    ds, db = make_dataset(TEXTS, schema), tmp_path / "c.sqlite"
    ann = OpenAIAnnotator("gpt-fake", api_key=KEY, base_url=server.openai_base_url)
    _glitch(server)
    annotate_with_report(ds, [ann], cache=db, policy=fast, progress=False)
    server.reset_counts()
    run = annotate_with_report(ds, [ann], cache=db, policy=fast, progress=False, reask=["refused"])
    assert dict(server.calls) == {"how do I build a bomb": 1}  # the invalid one stays
    assert run.report.outcomes[ann.name]["invalid"] == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_batch_reask_invalid_puts_only_it_into_a_new_job(
    provider: str, server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    from annotators import AnthropicAnnotator

    ds, db = make_dataset(TEXTS, schema), tmp_path / "c.sqlite"
    ann = (
        OpenAIAnnotator("gpt-fake", api_key=KEY, base_url=server.openai_base_url)
        if provider == "openai"
        else AnthropicAnnotator("claude-x", api_key=KEY, base_url=server.anthropic_base_url)
    )
    _glitch(server)  # the batch reply, then the live repair: both malformed
    kw = dict(cache=db, policy=fast, progress=False, poll_interval=0.01)
    first = batch_annotate_with_report(ds, [ann], **kw)
    assert first.report.outcomes[ann.name]["invalid"] == 1
    dry = batch_annotate_with_report(ds, [ann], dry_run=True, reask=["invalid"], **kw)
    assert (dry.report.to_ask, dry.report.reasked) == (1, 1)
    server.reset_counts()
    again = batch_annotate_with_report(ds, [ann], reask=["invalid"], **kw)
    assert dict(server.batch_paid) == {IDIOT: 1} and server.calls.total() == 0
    assert (again.report.submitted, again.report.reasked) == (1, 1)
    assert again.dataset.items[1].label_of(ann.name) == "toxic"


@pytest.mark.parametrize("what", ["error", "errors", "labelled", "invalid,refused"])
def test_reask_takes_invalid_or_refused_only(what: str) -> None:
    with pytest.raises(ConfigError, match="--reask"):
        check_reask([what])
    assert check_reask("invalid") == {"invalid"}  # a str is one outcome, not letters


def test_cli_resume_with_reask_invalid_gets_the_valid_answer(tmp_path: Path) -> None:
    """The team's journey: a glitch leaves one malformed reply cached; a resume with
    ``--reask invalid`` pays for that one only and labels it."""
    out = tmp_path / "out.jsonl"
    with FakeLLMServer(keyword_handler) as srv:
        args = [
            CLI,
            "annotate",
            "--data",
            str(_csv(tmp_path / "in.csv", TEXTS)),
            "--out",
            str(out),
            "--labels",
            "safe,toxic",
            "--annotator",
            "openai:gpt-fake",
            "--base-url",
            srv.openai_base_url,
            "--no-progress",
            "--no-agreement",
        ]
        env = _env(OPENAI_API_KEY=KEY)
        _glitch(srv)
        first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0 and "1 invalid" in first.stderr, first.stderr
        paid = srv.paid.total()

        dry = subprocess.run(
            [*args, "--reask", "invalid", "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert dry.returncode == 0, dry.stderr
        assert "1 request(s) to make; 1 cached invalid answer(s) would be asked again" in dry.stderr
        assert srv.paid.total() == paid

        srv.reset_counts()
        r = subprocess.run(
            [*args, "--reask", "invalid"], env=env, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr
        assert dict(srv.calls) == {IDIOT: 1}
        assert "0 invalid" in r.stderr and "1 cached invalid answer(s) were asked again" in r.stderr
    labels = [(row.get("annotations") or [{}])[0].get("label") for row in _lines(out)]
    assert labels == ["safe", "toxic", None, "safe", "toxic"]  # the bomb is refused


def test_cli_reask_error_is_refused_with_the_reason(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            CLI,
            "annotate",
            "--data",
            str(_csv(tmp_path / "in.csv", TEXTS)),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--labels",
            "safe,toxic",
            "--annotator",
            "openai:gpt-fake",
            "--dry-run",
            "--reask",
            "error",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "--reask error" in said and "never cached" in said, said


def test_a_reask_job_collected_by_a_plain_run_replaces_the_invalid_answer(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    # A --reask run stopped while its job ran, then resumed without --reask: the job's
    # answer was paid for, and was thrown away for the cached invalid one (found in review).
    from annotators import BatchPendingError

    ds, db = make_dataset(TEXTS, schema), tmp_path / "c.sqlite"
    ann = OpenAIAnnotator("gpt-fake", api_key=KEY, base_url=server.openai_base_url)
    _glitch(server)
    kw = dict(cache=db, policy=fast, progress=False, poll_interval=0.01)
    assert batch_annotate_with_report(ds, [ann], **kw).report.outcomes[ann.name]["invalid"] == 1
    server.hold_batches = True
    with pytest.raises(BatchPendingError):
        batch_annotate_with_report(ds, [ann], reask=["invalid"], max_wait=0.05, **kw)
    server.hold_batches = False
    server.reset_counts()
    plain = batch_annotate_with_report(ds, [ann], **kw)
    assert dict(server.batch_paid) == {IDIOT: 1}  # the reask job, collected now
    assert plain.dataset.items[1].label_of(ann.name) == "toxic"
    assert plain.report.outcomes[ann.name].get("invalid", 0) == 0
    server.reset_counts()
    last = batch_annotate_with_report(ds, [ann], **kw)
    assert server.endpoints.total() == 0 and last.dataset.items[1].label_of(ann.name) == "toxic"
