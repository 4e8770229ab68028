"""Issue 12: data files with the quirks real datasets carry (regression tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_dro.data.readers import ReaderOptions, read_dataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ReaderError, SchemaError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "spelling", ["NaN", "nan", "NA", "N/A", "null", "None", "#N/A", "<NA>", ""]
)
def test_missing_value_spellings_are_missing_not_classes(tmp_path: Path, spelling: str) -> None:
    p = write(
        tmp_path / "t.csv",
        "text,label_1,label_2,label\n"
        f"a,safe,{spelling},safe\nb,toxic,toxic,{spelling}\nc,{spelling},safe,toxic\n",
    )
    ds = read_dataset(p)
    assert ds.schema.classes == ("safe", "toxic")
    assert [len(it.annotations) for it in ds] == [1, 2, 1]
    assert ds.items[1].gold is None


def test_crowd_kit_columns_are_the_long_layout(tmp_path: Path) -> None:
    p = write(
        tmp_path / "ck.csv",
        "task,worker,label,text\nt1,w1,safe,hello\nt1,w2,toxic,hello\nt2,w1,toxic,bad\n"
        "t3,w2,safe,fine\n",
    )
    ds = read_dataset(p)
    assert [it.item_id for it in ds] == ["t1", "t2", "t3"]
    assert [len(it.annotations) for it in ds] == [2, 1, 1]
    assert ds.annotators == ("w1", "w2")
    assert not ds.has_gold  # crowd-kit's label is an annotation, never gold


LONG_WITH_QUIRKS = (
    "item_id,text,annotator,label\n"
    "a,hello,h1,safe\n"
    "a,hello,h1,safe\n"  # line 3: the same vote twice (a re-export): merged
    "b,bad,h1,toxic\n"
    "b,bad,h1,safe\n"  # line 5: the same annotator, another label: a bad row
    "c,,h1,safe\n"  # line 6: an empty text: a bad row
    "d,fine,h2,safe\n"
)


def test_identical_duplicate_annotations_are_merged_with_a_note(tmp_path: Path) -> None:
    p = write(
        tmp_path / "d.csv",
        "item_id,text,annotator,label\na,x,h1,safe\na,x,h1,safe\nb,y,h1,toxic\n",
    )
    ds = read_dataset(p)
    assert [a.annotator for a in ds.items[0].annotations] == ["h1"]
    assert any("merged 1 identical duplicate" in n for n in ds.notes)


def test_conflicting_duplicates_and_empty_texts_stop_by_default(tmp_path: Path) -> None:
    p = write(tmp_path / "q.csv", LONG_WITH_QUIRKS)
    with pytest.raises(ReaderError, match=r"q.csv, line 5.*'toxic' earlier"):
        read_dataset(p)
    wide = write(tmp_path / "w.csv", "text,label_1\nhello,safe\n  ,toxic\n")
    with pytest.raises(ReaderError, match=r"line 3.*empty text"):
        read_dataset(wide)


def test_on_bad_rows_skip_reports_how_many_and_where(tmp_path: Path) -> None:
    p = write(tmp_path / "q.csv", LONG_WITH_QUIRKS)
    ds = read_dataset(p, ReaderOptions(on_bad_rows="skip"))
    assert [it.item_id for it in ds] == ["a", "b", "d"]
    assert ds.items[1].label_of("h1") == "toxic"
    assert any("skipped 2 bad row(s) on lines 5, 6" in n for n in ds.notes), ds.notes
    wide = write(tmp_path / "w.csv", "text,label_1\nhello,safe\n  ,toxic\nbye,toxic\n")
    ds = read_dataset(wide, ReaderOptions(on_bad_rows="skip"))
    assert ds.texts == ["hello", "bye"]
    assert any("skipped 1 bad row(s) on lines 3" in n for n in ds.notes)


def test_cli_on_bad_rows_option_maps_to_reader_options() -> None:
    from guardrail_dro.cli.options import ColumnOptions

    assert ColumnOptions(on_bad_rows="skip").reader_options().on_bad_rows == "skip"
    assert ColumnOptions().reader_options().on_bad_rows == "error"


def test_schema_error_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path / "s.csv", "text,label_1\nhello,safe\nbye,toxic\nwho,7\n")
    with pytest.raises(SchemaError, match=r"s.csv, line 4: .*label '7'"):
        read_dataset(p, schema=LabelSchema(classes=("safe", "toxic")))


def test_duplicate_item_id_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path / "i.csv", "id,text,label_1\n1,a,safe\n2,b,safe\n1,c,toxic\n")
    with pytest.raises(ReaderError, match=r"i.csv, line 4.*'1' appears twice.*line 2"):
        read_dataset(p)


def test_a_directory_is_not_reported_as_file_not_found(tmp_path: Path) -> None:
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(ReaderError, match="is a directory") as exc:
        read_dataset(tmp_path / "data.csv")
    assert "not found" not in str(exc.value)


def test_a_training_split_without_annotations_stops_the_trainer() -> None:
    # Held already before issue 12 (the trainer's own check); kept beside the crowd-kit
    # test so that a file misread as unannotated can never train silently.
    from guardrail_dro.data.items import AnnotatedDataset, Item
    from guardrail_dro.errors import DataError
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    schema = LabelSchema(classes=("safe", "toxic"))
    train = AnnotatedDataset(
        [Item(item_id="1", text="a", gold="safe"), Item(item_id="2", text="b", gold="toxic")],
        schema,
        name="train",
    )
    valid = AnnotatedDataset(
        [Item(item_id="v", text="c", gold="safe", group="g")], schema, name="valid"
    )
    with pytest.raises(DataError, match="no annotator labels"):
        BiLevelTrainer(TrainConfig(method="ours", progress=False)).fit(train, valid)
