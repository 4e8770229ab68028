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
