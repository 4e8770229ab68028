"""`guardrail-dro agreement` on the inputs users give it: display names that collide,
failures files that cannot be read, heatmap paths, long names and crowds."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from annotators.agreement import GOLD, agreement_report, read_failures
from annotators.agreement_view import (
    MATRIX_MAX,
    check_heatmap_path,
    pairwise_table,
    recall_table,
    save_heatmap,
)
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import ConfigError, DataError
from tests.annotators.test_ann_agreement import SCHEMA, _item
from tests.annotators.test_ann_cli import CLI, _env


def _two(gold: str | None = "safe") -> AnnotatedDataset:
    items = [
        _item(0, gold, a=("safe", None), b=("toxic", None)),
        _item(1, gold, a=("safe", None), b=("safe", None)),
        _item(2, gold, a=("toxic", None), b=("toxic", None)),
    ]
    return AnnotatedDataset(items, SCHEMA, name="two")


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ({"a": "X", "b": "X"}, "shown as 'X'"),  # b's numbers replaced a's in every table
        ({"a": "b"}, "shown as 'b'"),
        ({"a": GOLD}, "gold labels"),  # a was reported as kappa 1.000 vs gold
        ({"c": "typo"}, "no such annotator.*a, b"),  # silently ignored
    ],
)
def test_display_names_that_would_hide_numbers_are_refused(
    names: dict[str, str], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        agreement_report(_two(), names=names)
    # renaming to distinct names is fine, and an annotator may be shown as "gold" where
    # the data has no gold labels
    r = agreement_report(_two(), names={"a": "A", "b": "B"})
    assert r.kappa["A"]["B"] is not None and r.kappa["A"][GOLD] is not None
    assert agreement_report(_two(None), names={"a": GOLD}).overlap[GOLD]["b"] == 3


def test_an_annotator_called_gold_keeps_its_labels_without_gold() -> None:
    from guardrail_dro.data.items import Annotation, Item

    items = [
        Item(item_id=str(i), text=f"t{i}", annotations=(
            Annotation(annotator=GOLD, label="safe" if i else "toxic"),
            Annotation(annotator="b", label="safe")))
        for i in range(4)
    ]  # fmt: skip
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="g"))
    assert r.overlap[GOLD]["b"] == 4 and r.agreement[GOLD]["b"] == 0.75
    assert r.annotators[0].labelled == 4


def test_unreadable_failures_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_failures(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_failures(bad)
    bad.write_text('{"annotator": "a", "outcome": "refused"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r":2: expected a JSON object"):
        read_failures(bad)


def test_cli_names_a_bad_failures_file_or_heatmap_format(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,label_1,label_2,gold\na,x,x,x\nb,y,x,y\n")
    for args, said in [
        (["--failures", str(tmp_path / "nope.jsonl")], "failures file not found"),
        (["--heatmap", str(tmp_path / "h.txt")], "matplotlib cannot write 'txt'"),
        (["--name", "label_1=gold"], "gold labels"),
    ]:
        r = subprocess.run(
            [CLI, "agreement", "--data", str(data), *args],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 2 and said in " ".join(r.stderr.split()), r.stderr
        assert "Traceback" not in r.stderr
    check_heatmap_path(tmp_path / "h.png")
    check_heatmap_path(tmp_path / "h")  # no extension: matplotlib writes a PNG
    with pytest.raises(ConfigError, match="use .png"):
        check_heatmap_path("h.docx")


def test_long_annotator_names_are_never_cut_in_the_tables() -> None:
    """ConvAbuse's 8 annotators (annotator_1 ...) plus gold at 120 columns: every row
    and column of the matrices read "annotato…"; which row was whose could not be told."""
    from rich.console import Console

    names = [f"annotator_{k}" for k in range(1, 9)]
    items = [_item(i, "safe" if i % 3 else "toxic",
                   **{n: ("safe" if (i + k) % 4 else "toxic", None) for k, n in enumerate(names)})
             for i in range(40)]  # fmt: skip
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="long"))
    console = Console(width=120, record=True)
    for table in (pairwise_table(r), recall_table(r)):
        console.print(table)
    text = console.export_text()
    assert "…" not in text
    row_names = [line.split("│")[1].strip() for line in text.splitlines() if "│" in line]
    assert set(names) <= set(row_names)


def test_a_crowds_heatmap_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """80 workers: 6,561 cell labels and 81 overprinted names per axis (300 workers took
    23 s to draw); now the matrix alone, and the recall panel of MATRIX_MAX workers."""
    from matplotlib.axes import Axes

    n = 80
    items = [_item(i, "safe" if i % 2 else "toxic",
                   **{f"w{w}": ("safe" if (i + w) % 3 else "toxic", None)
                      for w in (i % n, (i + 1) % n, (i + 7) % n)})
             for i in range(4 * n)]  # fmt: skip
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="crowd"))
    texts: list[tuple[Any, ...]] = []
    ticks: list[int] = []
    orig_text, orig_ticks = Axes.text, Axes.set_xticks

    def text(self: Axes, *a: Any, **k: Any) -> Any:
        texts.append(a)
        return orig_text(self, *a, **k)

    def set_xticks(self: Axes, t: Any, *a: Any, **k: Any) -> Any:
        ticks.append(len(t))
        return orig_ticks(self, t, *a, **k)

    monkeypatch.setattr(Axes, "text", text)
    monkeypatch.setattr(Axes, "set_xticks", set_xticks)
    png = save_heatmap(r, tmp_path / "crowd.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert texts == [] and max(ticks) == MATRIX_MAX


def test_an_annotator_that_labelled_nothing_still_gets_its_rates() -> None:
    """An LLM refused (or answered invalidly) on every item has no label in the data: it
    had no row at all, so its 100% refusal rate was never shown."""
    fails = [
        {"item_id": str(i), "annotator": "llm", "outcome": o}
        for i, o in enumerate(["refused", "refused", "invalid"])
    ]
    r = agreement_report(_two(), fails, names={"llm": "My LLM"})
    q = {x.name: x for x in r.annotators}
    assert q["My LLM"].labelled == 0 and q["My LLM"].kind == "llm"
    assert q["My LLM"].refusal_rate == pytest.approx(2 / 3)
    assert q["My LLM"].invalid_rate == pytest.approx(1 / 3)
    # a person ("a") is not asked by annotate: no rate (it read 0.0 before 2026-12-07)
    assert q["a"].refusal_rate is None and "My LLM" not in r.names  # no kappa to show


def test_outputs_that_cannot_be_written_are_named_before_the_data_is_read(
    tmp_path: Path,
) -> None:
    """``--json /proc/x.json`` or ``--heatmap FILE/x.png`` (a parent that is a file): an
    OSError traceback, once the data was read and every number computed."""
    data = tmp_path / "d.csv"
    data.write_text("text,label_1,label_2,gold\na,x,x,x\nb,y,x,y\n")
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        (["--data", str(data), "--heatmap", str(afile / "x.png")], "--heatmap", "is a file"),
        # the data does not exist: the output is checked first
        (["--data", str(tmp_path / "nope.csv"), "--json", str(afile / "sub" / "x.json")],
         "--json", "is a file"),
    ]  # fmt: skip
    if Path("/proc/self").is_dir():  # a folder nobody can create a file in, root included
        proc = ["--data", str(data), "--json", "/proc/x.json"]
        cases.append((proc, "--json", "cannot write a file in /proc"))
    for args, option, said in cases:
        r = subprocess.run(
            [CLI, "agreement", *args],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        err = " ".join(r.stderr.split())
        assert r.returncode == 2 and option in err and said in err, r.stderr
        assert "Traceback" not in r.stderr and "Annotators" not in r.stderr
    assert afile.read_text() == ""


def test_an_annotator_whose_labels_never_vary_has_no_kappa_with_itself() -> None:
    """Its kappa is undefined (sklearn: nan) with anyone whose labels never vary, itself
    included; the diagonal read 1.00 for it all the same."""
    items = [_item(i, "safe" if i % 2 else "toxic", a=("safe", None),
                   b=("safe" if i % 3 else "toxic", None)) for i in range(6)]  # fmt: skip
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="flat"))
    assert r.kappa["a"]["a"] is None and r.agreement["a"]["a"] == 1.0
    assert r.kappa["b"]["b"] == 1.0 and r.kappa[GOLD][GOLD] == 1.0
    assert r.kappa["a"]["b"] == pytest.approx(0.0)  # defined: b's labels vary
    assert next(iter(pairwise_table(r).columns[1].cells)) == "-"  # a's row, a's column


def test_the_heatmap_shows_a_negative_kappa_apart_from_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scale started at 0: a pair that disagrees more than chance (kappa -1 here) was
    drawn in the colour of kappa 0, and an undefined cell (no shared items) as blank."""
    from matplotlib.axes import Axes

    items = [_item(i, "safe" if i % 2 else "toxic", a=("safe" if i % 2 else "toxic", None),
                   b=("toxic" if i % 2 else "safe", None)) for i in range(6)]  # fmt: skip
    items.append(_item(6, None, c=("safe", None)))  # c shares no item with a or b
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="neg"))
    assert r.kappa["a"]["b"] == pytest.approx(-1.0) and r.kappa["a"]["c"] is None
    images: list[Any] = []
    orig = Axes.imshow

    def imshow(self: Axes, *a: Any, **k: Any) -> Any:
        images.append(orig(self, *a, **k))
        return images[-1]

    monkeypatch.setattr(Axes, "imshow", imshow)
    save_heatmap(r, tmp_path / "neg.png")
    im = images[0]  # the kappa matrix

    def colour(k: float) -> tuple[float, ...]:
        return tuple(im.cmap(im.norm(k)))

    shown = {colour(-1.0), colour(-0.5), colour(0.0), colour(0.5), colour(1.0)}
    assert len(shown) == 5
    assert tuple(im.cmap.get_bad()) not in shown | {(0.0, 0.0, 0.0, 0.0)}
