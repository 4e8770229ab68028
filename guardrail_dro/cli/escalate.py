"""``guardrail-dro escalation``: choose where a guard asks an LLM judge, on validation.

A thin shell over ``serve.escalation.calibrate_escalation``: the guard's own toxic
scores on the split, its gold labels and the judge's labels (the annotator column named
by ``--judge``, e.g. the ``openai:gpt-4o`` column ``guardrail-dro annotate`` wrote)
choose the band; a table shows what other budgets would give, and ``--out`` keeps the
chosen band for ``guardrail-dro check --escalate``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from guardrail_dro.cli.options import ColumnOptions, GuardDir, OptionGroup, takes_option_groups

if TYPE_CHECKING:
    from guardrail_dro.serve.escalation import EscalatingGuard
    from guardrail_dro.serve.guard import Guard

__all__ = ["JudgeOptions", "escalation", "register"]

_J = "Escalation to an LLM judge"

err = Console(stderr=True, emoji=False)  # ":smile:" in a path or label is text

BUDGETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
"""Judge budgets the table shows beside the one asked for."""


@takes_option_groups
def escalation(
    guard_dir: GuardDir,
    valid: Annotated[
        Path,
        typer.Option(
            "--valid",
            help="Validation data with gold labels and the judge's labels (a split "
            "shipped with the package, e.g. toxic-questions:valid, or a file).",
        ),
    ],
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            help="The annotator column holding the judge's labels on --valid (what "
            "`guardrail-dro annotate --annotator openai:MODEL` names openai:MODEL).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", dir_okay=False, help="Write the chosen band here (JSON)."),
    ] = None,
    target_recall: Annotated[
        float,
        typer.Option("--target-recall", min=0.0, max=1.0, help="Recall the band must keep."),
    ] = 0.90,
    max_defer: Annotated[
        float,
        typer.Option(
            "--max-defer",
            min=0.0,
            max=1.0,
            help="The most of the texts the guard may send to the judge (its cost).",
        ),
    ] = 0.20,
    precision: Annotated[
        str, typer.Option("--precision", help="auto (int8 on CPU when exported), int8, fp32.")
    ] = "auto",
    *,
    columns: ColumnOptions,
) -> None:
    """Choose the band of toxic scores in which the guard asks an LLM judge.

    Scores below the band are allowed and above it blocked by the guard alone (a
    millisecond); inside it the judge's label decides. The band is the one with
    the lowest validation false-positive rate at recall >= --target-recall that
    sends at most --max-defer of the texts to the judge; budget 0 is the guard
    alone at its best threshold for that recall.

    Example: guardrail-dro escalation --guard runs/guard --valid
    toxic-questions:valid --judge label_5 --max-defer 0.2 --out runs/band.json
    """
    from rich.table import Table

    from guardrail_dro.data.readers import read_splits
    from guardrail_dro.outputs import check_writable
    from guardrail_dro.serve.artifact import load_artifact
    from guardrail_dro.serve.escalation import calibration_arrays, choose_band
    from guardrail_dro.serve.escalation_band import GuardIdentity, band_notes, judge_verdicts
    from guardrail_dro.serve.guard import Guard

    if out is not None:  # refused now, not after scoring the whole split
        check_writable(out, "--out")
    schema = load_artifact(guard_dir, verify=False).schema
    data = read_splits({"valid": valid}, columns.reader_options(), schema=schema)[0]["valid"]
    for n in data.notes:  # a path or a label of "[v2]" is text, not markup
        err.print(f"note: {n}", highlight=False, markup=False)
    guard = Guard.load(guard_dir, provider="cpu", precision=precision)
    budgets = sorted({*BUDGETS, max_defer})
    with err.status(f"scoring {len(data)} texts with the {guard.precision} guard"):
        arrays = calibration_arrays(guard, data, judge)
    identity = GuardIdentity.of(guard)  # recorded: check / serve note another guard
    bands = {
        b: choose_band(*arrays, target_recall=target_recall, max_defer=b, judge=judge,
                       guard=identity)
        for b in (*budgets, 1.0)  # 1.0, not shown: would a larger budget help?
    }  # fmt: skip
    title = escape(f"{valid}: judge {judge}, recall >= {target_recall}")  # a path of "[v2]"
    t = Table(title=title, header_style="bold")
    for col in ("judge budget", "band (toxic score)", "recall", "FPR", "sent to judge"):
        t.add_column(col, justify="right")
    for b in budgets:
        band = bands[b]
        chosen = " (chosen)" if b == max_defer else ""
        high = "none" if band.high > 1 else f"{band.high:.3f}"
        t.add_row(
            f"{b:.0%}{chosen}",
            "empty: guard alone" if band.low == band.high else f"[{band.low:.3f}, {high})",
            f"{band.valid.recall:.3f}",
            f"{band.valid.fpr:.3f}",
            f"{band.valid.deferred:.1%}",
        )
    _, toxic, verdict = arrays  # for reference: the judge on every text
    t.add_row("judge alone", "", f"{verdict[toxic].mean():.3f}", f"{verdict[~toxic].mean():.3f}",
              "100%", style="dim")  # fmt: skip
    Console(emoji=False).print(t)  # the title names the path and the judge column
    unlabelled = int((judge_verdicts(data, judge) < 0).sum())
    notes = band_notes(len(data), toxic, bands[max_defer], unlabelled=unlabelled,
                       widest=bands[1.0], judge=verdict)  # fmt: skip
    for n in notes:
        err.print(f"note: {n}", highlight=False, markup=False)
    if out is not None:
        bands[max_defer].save(out)
        err.print(f"band written to {out}", highlight=False, markup=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JudgeOptions(OptionGroup):
    """``--escalate BAND --judge SPEC``: the texts in the band are decided by an LLM judge
    (``check`` and ``serve``)."""

    escalate: Annotated[
        Path | None,
        typer.Option(
            "--escalate",
            help="A band from `guardrail-dro escalation --out`: texts whose toxic score "
            "falls in it are decided by the --judge LLM.",
            exists=True,
            dir_okay=False,
            rich_help_panel=_J,
        ),
    ] = None
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            help="The judge for --escalate: openai:MODEL or anthropic:MODEL (key from "
            "OPENAI_API_KEY / ANTHROPIC_API_KEY).",
            rich_help_panel=_J,
        ),
    ] = None
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="OpenAI-compatible server for an openai: judge (ends in /v1).",
            rich_help_panel=_J,
        ),
    ] = None
    anthropic_base_url: Annotated[
        str | None,
        typer.Option(
            "--anthropic-base-url", help="API root for an anthropic: judge.", rich_help_panel=_J
        ),
    ] = None
    judge_timeout: Annotated[
        float,
        typer.Option(
            "--judge-timeout",
            min=0.001,
            help="Seconds one judge answer may take, retries included; past it the error "
            "policy decides (fail closed by default).",
            rich_help_panel=_J,
        ),
    ] = 30.0
    judge_concurrency: Annotated[
        int,
        typer.Option(
            "--judge-concurrency",
            min=1,
            help="Judge calls in flight at once (a server's requests share them); more "
            "texts in the band wait for a free slot. Raise it for a judge with high rate "
            "limits, lower it to stay under them.",
            rich_help_panel=_J,
        ),
    ] = 8
    judge_breaker: Annotated[
        int,
        typer.Option(
            "--judge-breaker",
            min=0,
            help="After this many judge failures in a row (errors past the retries, "
            "timeouts; a refusal is an answer, not a failure) the judge is not called for "
            "--judge-cooldown seconds: texts in the band are decided at once by the error "
            "policy, degraded, saying so. 0: always call it.",
            rich_help_panel=_J,
        ),
    ] = 5
    judge_cooldown: Annotated[
        float,
        typer.Option(
            "--judge-cooldown",
            min=0.001,
            help="Seconds the judge rests after --judge-breaker failures; then one trial "
            "call: an answer resumes the calls, a failure doubles the rest (up to 8x).",
            rich_help_panel=_J,
        ),
    ] = 30.0

    def build(self, guard: Guard) -> EscalatingGuard | None:
        """The escalating guard around ``guard``, or None without ``--escalate``.

        Raises:
            typer.BadParameter: one of ``--escalate`` / ``--judge`` without the other, an
                infinite ``--judge-cooldown``.
            ConfigError: a bad band file or judge spec, the judge's key unset.
        """
        if self.escalate is None and self.judge is None:
            return None
        if self.escalate is None or self.judge is None:
            raise typer.BadParameter("--escalate BAND.json and --judge SPEC go together")
        if not math.isfinite(self.judge_cooldown):  # click's range lets inf and nan through
            raise typer.BadParameter("a finite number of seconds", param_hint="--judge-cooldown")
        if guard.policy.toxic_threshold is not None:  # the band's edges would replace it
            raise typer.BadParameter(
                "--toxic-threshold does not apply with --escalate: the band's edges are the "
                "thresholds (choose another band with guardrail-dro escalation)"
            )
        import warnings

        from annotators.specs import make_annotator
        from guardrail_dro.errors import ConfigError
        from guardrail_dro.serve.escalation import EscalatingGuard, EscalationBand
        from guardrail_dro.serve.escalation_guard import BandMismatchWarning, other_guard_note

        band = EscalationBand.load(self.escalate)
        if band.judge != self.judge:
            err.print(
                f"note: the band was chosen with the labels of {band.judge!r}; the judge "
                f"now is {self.judge!r}, whose mistakes may fall elsewhere",
                highlight=False,
                markup=False,
            )
        other_guard = other_guard_note(band.guard, guard)
        if other_guard is not None:
            err.print(f"note: {other_guard}", highlight=False, markup=False)
        try:
            judge = make_annotator(
                self.judge,
                base_url=self.base_url,
                anthropic_base_url=self.anthropic_base_url,
                timeout=self.judge_timeout,
            )
        except ConfigError as exc:  # its messages name --annotator, the annotate option
            raise ConfigError(str(exc).replace("--annotator", "--judge")) from None
        with warnings.catch_warnings():  # said above as a note, not as a Python warning
            warnings.simplefilter("ignore", BandMismatchWarning)
            return EscalatingGuard(
                guard,
                judge,
                band,
                timeout_s=self.judge_timeout,
                concurrency=self.judge_concurrency,
                breaker_failures=self.judge_breaker,
                breaker_cooldown_s=self.judge_cooldown,
            )


def register(app: typer.Typer) -> None:
    """Add the ``escalation`` command to the ``guardrail-dro`` app."""
    app.command("escalation", no_args_is_help=True)(escalation)
