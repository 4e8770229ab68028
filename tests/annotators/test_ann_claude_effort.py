"""Claude's effort (``effort=``, sent as ``output_config={"effort": ...}``): the request the
real anthropic SDK sends, live and in a batch; cache keys (apart by effort, byte-identical
without it); a bad value or a misplaced one refused by name; config file and CLI. Real
SDK over HTTP to the fake server.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from annotators import AnthropicAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.cache import key_for
from annotators.config import load_config
from annotators.retry import RetryPolicy
from annotators.runner import annotate_with_report
from annotators.specs import make_annotator
from annotators.testing import FakeLLMServer, Fault, keyword_handler
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from tests.annotators.ann_helpers import KEY, make_dataset
from tests.annotators.test_ann_claude_thinking_wiring import _annotate
from tests.annotators.test_reasoning_budget import _ask

OPUS = "claude-opus-4-6"
TWO = ["you idiot", "have a nice day"]


class RecordingServer(FakeLLMServer):
    """The fake, keeping every request body it answers, batch requests included (its
    ``requests`` keeps live ones only)."""

    def __init__(self) -> None:
        super().__init__(keyword_handler)
        self.answered: list[tuple[dict, bool]] = []

    def reply(self, provider: str, text: str, body: dict, fault: Fault | None, *,
              batch: bool = False) -> dict[str, Any]:  # fmt: skip
        self.answered.append((body, batch))
        return super().reply(provider, text, body, fault, batch=batch)


def _claude(srv: FakeLLMServer, **kw: Any) -> AnthropicAnnotator:
    return AnthropicAnnotator(OPUS, api_key=KEY, base_url=srv.anthropic_base_url, **kw)


# ---- the request -------------------------------------------------------------------------
@pytest.mark.parametrize("effort", ["low", "max"])
def test_effort_is_sent_as_output_config_and_the_label_is_read(
    server: FakeLLMServer, schema: LabelSchema, effort: str
) -> None:
    res = _ask(_claude(server, effort=effort), schema)
    body = server.requests[0]["body"]
    assert body["output_config"] == {"effort": effort}
    assert body["tool_choice"] == {"type": "tool", "name": "record_label"}  # still forced
    assert (res.outcome, res.label) == ("labelled", "toxic")


def test_no_effort_sends_no_output_config(server: FakeLLMServer, schema: LabelSchema) -> None:
    _ask(_claude(server), schema)
    body = server.requests[0]["body"]
    assert set(body) == {"model", "max_tokens", "system", "messages", "tools", "tool_choice"}


def test_effort_goes_with_adaptive_thinking(server: FakeLLMServer, schema: LabelSchema) -> None:
    res = _ask(_claude(server, thinking="adaptive", effort="medium"), schema)
    body = server.requests[0]["body"]
    assert (body["thinking"], body["output_config"]) == ({"type": "adaptive"}, {"effort": "medium"})
    assert res.outcome == "labelled"


def test_batch_requests_carry_effort(
    schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    with RecordingServer() as srv:
        run = batch_annotate_with_report(
            make_dataset(TWO, schema),
            [_claude(srv, effort="low")],
            poll_interval=0.01,
            policy=fast,
            cache=tmp_path / "c.sqlite",
        )
        assert srv.calls.total() == 0  # nothing was asked live
        bodies = [body for body, batch in srv.answered if batch]
    assert run.report.outcomes[f"anthropic:{OPUS}"]["labelled"] == 2
    assert [b["output_config"] for b in bodies] == [{"effort": "low"}] * 2


# ---- cache keys ---------------------------------------------------------------------------
OLD_KEYS = {
    "plain": "78b32c2242ab7defec847a2d2136d08b98e7ced470e439894bce3cc85f5abe1f",
    "budget": "b7c828484280bc0b66bc2c2ace6e84a3fc99f18ea92586b951b2b639b23ccb6d",
    "adaptive": "3dcb82236ae3059799ee8c613a21f050061f43222611aa5092576a376f8a93cb",
}
"""key_for(AnthropicAnnotator("claude-opus-4-6", base_url="http://127.0.0.1:1", **KW),
"you idiot", schema), computed on the code before effort existed."""

KW: dict[str, dict[str, Any]] = {
    "plain": {},
    "budget": {"thinking_budget": 2048},
    "adaptive": {"thinking": "adaptive"},
}


def _key(schema: LabelSchema, **kw: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note on enabled thinking for claude-opus-4-6
        ann = AnthropicAnnotator(OPUS, api_key="k", base_url="http://127.0.0.1:1", **kw)
    return key_for(ann, "you idiot", schema)


def test_keys_without_effort_are_byte_identical_to_before(schema: LabelSchema) -> None:
    assert {name: _key(schema, **kw) for name, kw in KW.items()} == OLD_KEYS


def test_effort_is_part_of_the_cache_key(schema: LabelSchema) -> None:
    keys = {e: _key(schema, effort=e) for e in ("low", "medium", "high", "xhigh", "max")}
    assert len(set(keys.values()) | set(OLD_KEYS.values())) == 5 + 3
    assert _key(schema, thinking="adaptive", effort="low") != keys["low"]
    ann = AnthropicAnnotator(OPUS, api_key="k", base_url="http://h", effort="high")
    assert ann.cache_params() == {"max_tokens": 300, "effort": "high", "base_url": "http://h"}


# ---- refused by name ----------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["hgih", "none", "minimal", "LOW", ""])
def test_a_bad_effort_is_refused_when_built(bad: str) -> None:
    allowed = r"\['low', 'medium', 'high', 'xhigh', 'max'\]"
    with pytest.raises(ConfigError, match=rf"anthropic:{OPUS}: effort must be one of {allowed}"):
        AnthropicAnnotator(OPUS, api_key="k", effort=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=rf"effort must be one of {allowed}, not '{bad}'"):
        make_annotator(f"anthropic:{OPUS}", need_key=False, effort=bad)  # type: ignore[arg-type]


def test_effort_on_openai_and_reasoning_effort_on_claude_name_each_other() -> None:
    with pytest.raises(ConfigError, match=r"openai:o4-mini: effort is Claude's.*reasoning_effort"):
        make_annotator("openai:o4-mini", need_key=False, effort="low")
    with pytest.raises(ConfigError, match=r"reasoning_effort is for OpenAI.*Claude's is effort"):
        make_annotator(f"anthropic:{OPUS}", need_key=False, reasoning_effort="low")
    ann = make_annotator(f"anthropic:{OPUS}", need_key=False, effort="xhigh")
    assert ann.cache_params()["effort"] == "xhigh"


# ---- config, CLI, dry run -------------------------------------------------------------------
def test_config_takes_effort(tmp_path: Path) -> None:
    cfg = tmp_path / "team.toml"
    entry = f'[[annotators]]\nspec = "anthropic:{OPUS}"\n'
    cfg.write_text(entry + 'effort = "low"\n', encoding="utf-8")
    (a,) = load_config(cfg).annotators
    assert a.effort == "low"
    ann = make_annotator(need_key=False, **a.model_dump())  # as `annotate --config` builds it
    assert ann.cache_params()["effort"] == "low"
    cfg.write_text(entry + 'effort = "hgih"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"annotators\.0\.effort: Input should be 'low'"):
        load_config(cfg)


def test_cli_takes_effort_from_the_config(tmp_path: Path) -> None:
    cfg, data = tmp_path / "team.toml", tmp_path / "in.csv"
    data.write_text("question\nhello there\n", encoding="utf-8")
    args = ["--data", str(data), "--labels", "safe,toxic", "--config", str(cfg), "--out",
            str(tmp_path / "o.jsonl"), "--dry-run"]  # fmt: skip
    cfg.write_text(f'[[annotators]]\nspec = "anthropic:{OPUS}"\neffort = "low"\n')
    r = _annotate(args)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout.split("\n", 1)[1])
    assert body["output_config"] == {"effort": "low"}
    cfg.write_text('[[annotators]]\nspec = "openai:o4-mini"\neffort = "low"\n')
    r = _annotate(args)
    assert r.returncode == 2 and "effort is Claude's" in r.stderr


def test_a_dry_run_shows_the_effort(schema: LabelSchema) -> None:
    ann = make_annotator(f"anthropic:{OPUS}", need_key=False, effort="low")
    run = annotate_with_report(make_dataset(["a"], schema), [ann], dry_run=True, progress=False)
    assert run.report.sample_requests["anthropic"]["output_config"] == {"effort": "low"}


def test_the_shipped_adaptive_example_uncommented_loads_and_builds(tmp_path: Path) -> None:
    # The example in annotators/configs/default.toml (its own paragraph: the thinking
    # test above reads the one before it up to a blank line) is what users copy.
    from annotators.config import default_config_text

    text = default_config_text()
    block = text[text.index('# spec = "anthropic:claude-opus-4-6"') :].split("\n\n")[0]
    cfg = tmp_path / "team.toml"
    cfg.write_text(
        "[[annotators]]\n" + "\n".join(ln.removeprefix("# ") for ln in block.splitlines())
    )
    (entry,) = load_config(cfg).annotators
    assert (entry.thinking, entry.effort) == ("adaptive", "low")
    ann = make_annotator(entry.spec, need_key=False, thinking=entry.thinking, effort=entry.effort)
    assert ann.effort == "low"  # type: ignore[attr-defined]
