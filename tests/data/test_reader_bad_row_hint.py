"""A bad row's error says what to do about it, not only where it is.

A header repeated mid-file (exports joined with ``cat``), a blank id or an empty text
stopped the run with the file, line and column but no way on: the user had to find
``--on-bad-rows skip`` in the help. The error now names it; the note a skipped row
leaves, and errors that skipping cannot help (no line), are unchanged."""

from pathlib import Path

import pytest

from guardrail_dro.data.readers import ReaderOptions, read_dataset
from guardrail_dro.errors import ReaderError

WIDE = "item_id,text,label_1,label_2\n"
HINT = "fix or delete that row, or pass --on-bad-rows skip to skip such rows and count them"


@pytest.mark.parametrize(
    ("name", "body", "place"),
    [
        ("joined.csv", WIDE + "1,a,safe,hate\n" + WIDE + "2,b,hate,hate\n", "line 3"),
        ("blank_id.csv", WIDE + "1,a,safe,hate\n,b,hate,hate\n", "line 3, column 'item_id'"),
        ("no_text.csv", WIDE + "1,a,safe,hate\n2,,hate,hate\n", "line 3, column 'text'"),
    ],
)
def test_a_bad_rows_error_names_the_way_on(
    tmp_path: Path, name: str, body: str, place: str
) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(ReaderError) as got:
        read_dataset(path)
    said = str(got.value)
    assert said.startswith(f"{path}, {place}: ") and said.endswith(HINT), said
    assert got.value.line == 3 and HINT not in got.value.reason  # the skip note's reason
    ds = read_dataset(path, ReaderOptions(on_bad_rows="skip"))
    assert any("skipped 1 bad row(s) on lines 3" in n for n in ds.notes)
    assert not any(HINT in n for n in ds.notes)


def test_an_error_skipping_cannot_help_does_not_offer_it(tmp_path: Path) -> None:
    path = tmp_path / "sep.csv"
    path.write_text("sep=,\n" + WIDE + "1,a,safe,hate\n")
    with pytest.raises(ReaderError) as got:
        read_dataset(path)
    assert "--on-bad-rows" not in str(got.value)
