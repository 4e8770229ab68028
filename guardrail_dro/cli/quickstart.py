"""``guardrail-dro quickstart``: the main job end to end, annotate -> train -> export ->
escalate -> guard.

The command calls ``run_quickstart``, the orchestrator below: with its annotation pass
(``cli/annotation_pass.py``) it is the one place in ``guardrail_dro`` that drives
``annotators`` and ``export``, and it imports them lazily.
Every stage writes into ``out`` and reads back what is there, so an interrupted run
resumes: the LLM annotations from their SQLite cache (no second call), the embeddings
from theirs (no re-embedding).

By default it runs on the real toxic-questions dataset shipped in the package, with
the bundled background-safe text (ordinary chat turns and everyday requests) so that
the guard it ships lets ordinary chat through, and the bundled harmful requests (as
"not safe") so that it also stops harm kinds the dataset has few examples of.
``synthetic=True`` (``--synthetic``) runs the small embedded synthetic demonstration
instead (what the tests use: seconds).

Offline by default: the LLM annotation pass runs the real runner and the real OpenAI
SDK against a local replay endpoint (``annotators.testing.FakeLLMServer``) that answers
with the labels one real LLM annotator gave (toxic-questions: GPT-4 Turbo's column;
synthetic: a simulated LLM). ``live=True`` sends the same pass to the providers named
in ``annotator_specs`` (keys from the environment).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from guardrail_dro.cli.annotation_pass import annotation_pass
from guardrail_dro.cli.chat_turns import CHAT_TURNS, check_turns
from guardrail_dro.cli.options import SchemaPath
from guardrail_dro.cli.quick_conflicts import refuse_conflicts, refuse_student
from guardrail_dro.cli.quick_escalation import escalation_step, shell
from guardrail_dro.cli.quick_guards import export_guard, ship_average, train_output_guard
from guardrail_dro.cli.quick_recipe import (
    QUICK_METHODS,
    QUICK_SEEDS,
    background_sources,
    quick_config,
)
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.errors import DataError

if TYPE_CHECKING:
    from guardrail_dro.train.result import TrainResult

__all__ = [
    "CHAT_TURNS",
    "quickstart",
    "register",
    "run_quickstart",
]

REPLAYED = "llm_c"
"""The synthetic LLM annotator whose labels the local endpoint replays."""

REPLAYED_REAL = "label_5"
"""toxic-questions' GPT-4 Turbo column: the real LLM annotator the endpoint replays."""


def _read_real(data: Path, schema_path: Path | None) -> dict[str, AnnotatedDataset]:
    from guardrail_dro.data.bundled import BUNDLED, bundled_names
    from guardrail_dro.data.readers import read_splits
    from guardrail_dro.data.schema import LabelSchema

    schema = LabelSchema.load(schema_path) if schema_path else None
    paths: dict[str, str | Path | None]
    if not data.exists() and str(data) in BUNDLED:  # a bundled dataset, by name
        paths = {k: f"{data}:{k}" for k in ("train", "valid", "test")}
    else:
        files = {k: data / f"{k}.csv" for k in ("train", "valid", "test")}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise DataError(
                f"--data {data}: expected train.csv, valid.csv and test.csv, or the name of "
                f"a bundled dataset ({', '.join(bundled_names())}); missing {missing}"
            )
        paths = dict(files)
    splits, schema = read_splits(paths, schema=schema)
    if not schema.safe:
        raise DataError(
            "the guard needs to know which classes are safe: pass --schema FILE.json with "
            "a 'safe' list (e.g. examples/toxic_questions_schema.json)"
        )
    return splits


def run_quickstart(
    out: str | Path = "quickstart-out",
    *,
    data: str | Path | None = None,
    synthetic: bool = False,
    schema: str | Path | None = None,
    live: bool = False,
    annotator_specs: Sequence[str] = ("openai:gpt-4o-mini",),
    seeds: int | None = None,
    background: Sequence[str] | None = None,
    harmful: Sequence[str] | None = None,
    choose_background: bool = False,
    backbone: str | None = None,
    sizes: tuple[int, int, int] | None = None,
    student_layers: int | None = None,
    output_guard: bool | None = None,
    console: Console | None = None,
) -> dict:
    """Run the five stages; returns what a caller (or a test) may want to check.

    Args:
        data: a bundled dataset name or a folder with train/valid/test CSVs (default:
            the bundled toxic-questions).
        synthetic: the embedded synthetic demonstration instead of ``data``.
        background: background-safe text sources (default: ``BACKGROUND`` on real data,
            none on the synthetic set); ``()`` for none.
        harmful: harmful-by-construction text sources (default: ``HARMFUL`` where there is
            background-safe text on real data); ``()`` for none.
        choose_background: choose the background's weight and amount with the trainer's
            grid (slow) instead of ``BACKGROUND_SETTING``.
        backbone: encoder folder (default: the embedded MiniLM).
        sizes: (train, valid, test) items of the synthetic dataset (default: its own).
        student_layers: ship a distilled student with this many layers instead of the
            trained model (``guardrail-dro distill``; written to ``out/student-model``).
            The output rail's guard is not distilled.
        output_guard: also train and export a guard for the output rail (``out/guard-output``:
            the same recipe plus assistant replies, ``quick_recipe.OUTPUT_BACKGROUND``) and
            check the assistant turns with it (default: on real data with background text).

    Returns:
        ``{"report": BenchReport, "guard_dir": Path, "output_guard_dir": Path | None,
        "results": [(role, text, benign, GuardResult)], "background": BackgroundChoice |
        None, "escalation": quick_escalation.escalation_stage's dict | None}``
    """
    from guardrail_dro.data.synthetic import make_synthetic
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.train.bench import run_bench
    from guardrail_dro.train.methods import METHODS
    from guardrail_dro.train.metrics import ACCURACY, WORST_GROUP_ACCURACY
    from guardrail_dro.train.modeldir import TrainedModel

    console = console or Console(emoji=False)  # ":smile:" in a path or name is text
    out = Path(out)
    if synthetic and data is not None:
        raise DataError("--synthetic and --data exclude each other: pick one dataset")
    # 1. data + LLM annotation pass --------------------------------------------------------
    if synthetic:
        names = ("n_train", "n_valid", "n_test")
        n: dict[str, Any] = dict(zip(names, sizes, strict=True)) if sizes else {}
        splits = make_synthetic(seed=0, **n)
        source, replay = "embedded synthetic dataset", REPLAYED
    else:
        data = data or "toxic-questions"
        splits = _read_real(Path(data), Path(schema) if schema else None)
        source = f"{data}, shipped in the package" if str(data) == "toxic-questions" else str(data)
        replay = REPLAYED_REAL if REPLAYED_REAL in splits["train"].annotators else ""
    console.rule(f"[bold]1/5 data and LLM annotations[/] ({escape(source)})")
    before = set(splits["valid"].annotators)
    if live or replay:
        splits = annotation_pass(
            splits,
            out,
            live=live,
            specs=annotator_specs,
            console=console,
            replay=replay,
            batch=not synthetic,
        )
    for name, ds in splits.items():
        ds.save_jsonl(out / "data" / f"{name}.jsonl")
    console.print(
        f"  {', '.join(f'{k} {len(v)}' for k, v in splits.items())} items, "
        f"{len(splits['train'].annotators)} annotators -> {out / 'data'}",
        markup=False,
    )

    # 2. train our method and the baselines -------------------------------------------------
    bg, bad = background_sources(synthetic, background, harmful)
    cfg = quick_config(
        out,
        synthetic=synthetic,
        backbone=backbone,
        background=bg,
        choose=choose_background,
        harmful=bad,
    )
    methods = list(METHODS) if synthetic else list(QUICK_METHODS)
    seeds = seeds or (1 if synthetic else QUICK_SEEDS)
    console.rule(
        f"[bold]2/5 train our method and the baselines[/] (frozen MiniLM; {', '.join(methods)}"
        + (f"; background-safe text: {escape(', '.join(bg))}" if bg else "")
        + (f"; harmful text: {escape(', '.join(bad))})" if bad else ")")
    )
    metric = WORST_GROUP_ACCURACY if splits["test"].has_groups else ACCURACY
    shipped: dict[int, TrainResult] = {}

    def keep_ours(method: str, seed: int, result: TrainResult) -> None:
        # Every seed of ours is kept until the bench ends: the guard ships their average,
        # one head (seeds move test worst-group accuracy by several points).
        if method == "ours":
            shipped[seed] = result

    report = run_bench(
        splits["train"],
        splits["valid"],
        splits["test"],
        methods=methods,
        seeds=seeds,
        config=cfg,
        out_dir=out / "report",
        on_fit=keep_ours,
    )
    # a markdown table: rows kept whole; annotator names are text ("label[gpt]")
    console.print(report.table(), soft_wrap=True, markup=False)
    ours, mv = (report.results[m].mean[metric] for m in ("ours", "mv"))
    if ours is None or mv is None:  # None only for group metrics, and test has groups
        raise DataError(f"the bench reported no {metric} on test for ours or mv")
    verdict = "[green]ahead of[/]" if ours > mv else "[bold red]NOT ahead of[/]"
    console.print(
        f"  {metric.replace('_', ' ')} on test: ours {ours:.3f}, majority vote {mv:.3f}: "
        f"ours is {verdict} majority vote by {ours - mv:+.3f}"
        + (
            " (one seed, and seeds move this by several points: --seeds 3 for a mean)"
            if seeds == 1
            else f" (mean of {seeds} seeds)"
        )
    )
    pair = report.paired.get("mv")
    if pair is not None:  # test has groups: the paired interval on the same items
        iv = getattr(pair, metric)
        console.print(
            f"  on the same test items: {iv.diff:+.3f}, {pair.level:.0%} interval "
            f"[{iv.low:+.3f}, {iv.high:+.3f}] over {pair.draws:,} resamples within groups; "
            f"ours ahead in {iv.ahead:.0%} of them"
        )
    console.print(
        f"  plots: {out / 'report' / 'group_accuracy.png'}, "
        f"{out / 'report' / 'annotator_weights.png'}, "
        f"{out / 'report' / 'paired_differences.png'}",
        markup=False,
    )

    # 3. the model to ship (the average of the bench's seeds of ours) and its export ------
    console.rule("[bold]3/5 export the guard[/] (ONNX fp32 + int8, parity checked)")
    result = ship_average(shipped, seeds, cfg, splits, metric, console)
    shipped.clear()
    if result.background is not None:
        console.print(f"  {result.background.summary()}", highlight=False)
    hashes = {k: v.content_hash() for k, v in splits.items() if k != "test"}
    TrainedModel.from_result(
        result,
        hashes,
        data_names={k: v.name for k, v in splits.items() if k != "test" and v.name},
        data_sizes={k: len(v) for k, v in splits.items() if k != "test"},
    ).save(out / "model")
    model_dir = out / "model"
    if student_layers:
        from guardrail_dro.cli.distill import distill_splits

        model_dir = distill_splits(
            model_dir, out / "student-model", splits["train"], splits["valid"], [*bg, *bad],
            student_layers, console,
        )  # fmt: skip
    guard_dir = export_guard(model_dir, out / "guard", splits["valid"], console)
    console.print(f"  model -> {model_dir}, guard artifact -> {guard_dir}", markup=False)
    if output_guard is None:
        output_guard = not synthetic and bool(bg)
    output_dir = None
    if output_guard:
        output_dir = train_output_guard(cfg, splits, out, console, seeds=seeds)

    # 4. the guard's unsure band to the LLM judge ---------------------------------------------
    judged = [a for a in splits["valid"].annotators if a not in before]
    escalation = escalation_step(guard_dir, splits, judged, replay, live, out, console)

    # 5. guard a few chat turns ---------------------------------------------------------------
    console.rule("[bold]5/5 guard.check on chat turns[/]")
    results = check_turns(
        Guard.load(guard_dir), console, Guard.load(output_dir) if output_dir else None
    )
    console.print(
        f'  try: guardrail-dro check --guard {shell(guard_dir)} "some text"',
        highlight=False,
        soft_wrap=True,  # a command to copy: one line, never broken at the console's width
    )
    return {
        "report": report,
        "guard_dir": guard_dir,
        "output_guard_dir": output_dir,
        "results": results,
        "background": result.background,
        "escalation": escalation,
    }


def quickstart(
    out: Annotated[
        Path,
        typer.Option(
            "--out", file_okay=False, help="Folder for data, caches, reports, model and guard."
        ),
    ] = Path("quickstart-out"),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="A bundled dataset by name or a folder with train.csv, valid.csv, test.csv "
            "(default: toxic-questions, shipped in the package).",
        ),
    ] = None,
    synthetic: Annotated[
        bool,
        typer.Option(
            "--synthetic",
            help="Run on the small embedded synthetic dataset (a demonstration of the "
            "method: simulated annotators with planted biases; every method, one seed, "
            "on MiniLM: minutes on a CPU) instead.",
        ),
    ] = False,
    schema: SchemaPath = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Annotate with the real providers (keys from "
            "OPENAI_API_KEY / ANTHROPIC_API_KEY) instead of the local replay.",
        ),
    ] = False,
    annotator: Annotated[
        list[str] | None,
        typer.Option(
            "--annotator",
            help="With --live: provider:model, repeatable (default openai:gpt-4o-mini).",
        ),
    ] = None,
    background_safe: Annotated[
        list[str] | None,
        typer.Option(
            "--background-safe",
            help="Background-safe text (bundled name or file; repeatable) the guard learns "
            "is safe. Default on real data: convabuse-background and everyday-requests.",
        ),
    ] = None,
    no_background: Annotated[
        bool,
        typer.Option("--no-background", help="Train without background text (safe or harmful)."),
    ] = False,
    background_harmful: Annotated[
        list[str] | None,
        typer.Option(
            "--background-harmful",
            help="Harmful-by-construction text (bundled name or file; repeatable) the guard "
            "learns is not safe. Default on real data: harmful-requests.",
        ),
    ] = None,
    no_harmful: Annotated[
        bool, typer.Option("--no-harmful", help="Train without harmful background text.")
    ] = False,
    choose_background: Annotated[
        bool,
        typer.Option(
            "--choose-background",
            help="Choose the background's weight and amount on valid and held-out background "
            "(six trainings of ours: slow) instead of the recorded choice.",
        ),
    ] = False,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds",
            min=1,
            help="Seeds per method; the verdict is their mean and the guard ships the "
            "average of ours' seeds, one head (default: 3 on real data, where one seed "
            "moves worst-group accuracy by several points; 1 with --synthetic).",
        ),
    ] = None,
    student: Annotated[
        int | None,
        typer.Option(
            "--student",
            min=1,
            help="Ship a distilled student with this many layers (2: the recommended "
            "MiniLM student, ~3x faster checks; a few more minutes) instead of the model "
            "(the input guard; the output rail's guard stays the full model).",
        ),
    ] = None,
    output_guard: Annotated[
        bool | None,
        typer.Option(
            "--output-guard/--no-output-guard",
            help="Also train a guard for the output rail: the input guard's text plus the "
            "bundled assistant-replies (safe) and harmful-replies (not safe), and check the "
            "assistant turns with it (default: on with real data and background text; one "
            "more training and export, about a minute; --student does not distil it).",
        ),
    ] = None,
) -> None:
    """See the whole product work, offline, in a few minutes on a CPU.

    On the real toxic-questions dataset shipped in the package: an LLM
    annotation pass (GPT-4 Turbo's labels replayed through the real runner and
    SDK against a local endpoint; cached), our method against majority vote on
    frozen MiniLM with ordinary chat as background-safe text and harmful
    requests as not-safe text (table and plots), the int8 ONNX guard with its
    parity check (fp32 when no int8 recipe passes), a second guard for the
    output rail trained on assistant replies too, the guard's unsure band sent
    to the LLM judge (the band chosen on valid; test through the cascade, beside
    the guard alone and the judge alone), and guard.check on benign and harmful
    chat turns (assistant turns through the output rail's guard). Run it again:
    it resumes from its caches.
    """
    refuse_conflicts(
        synthetic=synthetic,
        schema=schema,
        live=live,
        annotator=annotator,
        background_safe=background_safe,
        no_background=no_background,
        background_harmful=background_harmful,
        no_harmful=no_harmful,
        choose_background=choose_background,
    )
    refuse_student(student)
    run_quickstart(
        out,
        data=data,
        synthetic=synthetic,
        schema=schema,
        live=live,
        annotator_specs=annotator or ("openai:gpt-4o-mini",),
        seeds=seeds,
        background=() if no_background else background_safe,
        harmful=() if no_background or no_harmful else background_harmful,
        choose_background=choose_background,
        student_layers=student,
        output_guard=output_guard,
    )


def register(app: typer.Typer) -> None:
    """Add the ``quickstart`` command to ``app``."""
    app.command()(quickstart)
