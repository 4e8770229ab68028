"""What a bench's results.md says: the table, then what to read it with (warnings,
paired differences, notes, judges, leakage). Apart from ``bench.py``, which runs the
bench and writes its files, so that the report's text can grow without the runner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from guardrail_dro.train.judges import judge_table
from guardrail_dro.train.paired import paired_table

if TYPE_CHECKING:
    from guardrail_dro.train.bench import BenchReport

__all__ = ["results_markdown"]


def results_markdown(report: BenchReport) -> str:
    """The markdown of results.md. The warnings come right below the table: a method
    whose decision is close to constant reads well there (``collapse.py``)."""
    md = [
        f"Test split, mean ± std over seeds {report.seeds}; {report.date[:10]}, "
        f"{report.machine}. Whole run {report.total_seconds:.0f} s, of which embedding "
        f"{report.embed_seconds:.0f} s; s/run is training alone. 'Unseen test': the "
        f"{report.unseen_test_items} test items whose text is in neither train nor valid "
        "(mean over seeds).",
        "",
        report.table(),
        "",
    ]
    if report.warnings:
        md += ["**Warnings:**", ""] + [f"- {line}" for line in report.warnings] + [""]
    if report.paired:
        some = next(iter(report.paired.values()))
        md += [
            f"Paired test differences, `{some.reference}` minus each rival: the table's "
            f"means on the same test items, with the {some.level:.0%} interval over "
            f"{some.draws:,} resamples of the test items within each group (seeds fixed; "
            "`judge:<a>` is an annotator's own labels, where they cover every test item, "
            "scored like the methods: all classes, so its worst group is not the judge "
            "table's binary one). "
            "'Ahead' is the share of resamples in which it scores higher; an interval "
            "that spans 0 is a lead the test split cannot tell from noise.",
            "",
            paired_table(report.paired),
            "",
        ]
    if report.note_lines():
        md += ["Notes of the runs:", ""] + [f"- {line}" for line in report.note_lines()] + [""]
    if report.judges:
        md += [
            "Annotators as judges: each annotator's own labels on the test items it "
            "labelled, no training (binary: toxic vs safe; USD / 1k texts: our prompt at "
            "list price, n/a for people).",
            "",
            judge_table(report.judges),
            "",
        ]
    if report.leakage:
        md += ["Leakage between splits (normalised text):", ""]
        md += [f"- {line}" for line in report.leakage] + [""]
    return "\n".join(md)
