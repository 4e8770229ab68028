"""Readers on hostile but realistic files: concatenated exports, other encodings, JSON
with a key twice, blank ids, blank annotator columns. Each was read silently wrong, or
failed with a message that did not say what was wrong."""

from pathlib import Path

import pytest

from guardrail_dro.data.readers import ReaderOptions, read_dataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ReaderError, SchemaError

SCHEMA = LabelSchema(classes=("safe", "hate"), safe=("safe",))
WIDE = "text,label_1,label_2,gold\n"
LONG = "item_id,text,annotator,label\n"


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize(
    ("name", "body", "again"),
    [
        ("wide.csv", WIDE + "a,safe,hate,safe\n" + WIDE + "b,hate,hate,hate\n", 3),
        # the second export's byte-order mark kept mid-file (``cat a.csv b.csv``)
        ("bom.csv", WIDE + "a,safe,hate,safe\n\ufeff" + WIDE + "b,hate,hate,hate\n", 3),
        # the same names in another order: still the header, not an item
        ("order.csv", WIDE + "a,safe,hate,safe\ngold,label_2,label_1,text\nb,hate,hate,hate\n", 3),
        ("long.csv", LONG + "1,a,u,safe\n" + LONG + "2,b,u,hate\n", 3),
    ],
)
def test_a_header_repeated_mid_file_is_a_bad_row_not_an_item(
    tmp_path: Path, name: str, body: str, again: int
) -> None:
    """Concatenated exports repeat the header: it read as an item whose labels were the
    column names, and an inferred schema took ``label_1``, ``gold``... as classes."""
    p = write(tmp_path / name, body)
    with pytest.raises(ReaderError, match=rf"{name}, line {again}: the header row again"):
        read_dataset(p)
    ds = read_dataset(p, ReaderOptions(on_bad_rows="skip"))
    assert ds.texts == ["a", "b"] and ds.schema.classes == ("hate", "safe")
    assert any(f"skipped 1 bad row(s) on lines {again}" in n for n in ds.notes)


def test_a_one_column_file_whose_text_is_its_column_name_still_reads(tmp_path: Path) -> None:
    p = write(tmp_path / "t.csv", "text\nhello\ntext\n")
    assert read_dataset(p, schema=SCHEMA).texts == ["hello", "text"]


@pytest.mark.parametrize(
    ("encoding", "match"),
    [
        ("utf-16", r"UTF-16 text \(it begins with a UTF-16 byte-order mark\), not UTF-8"),
        ("utf-16-le", r"UTF-16 or UTF-32 text \(NUL bytes between its characters"),
        ("utf-32", r"UTF-32 text \(it begins with a UTF-32 byte-order mark\)"),
    ],
)
@pytest.mark.parametrize("name", ["w.csv", "w.jsonl"])
def test_a_utf16_file_is_named_as_such(
    tmp_path: Path, encoding: str, match: str, name: str
) -> None:
    """Excel's "Unicode Text" and PowerShell write UTF-16: with a byte-order mark it was
    "not UTF-8 (byte 0xff)", without one it decoded with a NUL after every character and
    failed as "no text column" listing garbled names."""
    body = WIDE + "a,safe,hate,safe\n" if name.endswith(".csv") else '{"text": "a"}\n'
    p = write(tmp_path / name, body.encode(encoding))
    with pytest.raises(ReaderError, match=rf"{name}, line 1: {match}.*save the file as UTF-8"):
        read_dataset(p, schema=SCHEMA)


def test_a_utf16_schema_file_is_named_as_such(tmp_path: Path) -> None:
    p = write(tmp_path / "s.json", '{"classes": ["safe", "hate"]}'.encode("utf-16"))
    with pytest.raises(SchemaError, match=r"s.json: UTF-16 text .*save the label schema as UTF-8"):
        LabelSchema.load(p)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('{"item_id": "1", "text": "a", "gold": "safe", "gold": "hate"}', "gold"),
        (
            '{"item_id": "1", "text": "a", "annotations": '
            '[{"annotator": "u", "label": "safe", "label": "hate"}]}',
            "label",
        ),
        (
            '{"item_id": "1", "text": "a", "annotator": "u", "label": "safe", "label": "hate"}',
            "label",
        ),
        ('{"text": "a", "label_1": "safe", "label_1": "hate"}', "label_1"),
    ],
    ids=["ours-gold", "ours-annotation", "long", "wide"],
)
def test_a_json_key_given_twice_is_refused(tmp_path: Path, line: str, key: str) -> None:
    """JSON keeps the last of two equal keys without a word: the item read as ``hate``."""
    p = write(tmp_path / "d.jsonl", '{"item_id": "0", "text": "z"}\n' + line + "\n")
    with pytest.raises(ReaderError, match=rf"d.jsonl, line 2, column '{key}': the key '{key}'"):
        read_dataset(p, schema=SCHEMA)


def test_a_schema_key_given_twice_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path / "s.json", '{"classes": ["safe", "hate"], "classes": ["a", "b"]}')
    with pytest.raises(SchemaError, match=r"s.json: the key 'classes' appears twice"):
        LabelSchema.load(p)


def test_a_blank_id_cell_is_a_bad_row_not_a_row_number(tmp_path: Path) -> None:
    """An id column's blank cell took the row number as its id: silently an id no file
    gave, and one that another row's real id could name (then "appears twice", pointing
    at the line with no id)."""
    p = write(tmp_path / "i.csv", "id,text,label_1\n10,a,safe\n,b,hate\n2,c,hate\n")
    with pytest.raises(ReaderError, match=r"i.csv, line 3, column 'id': missing item id"):
        read_dataset(p, schema=SCHEMA)
    ds = read_dataset(p, ReaderOptions(on_bad_rows="skip"), schema=SCHEMA)
    assert [it.item_id for it in ds] == ["10", "2"]


@pytest.mark.parametrize("named", [False, True])
def test_an_annotator_column_with_no_label_is_noted(tmp_path: Path, named: bool) -> None:
    p = write(tmp_path / "e.csv", "text,label_1,label_2\na,safe,\nb,hate,\n")
    opts = ReaderOptions(annotator_cols=("label_1", "label_2") if named else None)
    ds = read_dataset(p, opts, schema=SCHEMA)
    assert ds.annotators == ("label_1",)
    assert any("annotator column(s) ['label_2'] have no label in any row" in n for n in ds.notes)


def test_a_byte_order_mark_mid_file_is_not_part_of_a_cell(tmp_path: Path) -> None:
    """Files concatenated without their headers keep the later one's byte-order mark: a
    JSONL line failed as "Unexpected UTF-8 BOM", and a CSV's first cell gained an
    invisible character, so ``safe`` and ``\\ufeffsafe`` were two classes."""
    csv = write(tmp_path / "c.csv", "label_1,text\nhate,a\n\ufeffsafe,b\n")
    assert read_dataset(csv).schema.classes == ("hate", "safe")
    jsonl = write(tmp_path / "j.jsonl", '{"text": "a", "label_1": "hate"}\n\ufeff'
                  '{"text": "b", "label_1": "safe"}\n')  # fmt: skip
    assert read_dataset(jsonl).texts == ["a", "b"]


def test_a_separator_hint_line_is_named(tmp_path: Path) -> None:
    """Spreadsheets write ``sep=,`` above the header; it failed as "no text column"."""
    p = write(tmp_path / "s.csv", "sep=,\n" + WIDE + "a,safe,hate,safe\n")
    with pytest.raises(ReaderError, match=r"s.csv, line 1: the first line 'sep=,' is a sp"):
        read_dataset(p)


def test_a_text_in_a_label_column_is_refused_not_echoed(tmp_path: Path) -> None:
    """A 50 MB cell in a label column (a shifted column) became a class, and every note,
    error and table naming the classes printed it: 100 MB from ``agreement``."""
    p = write(tmp_path / "l.csv", "text,label_1\na,safe\nb," + "x" * 2_000_000 + "\n")
    with pytest.raises(ReaderError) as exc:
        read_dataset(p)
    assert len(str(exc.value)) < 400
    assert "l.csv, line 3: item '2', annotator 'label_1': a label of 2,000,000 characters" in str(
        exc.value
    )


def test_messages_listing_columns_cut_long_names(tmp_path: Path) -> None:
    """A CSV without a header row has its first row's texts as column names, which the
    "no text column" message printed whole."""
    p = write(tmp_path / "h.csv", "x" * 100_000 + ",safe\nb,hate\n")
    with pytest.raises(ReaderError, match="no text column") as exc:
        read_dataset(p)
    assert len(str(exc.value)) < 300


def test_an_inferred_schema_of_very_many_classes_is_named_briefly(tmp_path: Path) -> None:
    """A comment column named like an annotator's (``annotation_notes``) gave a class per
    comment, and the inferred-schema note listed every one, twice."""
    rows = "".join(f"t{i},safe,comment number {i} on this item\n" for i in range(500))
    p = write(tmp_path / "n.csv", "text,label_1,annotation_notes\n" + rows)
    (note,) = [n for n in read_dataset(p).notes if n.startswith("label schema inferred")]
    assert "501 of them ('comment number 0 on this item'," in note
    assert "may be a text or comment column read as labels" in note and len(note) < 800
