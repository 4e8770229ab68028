"""A labelling team's journey through ``annotate`` and ``merge``, as a new user runs it.

Two ``annotate`` runs (the real OpenAI and Anthropic SDKs over HTTP to the shipped fake
server, each provider with its own rule), a crowd CSV with one column per person and
missing cells, a gold sample with groups, merged with ``guardrail-dro merge`` in a
subprocess. Where the journey tripped: a crowd CSV whose columns are people's names
(``alice,bob,carol``, not ``label_*``) was merged as texts alone, its labels dropped
without a word; ``--annotator-cols`` for it then failed on the gold file without saying
that the crowd file is merged alone first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from annotators.testing import FakeLLMServer, FakeReply, Refuse
from guardrail_dro.data import merge_datasets, read_inputs
from guardrail_dro.data.layouts import ReaderOptions
from guardrail_dro.data.readers import read_dataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, DataError

CLI = str(Path(sys.executable).parent / "guardrail-dro")
SCHEMA = {
    "classes": ["safe", "insult", "threat"],
    "safe": ["safe"],
    "descriptions": {"insult": "demeaning a person", "threat": "promising harm"},
}
TEXTS = {
    "c0": "nice photo, where was it taken?",
    "c1": "you are a pathetic loser",
    "c2": "I will find you and hurt you",
    "c3": "thanks for the recipe",
    "c4": "only an idiot would say that",
}
CROWD = (  # alice labels all, bob skips two, carol one: a real crowd sheet's blanks
    "id,text,alice,bob,carol\n"
    + "".join(
        f'{i},"{TEXTS[i]}",{labels}\n'
        for i, labels in (
            ("c0", "safe,safe,safe"),
            ("c1", "insult,,insult"),
            ("c2", "threat,threat,"),
            ("c3", "safe,,safe"),
            ("c4", "insult,insult,safe"),
        )
    )
)
GOLD = "id,text,gold,group\n" + "".join(
    f'{i},"{TEXTS[i]}",{gold},{group}\n'
    for i, gold, group in (("c1", "insult", "a"), ("c2", "threat", "b"))
)


def _gpt(text: str) -> FakeReply:
    if "hurt" in text:
        return FakeReply("threat", "promises harm", 0.9)
    if "loser" in text or "idiot" in text:
        return FakeReply("insult", "demeans the reader", 0.85)
    return FakeReply("safe", "ordinary comment", 0.8)


def _claude(text: str) -> FakeReply | Refuse:
    if "hurt" in text:
        return Refuse("I can't help with violent content.")
    return FakeReply("insult" if "loser" in text else "safe", "claude's reason", 0.6)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_BASE_URL", "_AUTH_TOKEN"))}
    return {**env, "OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "COLUMNS": "1000"}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=_env(), capture_output=True, text=True, timeout=300, check=False
    )


def _team_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "schema": tmp_path / "schema.json",
        "texts": tmp_path / "texts.csv",
        "crowd": tmp_path / "humans.csv",
        "gold": tmp_path / "gold.csv",
    }
    files["schema"].write_text(json.dumps(SCHEMA), encoding="utf-8")
    rows = "".join(f'{i},"{t}"\n' for i, t in TEXTS.items())
    files["texts"].write_text("id,text\n" + rows, encoding="utf-8")
    files["crowd"].write_text(CROWD, encoding="utf-8")
    files["gold"].write_text(GOLD, encoding="utf-8")
    return files


def test_a_crowd_sheet_with_named_columns_is_not_merged_as_texts_alone(tmp_path: Path) -> None:
    f = _team_files(tmp_path)
    schema = LabelSchema.load(f["schema"])
    with pytest.raises(DataError) as err:
        read_inputs([f["crowd"], f["gold"]], schema=schema)
    msg = str(err.value)
    assert str(f["crowd"]) in msg and "['alice', 'bob', 'carol']" in msg
    assert "--annotator-cols alice,bob,carol" in msg
    # named, they are read (a text-only file without other columns is no error)
    (crowd,) = read_inputs([f["crowd"]], ReaderOptions(annotator_cols=("alice", "bob", "carol")))
    assert sum(len(it.annotations) for it in crowd) == 12
    only_texts = tmp_path / "only_texts.csv"
    only_texts.write_text(f'id,text\nc0,"{TEXTS["c0"]}"\n', encoding="utf-8")
    assert len(merge_datasets(read_inputs([only_texts, f["gold"]], schema=schema))) == 3


def test_a_column_option_only_some_files_have_says_to_merge_that_file_first(
    tmp_path: Path,
) -> None:
    f = _team_files(tmp_path)
    opts = ReaderOptions(annotator_cols=("alice", "bob", "carol"))
    with pytest.raises(ConfigError) as err:
        read_inputs([f["crowd"], f["gold"]], opts, schema=LabelSchema.load(f["schema"]))
    msg = str(err.value)
    assert f"{f['gold']} has no column 'alice' (--annotator-cols)" in msg
    assert f"merge {f['crowd']} --annotator-cols ... --out humans.jsonl" in msg
    # a column no file has stays the reader's own error (a misspelt name, not a merge)
    with pytest.raises(DataError, match="annotator column 'alicia' not found"):
        read_inputs([f["crowd"], f["gold"]], ReaderOptions(annotator_cols=("alicia",)))


def test_two_annotate_runs_a_crowd_sheet_and_gold_merge_into_one_dataset(
    tmp_path: Path,
) -> None:
    f = _team_files(tmp_path)
    outs = {"gpt": tmp_path / "gpt.jsonl", "claude": tmp_path / "claude.jsonl"}
    common = ["--data", str(f["texts"]), "--schema", str(f["schema"]), "--no-progress"]
    with FakeLLMServer(_gpt) as gpt, FakeLLMServer(_claude) as claude:
        for name, spec, url in (
            ("gpt", "openai:gpt-4o-mini", ["--base-url", gpt.openai_base_url]),
            (
                "claude",
                "anthropic:claude-haiku-4-5",
                ["--anthropic-base-url", claude.anthropic_base_url],
            ),
        ):
            run = _cli("annotate", *common, "--annotator", spec, *url, "--out", str(outs[name]))
            assert run.returncode == 0, run.stderr

    # the README's one command: the crowd's named columns are not silently dropped
    both = [str(f["crowd"]), str(outs["gpt"]), str(outs["claude"]), str(f["gold"])]
    labels = tmp_path / "labels.jsonl"
    run = _cli("merge", *both, "--schema", str(f["schema"]), "--out", str(labels))
    assert run.returncode == 2 and "--annotator-cols alice,bob,carol" in run.stderr
    assert not labels.exists()
    run = _cli("merge", *both, "--annotator-cols", "alice,bob,carol", "--out", str(labels))
    assert run.returncode == 2 and "alone first" in run.stderr, run.stderr

    humans = tmp_path / "humans.jsonl"
    cols = ["--annotator-cols", "alice,bob,carol", "--schema", str(f["schema"])]
    assert _cli("merge", str(f["crowd"]), *cols, "--out", str(humans)).returncode == 0
    run = _cli("merge", str(humans), *both[1:], "--out", str(labels))
    assert run.returncode == 0, run.stderr
    assert "merged: 5 item(s), 2 with gold, 2 group(s), 5 annotator(s)" in run.stdout

    merged = read_dataset(labels)
    assert merged.schema.safe == ("safe",) and merged.schema.descriptions == SCHEMA["descriptions"]
    by_id = {it.item_id: it for it in merged}
    c2 = {a.annotator: a for a in by_id["c2"].annotations}
    assert set(c2) == {"alice", "bob", "openai:gpt-4o-mini"}  # carol blank, claude refused
    gpt_c2 = c2["openai:gpt-4o-mini"]
    assert (gpt_c2.kind, gpt_c2.model, gpt_c2.label) == ("llm", "gpt-4o-mini", "threat")
    assert (gpt_c2.rationale, gpt_c2.confidence) == ("promises harm", 0.9)
    cl = {a.annotator: a for a in by_id["c1"].annotations}["anthropic:claude-haiku-4-5"]
    assert (cl.model, cl.rationale, cl.confidence) == ("claude-haiku-4-5", "claude's reason", 0.6)
    assert c2["alice"].kind == "human" and (by_id["c2"].gold, by_id["c2"].group) == ("threat", "b")

    # claude's refusal is not in labels.jsonl: the merge carries the runs' failures files
    # into labels.jsonl.failures.jsonl, so agreement shows the refusal rate, not "not known"
    assert "1 refused / invalid / failed answer(s) of 2 annotate run(s)" in run.stderr
    assert Path(f"{labels}.failures.jsonl").is_file()
    run = _cli("agreement", "--data", str(labels), "--json", str(tmp_path / "a.json"))
    assert run.returncode == 0, run.stderr
    rates = {
        q["name"]: q["refusal_rate"]
        for q in json.loads((tmp_path / "a.json").read_text())["annotators"]
    }
    assert rates["anthropic:claude-haiku-4-5"] == pytest.approx(0.2)
    assert rates["openai:gpt-4o-mini"] == 0.0
