"""Background-safe text: the bundled sets load by name, split deterministically with no
text on both sides, ship with their licenses; a user's file reads in every format and
a bad one fails naming the file and the problem."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import re
import tomllib
from pathlib import Path

import pytest

from guardrail_dro.data.background import (
    BACKGROUND,
    background_dataset,
    load_background,
    split_by_hash,
)
from guardrail_dro.data.items import normalise_text
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_background_loads_by_name_split_without_overlap() -> None:
    conv = load_background(["convabuse-background"])
    every = load_background(["everyday-requests"])
    assert (len(conv.train), len(conv.heldout)) == (1394, 342)
    assert (len(every.train), len(every.heldout)) == (644, 171)
    both = load_background(["convabuse-background", "everyday-requests"])
    assert len(both.train) == len(conv.train) + len(every.train)
    assert not {normalise_text(t) for t in both.train} & {normalise_text(t) for t in both.heldout}
    assert (
        load_background(["convabuse-background:heldout"], require_both=False).train == ()
    )  # one part alone
    assert "How do I reverse a list in Python?" in every.train + every.heldout


PROBES = ROOT / "benchmarks" / "data"
PROBE_B_SHA256 = "a18708ebc115f0fc293b5727d13e7c11f92676a0c6abb47d4ad1ba5d82f0b3f4"
"""chat_probe_b.json as frozen before any score was seen (bench_chat_probe.py)."""


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def _assert_no_background_text_near(texts: list[str]) -> None:
    """No bundled background text equals one of ``texts`` (normalised) or shares 70% of
    its words with one (Jaccard)."""
    norm = {normalise_text(t) for t in texts}
    words = [_words(t) for t in texts]
    for name in BACKGROUND:
        bg = load_background([name], harmful=None)
        for text in bg.train + bg.heldout:
            assert normalise_text(text) not in norm, (name, text)
            w = _words(text)
            assert max(len(w & p) / len(w | p) for p in words) < 0.7, (name, text)


def test_no_background_text_repeats_or_rewords_a_chat_probe_item() -> None:
    """The chat probes judge how the guard treats ordinary chat: a probe text (or a
    rewording of one) that trains makes them measure memory. Rewording is caught as 70%
    of the words shared (Jaccard), which "How do I reverse a list in Python?" against
    "How do I reverse a linked list in Java?" (0.5) does not reach."""
    probe = [
        t
        for f in sorted(PROBES.glob("chat_probe*.json"))
        for k in ("everyday", "harmful")
        for t in json.loads(f.read_text())[k]
    ]
    assert len(probe) == 100
    _assert_no_background_text_near(probe)


def test_no_background_text_repeats_or_rewords_a_quickstart_chat_turn() -> None:
    """The quickstart's last table judges the guard it ships on a few chat turns
    (cli/chat_turns.py), which says none of them trains: held to it here, the same way."""
    from guardrail_dro.cli.chat_turns import CHAT_TURNS

    _assert_no_background_text_near([text for _, text, _ in CHAT_TURNS])


def test_the_second_chat_probe_is_frozen() -> None:
    data = (PROBES / "chat_probe_b.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == PROBE_B_SHA256, "chat_probe_b.json is frozen"
    probe = json.loads(data)
    assert (len(probe["everyday"]), len(probe["harmful"])) == (30, 20)


def test_the_wheel_ships_the_background_sets_with_their_licenses() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["guardrail_dro"]
    pkg = ROOT / "guardrail_dro"
    for s in BACKGROUND.values():
        names = {p.name for p in s.folder.iterdir()}
        assert {"LICENSE", "README.md", "train.csv.xz", "heldout.csv.xz"} <= names
        assert not any(n.endswith(".csv") for n in names)
        for p in s.folder.iterdir():
            assert any(fnmatch.fnmatch(p.relative_to(pkg).as_posix(), g) for g in globs), p
    assert "Attribution 4.0" in (BACKGROUND["convabuse-background"].folder / "LICENSE").read_text()


def test_a_users_file_in_every_format_splits_the_same_way(tmp_path: Path) -> None:
    texts = [f"ordinary question number {i}?" for i in range(40)]
    (tmp_path / "a.txt").write_text("\n".join(texts) + "\n\n")
    (tmp_path / "b.csv").write_text(
        "id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts))
    )
    (tmp_path / "c.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
    )
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(t) + "\n" for t in texts))
    expected = split_by_hash(texts)
    assert expected[1] and len(expected[0]) + len(expected[1]) == 40
    for name in ("a.txt", "b.csv", "c.jsonl.gz", "d.jsonl"):
        bg = load_background([str(tmp_path / name)])
        assert (list(bg.train), list(bg.heldout)) == expected, name
    assert split_by_hash(texts) == expected  # deterministic


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "no such file, and not a bundled background set"),
        ("two.csv", "a,b\nx,y\n", "needs a 'text' column"),
        ("x.parquet", "whatever", "must be .txt"),
        ("empty.txt", "\n\n", "no background text in it"),
        ("bad.jsonl", '{"text": "ok"}\n{"nope": 1}\n', "bad.jsonl:2"),
        ("one.txt", "only one text\n", "needs at least 2 distinct texts"),
    ],
)
def test_a_bad_file_fails_naming_it(tmp_path: Path, name: str, content, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_background([str(path)])


def test_background_items_carry_the_safe_class_and_no_annotators() -> None:
    schema = LabelSchema(classes=("ok", "bad"), safe=("ok",))
    ds = background_dataset(["hello", "how are you"], schema)
    assert [it.gold for it in ds] == ["ok", "ok"] and not ds.annotators
    with pytest.raises(DataError, match="safe class"):
        background_dataset(["hi"], LabelSchema(classes=("a", "b")))


def test_a_bundled_set_of_the_other_kind_is_refused() -> None:
    with pytest.raises(DataError, match="harmful-requests is harmful text: pass it with"):
        load_background(["everyday-requests", "harmful-requests"])
    with pytest.raises(DataError, match="everyday-requests is safe text"):
        load_background(["everyday-requests"], harmful=True)
    bad = load_background(["harmful-requests"], harmful=True)
    assert len(bad.train) > 400 and len(bad.heldout) > 80
    with pytest.raises(DataError, match="harmful-replies is harmful text: pass it with"):
        load_background(["assistant-replies", "harmful-replies"])
    replies = load_background(["harmful-replies"], harmful=True)
    assert (len(replies.train), len(replies.heldout)) == (330, 70)
    either = load_background(["harmful-requests:train", "everyday-requests:train"],
                             require_both=False, harmful=None)  # fmt: skip
    assert len(either.train) == len(bad.train) + 644
