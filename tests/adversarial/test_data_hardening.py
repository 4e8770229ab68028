"""Issue 12: data files with the quirks real datasets carry (regression tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_dro.data.readers import read_dataset


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
