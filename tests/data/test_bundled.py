"""The bundled toxic-questions dataset: read by name, the same dataset as the CSVs, and
shipped in the wheel; compressed files read like plain ones."""

from __future__ import annotations

import fnmatch
import gzip
import json
import lzma
import tomllib
from pathlib import Path

import pytest

from guardrail_dro.data.bundled import BUNDLED, load_bundled, parse_spec
from guardrail_dro.data.readers import read_dataset, read_items, read_splits
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError
from tests.conftest import TOXIC_QUESTIONS

ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="module")
def bundled():
    return load_bundled("toxic-questions")


def test_loads_by_name_with_its_schema(bundled) -> None:
    splits, schema = bundled
    assert [len(splits[k]) for k in SPLITS] == [6941, 1000, 1710]
    assert schema == LabelSchema.load(ROOT / "examples" / "toxic_questions_schema.json")
    assert schema.safe == ("14",) and splits["test"].has_groups and not splits["train"].has_gold
    assert set(BUNDLED["toxic-questions"].annotators) == set(splits["train"].annotators)


def test_same_hashes_as_the_recorded_bench(bundled) -> None:
    # The reference bench (read from ../shared's CSVs with examples/..schema.json) recorded
    # these; the bench drops train items seen in test before it records train.
    splits, _ = bundled
    recorded = json.loads(
        (ROOT / "benchmarks/results/toxic-questions/results.json").read_text()
    )["data"]
    train, _ = splits["train"].without_overlap(splits["test"])
    assert train.content_hash() == recorded["train"]["sha256"]
    assert len(train) == recorded["train"]["items"]
    for k in ("valid", "test"):
        assert splits[k].content_hash() == recorded[k]["sha256"], k


@pytest.mark.skipif(
    not TOXIC_QUESTIONS.is_dir(),
    reason="../shared/datasets/toxic-questions is absent: the bundled copy is checked "
    "against the recorded bench hashes only",
)
def test_identical_to_the_shared_csvs(bundled) -> None:
    splits, schema = bundled
    shared, _ = read_splits({k: TOXIC_QUESTIONS / f"{k}.csv" for k in SPLITS}, schema=schema)
    for k in SPLITS:
        a, b = splits[k], shared[k]
        assert a.items == b.items, k  # ids, texts, every annotation, gold, group
        assert a.annotators == b.annotators and a.groups == b.groups
        assert (a.label_matrix() == b.label_matrix()).all()
        assert a.content_hash() == b.content_hash()
    for k in SPLITS:
        raw = lzma.decompress(BUNDLED["toxic-questions"].path(k).read_bytes())
        assert raw == (TOXIC_QUESTIONS / f"{k}.csv").read_bytes(), k


def test_a_split_name_works_wherever_a_path_does(bundled) -> None:
    splits, schema = bundled
    test = read_dataset("toxic-questions:test")
    assert test.name == "test" and test.schema == schema
    assert test.content_hash() == splits["test"].content_hash()
    mixed, s = read_splits({"valid": "toxic-questions:valid"})
    assert s == schema and mixed["valid"].content_hash() == splits["valid"].content_hash()


def test_a_given_schema_wins_over_the_bundled_one() -> None:
    own = LabelSchema.from_labels([str(i) for i in range(15)])
    _, schema = read_splits({"valid": "toxic-questions:valid"}, schema=own)
    assert schema == own and not schema.safe


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("toxic:train", r"'toxic' is not a bundled dataset \(known: toxic-questions"),
        ("toxic-questions:dev", r"has no split 'dev'; its splits are train, valid, test"),
    ],
    ids=["unknown-name", "unknown-split"],
)
def test_unknown_names_list_the_known_ones(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_items(spec)
    with pytest.raises(DataError, match="known: toxic-questions"):
        load_bundled("nope")


def test_an_existing_file_wins_over_a_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("toxic-questions:test").write_text("text,label_1\na,0\nb,1\n", encoding="utf-8")
    assert parse_spec("toxic-questions:test") is None
    assert [it.text for it in read_items("toxic-questions:test")] == ["a", "b"]
    assert parse_spec("data/train.csv") is None


@pytest.mark.parametrize("compress", ["xz", "gz"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_compressed_files_read_like_plain_ones(tmp_path: Path, compress: str, suffix: str) -> None:
    if suffix == ".csv":
        body = "\ufefftext,label_1,label\nhello,0,0\nworld,1,0\n"
    else:
        body = "".join(
            json.dumps({"item_id": str(i), "text": t, "annotator": "a", "label": lab}) + "\n"
            for i, (t, lab) in enumerate([("hello", "0"), ("world", "1")])
        )
    plain = tmp_path / f"d{suffix}"
    plain.write_text(body, encoding="utf-8")
    packed = tmp_path / f"d{suffix}.{compress}"
    opener = lzma.compress if compress == "xz" else gzip.compress
    packed.write_bytes(opener(body.encode("utf-8")))
    assert read_items(packed) == read_items(plain)


def test_a_corrupt_compressed_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "train.csv.xz"
    bad.write_bytes(b"not xz at all")
    with pytest.raises(DataError, match=r"train\.csv\.xz.*cannot decompress"):
        read_items(bad)


def test_the_wheel_ships_every_bundled_file() -> None:
    # setuptools copies package data that pyproject's globs match; a file left out would
    # be missing from a non-editable install.
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["guardrail_dro"]
    pkg = ROOT / "guardrail_dro"
    for ds in BUNDLED.values():
        files = sorted(p for p in ds.folder.iterdir() if p.is_file())
        names = {p.name for p in files}
        assert {"LICENSE", "README.md", "schema.json"} <= names
        assert {f"{s}.csv.xz" for s in ds.splits} <= names
        assert not any(n.endswith(".csv") for n in names)  # never the plain CSVs
        for p in files:
            rel = p.relative_to(pkg).as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in globs), rel
        assert "MIT" in (ds.folder / "LICENSE").read_text()
        assert sum(p.stat().st_size for p in files) < 1_000_000
