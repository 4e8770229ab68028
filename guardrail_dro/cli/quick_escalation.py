"""The quickstart's escalation stage: the guard asks the LLM judge about its unsure band.

A guard alone trades recall against false positives along one score; an LLM judge is
slower and costs money but is often right where the guard is unsure. This stage shows
the pair the product offers (``serve.escalation``): the band of toxic scores in which
the judge decides is chosen on valid, where the annotation pass already holds the
judge's labels (no extra call), then the test split goes through ``EscalatingGuard``
for real: the guard, then the real OpenAI SDK over HTTP to the local endpoint replaying
the same LLM's recorded test labels, for the texts in the band only. The table puts it
beside the guard alone at the same valid recall target and the judge alone.

Offline replay only: with ``--live`` the judge would be paid for a few hundred test
texts, so the stage prints the command that does it instead. Its own module so that
``cli/quickstart.py`` stays the orchestrator.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.serve.calibration import OperatingPoint

__all__ = ["BUDGET", "TARGET_RECALL", "escalation_stage", "escalation_step", "shell"]

TARGET_RECALL = 0.90
"""Recall the guard alone and the band must keep on valid."""

BUDGET = 0.20
"""The most of valid's texts the band may send to the judge (its cost)."""


def shell(arg: str | Path) -> str:
    """``arg`` as a shell word inside a printed command: quoted where the shell would split
    it (an ``--out`` with a space), its brackets escaped for rich (``[/x]`` in a folder name
    raised a MarkupError, ``[red]`` vanished from the path)."""
    return escape(shlex.quote(str(arg)))


def escalation_step(
    guard_dir: Path,
    splits: dict[str, AnnotatedDataset],
    judged: list[str],
    replay: str,
    live: bool,
    out: Path,
    console: Console,
) -> dict | None:
    """The stage, where the annotation pass replayed an LLM whose test labels are known
    (``judged``: the columns the pass wrote); else the command that does it, and None."""
    title = "[bold]4/5 escalate the unsure band to the LLM judge[/]"
    if replay and not live and judged and replay in splits["test"].annotators:
        console.rule(f"{title} (replayed {escape(replay)}, recall >= {TARGET_RECALL:.2f})")
        return escalation_stage(guard_dir, splits, judged[0], replay, out, console)
    why = "--live" if live else "no LLM annotator's labels on valid and test to replay"
    console.rule(f"{title} (skipped: {why})")
    column = judged[0] if judged else "COLUMN"
    console.print(
        ("  the judge would be paid for the test texts in the band; " if live else "  ")
        + f"choose a band with: guardrail-dro escalation --guard {shell(guard_dir)} --valid "
        f"{shell(out / 'data' / 'valid.jsonl')} --judge {shell(column)} --out "
        f"{shell(out / 'escalation-band.json')}"
        + ("" if judged else " (COLUMN: an LLM annotator's column of valid)"),
        highlight=False,
        soft_wrap=True,
    )
    return None


def escalation_stage(
    guard_dir: Path,
    splits: dict[str, AnnotatedDataset],
    judge_column: str,
    replay: str,
    out: Path,
    console: Console,
) -> dict:
    """Choose the band on valid with the judge's labels in ``judge_column`` (what the
    annotation pass wrote), save it to ``out/escalation-band.json``, run test through
    the cascade with a judge replaying column ``replay`` of test, and print the table.

    Returns:
        ``{"band", "alone_band": EscalationBand, "shipped", "guard_alone", "cascade":
        OperatingPoint, "judge_alone": OperatingPoint | None, "sent": float,
        "judge_calls": int, "degraded": int, "blocked": ndarray, "scores": ndarray}``
        (on test; the bands are chosen on valid).
    """
    from annotators.openai_annotator import OpenAIAnnotator
    from annotators.testing import FakeLLMServer
    from guardrail_dro.cli.annotation_pass import replay_handler
    from guardrail_dro.serve.calibration import binary_metrics
    from guardrail_dro.serve.escalation import (
        EscalatingGuard,
        calibration_arrays,
        choose_band,
        judge_verdicts,
    )
    from guardrail_dro.serve.escalation_band import GuardIdentity
    from guardrail_dro.serve.guard import Guard

    t0 = time.perf_counter()
    valid, test = splits["valid"], splits["test"]
    guard = Guard.load(guard_dir)  # the precision a user's check gets (int8 on a CPU)
    arrays = calibration_arrays(guard, valid, judge_column)
    bands = [
        choose_band(*arrays, target_recall=TARGET_RECALL, max_defer=b, judge=judge_column,
                    guard=GuardIdentity.of(guard))  # recorded: check / serve note another
        for b in (0.0, BUDGET)
    ]  # fmt: skip
    alone, band = bands
    band_path = band.save(out / "escalation-band.json")

    safe = np.asarray(test.schema.safe_mask(), dtype=bool)
    toxic = ~safe[test.gold_array()]
    groups, names = (test.group_array(), list(test.groups)) if test.has_groups else (None, None)
    with FakeLLMServer(replay_handler([test], replay)) as srv:
        judge = OpenAIAnnotator(judge_column, api_key="local-replay", base_url=srv.openai_base_url)
        with (
            console.status(f"test: {len(test)} texts through the guard, its band to the judge"),
            EscalatingGuard(guard, judge, band) as cascade,
        ):
            checked = cascade.check_many(test.texts)
        calls = sum(srv.calls.values())
    scores = np.array([e.guard.toxic_score for e in checked])
    blocked = np.array([e.result.violation for e in checked])  # flagged counts, as blocked
    sent = float(np.mean([e.escalated for e in checked]))
    shipped = np.array([r.violation for r in guard.decide_many(test.texts)])
    rows: dict[str, tuple[OperatingPoint, float]] = {
        "guard as shipped": (binary_metrics(shipped, toxic, groups, names), 0.0),
        f"guard at recall {TARGET_RECALL:.2f}": (
            binary_metrics(scores >= alone.high, toxic, groups, names),
            0.0,
        ),
        "guard + judge": (binary_metrics(blocked, toxic, groups, names), sent),
    }
    verdict = judge_verdicts(test, replay)
    judge_alone = None
    if (verdict >= 0).all():  # the judge's recorded answer on every test text
        judge_alone = binary_metrics(verdict == 1, toxic, groups, names)
        rows["judge alone"] = (judge_alone, 1.0)

    high = "none" if band.high > 1 else f"{band.high:.3f}"
    console.print(
        f"  band [{band.low:.3f}, {high}) of the toxic score, chosen on valid with "
        f"{escape(judge_column)}'s labels: valid recall {band.valid.recall:.3f}, FPR "
        f"{band.valid.fpr:.3f}, {band.valid.deferred:.1%} sent (guard alone: FPR "
        f"{alone.valid.fpr:.3f}) -> {escape(str(band_path))}",
        highlight=False,
    )
    t = Table(
        title=f"test ({len(test)} texts), toxic = not safe",
        caption=f"as shipped: its own operating point; at recall {TARGET_RECALL:.2f}: the "
        f"threshold valid gives that recall; + judge: the band; judge alone: {escape(replay)}'s "
        "recorded test labels",
        header_style="bold",
    )
    for col in ("", "recall", "FPR", "accuracy", "worst group", "sent to judge"):
        t.add_column(col, justify="right" if col else "left")
    for label, (p, share) in rows.items():
        worst = "" if p.worst_group_accuracy is None else f"{p.worst_group_accuracy:.3f}"
        # n/a where a one-kind test split cannot measure it (binary_metrics gives None)
        recall, fpr = ("n/a" if v is None else f"{v:.3f}" for v in (p.recall, p.fpr))
        t.add_row(label, recall, fpr, f"{p.accuracy:.3f}", worst, f"{share:.1%}")
    console.print(t)
    degraded = sum(e.result.degraded for e in checked)
    console.print(
        f"  {calls} judge call(s) through the OpenAI SDK to the local replay endpoint"
        + (f"; {degraded} text(s) left to the error policy (judge failed)" if degraded else "")
        + f" ({time.perf_counter() - t0:.0f} s in all); try: guardrail-dro check --guard "
        f'{shell(guard_dir)} --escalate {shell(band_path)} --judge openai:gpt-4-turbo "some text"',
        highlight=False,
        soft_wrap=True,
    )
    return {
        "band": band,
        "alone_band": alone,
        "shipped": rows["guard as shipped"][0],
        "guard_alone": rows[f"guard at recall {TARGET_RECALL:.2f}"][0],
        "cascade": rows["guard + judge"][0],
        "judge_alone": judge_alone,
        "sent": sent,
        "judge_calls": calls,
        "degraded": degraded,
        "blocked": blocked,
        "scores": scores,
    }
