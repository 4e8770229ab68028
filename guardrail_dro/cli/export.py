"""``guardrail-dro export``: trained model directory -> guard artifact (-> Triton repository).

Imports only typer, rich, the standard library and guardrail_dro at module level; torch,
onnx and onnxruntime load inside the command, so ``guardrail-dro --help`` stays instant.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from guardrail_dro.cli.options import ColumnOptions, takes_option_groups

__all__ = ["export_command", "register"]

_HELP = (
    "Export a trained model directory to a guard artifact directory (ONNX).\n\n"
    "Writes GUARD_DIR/model.onnx (fp32: encoder + pooling + head as one graph, dynamic "
    "batch and sequence), model.int8.onnx (--int8, the default: 8-bit weights, the "
    "first gated recipe that passes), model.fp16.onnx (--fp16: for CUDA / TensorRT), "
    "tokenizer.json and guard.json (labels, safe classes, thresholds, max length, sha256 "
    "of every file).\n\n"
    "Every export is checked: fp32 logits within 1e-4 of PyTorch on texts from one "
    "character to the maximum length; int8, each --valid text scored alone, must make "
    "the same decision (blocked or not, at the guard's threshold) as fp32 on >= 99% of "
    "texts and lose at most 1 point of binary worst-group accuracy. Without --valid the "
    "int8 gate runs on 16 probe texts only and the export says it was weak. A failed "
    "check writes nothing and lists every mismatch.\n\n"
    "Operating point: with --valid (gold labels, groups) the toxic threshold is chosen on "
    "it, scored by the fp32 ONNX model: by default the best worst-group binary accuracy "
    "(--objective balanced: the best worst-group mean of recall and 1 - FPR); "
    "--target-recall R: the lowest false-positive rate with recall >= R; --target-fpr F: "
    "the highest recall with false-positive rate <= F. guard.json records the objective, "
    "the validation precision / recall / FPR / accuracy (overall and worst group) there, "
    "and the validation operating curve, so Policy(target_recall=...) can move the guard "
    "along it at load time. Without --valid the threshold stays 0.5, marked uncalibrated.\n\n"
    "Examples:\n\n"
    "guardrail-dro export --model runs/model --out guard\n\n"
    "guardrail-dro export --model runs/model --out guard --valid toxic-questions:valid "
    "--target-recall 0.9\n\n"
    "guardrail-dro export --model runs/model --out guard --valid data/valid.csv "
    "--text-col question --fp16 --triton triton_repo"
)


@takes_option_groups
def export_command(
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            help="Trained model directory (from `guardrail-dro train`).",
            exists=True,
            file_okay=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Guard artifact directory to write (empty or new).")
    ],
    int8: Annotated[
        bool, typer.Option("--int8/--no-int8", help="Also write model.int8.onnx (CPU).")
    ] = True,
    fp16: Annotated[
        bool, typer.Option("--fp16/--no-fp16", help="Also write model.fp16.onnx (GPU).")
    ] = False,
    allow_unchecked_fp16: Annotated[
        bool,
        typer.Option(
            "--allow-unchecked-fp16",
            help="Ship model.fp16.onnx even when its parity cannot be checked here "
            "(it is then never chosen automatically).",
        ),
    ] = False,
    optimize: Annotated[
        bool,
        typer.Option(
            "--optimize/--no-optimize",
            help="Fuse attention / layer norm / GELU (onnxruntime optimizer).",
        ),
    ] = True,
    triton: Annotated[
        Path | None,
        typer.Option(
            "--triton", help="Also write a Triton model repository here.", file_okay=False
        ),
    ] = None,
    triton_name: Annotated[
        str, typer.Option("--triton-name", help="Model name inside the Triton repository.")
    ] = "guardrail",
    triton_kind: Annotated[
        str | None,
        typer.Option(
            "--triton-kind",
            help="Where Triton runs the model: gpu (the default: the fp32 model, TensorRT "
            "fp16 engine) or cpu (the model a guard runs on a CPU: int8 when exported, "
            "else fp32; no TensorRT). A Triton without a GPU refuses a gpu model.",
        ),
    ] = None,
    valid: Annotated[
        Path | None,
        typer.Option(
            "--valid",
            help="Validation split (CSV / JSONL with gold and groups, or a bundled split "
            "such as toxic-questions:valid): the operating point is chosen on it, and int8 "
            "is gated on it (decision agreement, binary worst-group accuracy).",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0.0,
            max=1.0,
            help="A fixed toxic threshold instead of one chosen on --valid (its validation "
            "metrics are still recorded). Default: chosen on --valid; 0.5 without it.",
            rich_help_panel="Operating point",
        ),
    ] = None,
    target_recall: Annotated[
        float | None,
        typer.Option(
            "--target-recall",
            min=0.0,
            max=1.0,
            help="Choose the threshold with the lowest false-positive rate on --valid "
            "whose recall (toxic texts blocked) is at least this, e.g. 0.90.",
            rich_help_panel="Operating point",
        ),
    ] = None,
    target_fpr: Annotated[
        float | None,
        typer.Option(
            "--target-fpr",
            min=0.0,
            max=1.0,
            help="Choose the threshold with the highest recall on --valid whose "
            "false-positive rate (safe texts blocked) is at most this, e.g. 0.10.",
            rich_help_panel="Operating point",
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="Without a target or --threshold: accuracy (default: the best worst-group "
            "binary accuracy; follows the split's class mix, so a mostly-toxic red-team "
            "split blocks many safe texts) or balanced (the best worst-group mean of recall "
            "and 1 - FPR, whatever the split's toxic share: for mostly-safe traffic).",
            rich_help_panel="Operating point",
        ),
    ] = "accuracy",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty --out directory.")
    ] = False,
    distill: Annotated[
        int | None,
        typer.Option(
            "--distill",
            min=1,
            help="Distil the model into a student with this many layers first (as "
            "`guardrail-dro distill --layers K`; 2 is the recommended MiniLM student, about "
            "3x faster) and export the student; its model directory goes to OUT-model.",
        ),
    ] = None,
    *,
    columns: ColumnOptions,
) -> None:
    from rich.console import Console
    from rich.markup import escape

    from guardrail_dro.data.schema import LabelSchema

    err = Console(stderr=True, emoji=False)  # ":smile:" in a path or label is text
    # Everything a refusal can be known from comes first: a distillation of minutes, or
    # an export, is never spent on a typo in --objective, an --out in use or a bad name.
    from export.outdir import check_out
    from export.thresholds import check_objective
    from guardrail_dro.outputs import check_writable

    kind = _triton_kind(triton_kind, triton)
    chosen = _OBJECTIVES.get(objective) or _bad_objective(objective)
    # export_onnx asks this too, but only after --valid is read and --distill has run.
    check_objective(target_recall=target_recall, target_fpr=target_fpr,
                    threshold=threshold, valid=valid is not None)  # fmt: skip
    if distill is not None:  # first: it names what --distill needs of --out
        _check_student_out(model, out)
    check_out(out, overwrite)
    check_writable(out, "--out", beside=True)
    _check_model_dir(model)
    if triton is not None:
        from export.triton import check_model_name, check_repository

        check_model_name(triton_name)
        check_repository(triton, out)
        check_writable(triton, "--triton")
    valid_ds = None
    if valid is not None:
        from guardrail_dro.data.readers import read_dataset

        valid_ds = read_dataset(
            valid, columns.reader_options(), schema=LabelSchema.load(model / "schema.json")
        )
        for n in valid_ds.notes:  # a path or a label of "[v2]" is text, not markup
            err.print(f"note: {n}", highlight=False, markup=False)
        from export.gate import MIN_GATE_TEXTS
        from export.thresholds import check_both_kinds

        check_both_kinds(valid_ds)  # before the conversion, not after it

        if len(valid_ds) < MIN_GATE_TEXTS:
            err.print(
                f"note: {valid} has {len(valid_ds)} texts (under {MIN_GATE_TEXTS}): the "
                "operating point chosen on it, and its recall and FPR, are rough",
                highlight=False,
                markup=False,
            )

    if distill is not None:
        from guardrail_dro.cli.distill import distill_model_dir
        from guardrail_dro.train.distill import DistillConfig

        student = _student_dir(out)
        model = distill_model_dir(
            model, student, DistillConfig(layers=distill), valid=valid,
            reader=columns.reader_options(), console=err,
        )  # fmt: skip

    from export.onnx import export_onnx

    t0 = time.perf_counter()
    served = "fp32"  # the variant the Triton repository serves
    with err.status("exporting", spinner="dots") as status:

        def progress(msg: str) -> None:
            status.update(f"{escape(msg)}...")  # it may name a path
            err.print(f"[dim]{time.perf_counter() - t0:6.1f}s[/] {escape(msg)}", highlight=False)

        guard = export_onnx(
            model,
            out,
            int8=int8,
            fp16=fp16,
            allow_unchecked_fp16=allow_unchecked_fp16,
            optimize=optimize,
            valid=valid_ds,
            threshold=threshold,
            target_recall=target_recall,
            target_fpr=target_fpr,
            objective=chosen,
            overwrite=overwrite,
            progress=progress,
        )
        if triton is not None:
            from export.triton import write_triton_repository

            progress("writing the Triton model repository")
            if kind == "cpu":  # what Guard.load runs on a CPU: a gated int8, else fp32
                from guardrail_dro.serve.artifact import load_artifact

                served = load_artifact(guard).best_variant("cpu")
            write_triton_repository(
                guard, triton, name=triton_name, variant=served,
                kind=f"KIND_{kind.upper()}", tensorrt=kind == "gpu",
            )  # fmt: skip

    from export.thresholds import describe
    from guardrail_dro.serve.artifact import load_artifact

    art = load_artifact(guard)
    if art.manifest.calibration is not None:
        typer.echo(describe(art.manifest.calibration))
    for name, v in art.manifest.variants.items():
        size = (guard / v.file).stat().st_size / 1e6
        numbers = ", ".join(f"{k}={val:.4g}" for k, val in v.parity.items())
        typer.echo(f"{name:5s} {v.file:18s} {size:7.1f} MB  {numbers}")
        if v.gate == "probes":
            err.print(
                f"warning: the {name} gate was WEAK: checked on built-in probe texts only, "
                "not on validation data; export with --valid to gate it on real data.",
                highlight=False,
            )
    for note in art.manifest.train.get("parity_notes") or []:
        if "no validation split" not in note:  # that one is the warning above
            err.print(f"note: {note}", highlight=False, markup=False)
    where = f"; Triton repository: {triton} ({kind}, {served})" if triton is not None else ""
    typer.echo(f"guard artifact: {guard}{where}")
    # The digest to pin: Guard.load(GUARD_DIR, manifest_sha256=...) refuses any other manifest.
    typer.echo(f"manifest_sha256: {art.manifest.manifest_sha256}")


_OBJECTIVES = {
    "balanced": "worst_group_balanced_accuracy",
    "accuracy": "worst_group_accuracy",
}


def _check_model_dir(model: Path) -> None:
    """Refuse a ``--model`` that is no trained model directory before anything is read.

    Why: a guard artifact given as ``--model`` (the folder export wrote) got "label
    schema file not found: GUARD/schema.json" with ``--valid``, and without it seconds of
    loading before "no manifest.json"; neither said what the folder was instead.
    """
    if (model / "manifest.json").is_file():
        return
    hint = (
        "it is a guard artifact (export's output); export the model directory it was exported from"
        if (model / "guard.json").is_file()
        else "give the folder `guardrail-dro train --out` (or distill --out) wrote"
    )
    raise typer.BadParameter(
        f"{model} is not a trained model directory (no manifest.json): {hint}",
        param_hint="--model",
    )


def _check_student_out(model: Path, out: Path) -> None:
    """Refuse an ``--out`` whose student folder (OUT-model) is the teacher, holds it or is
    inside it, naming the ``--out`` typed.

    Why: ``distill``'s own check named the student folder as "--out runs/guard-model"
    when the user typed ``--out runs/guard``, and only once ``--valid`` was read. An
    ``--out`` with no folder name (``.``, ``..``) gives no OUT-model: ``.`` raised a
    ValueError traceback, ``..`` named a folder "..-model" in the working directory.
    """
    if out.name in ("", ".."):
        raise typer.BadParameter(
            f"{out}: export --distill writes the student's model directory beside the "
            "guard as OUT-model, which needs a folder name: give one, e.g. --out runs/guard",
            param_hint="--out",
        )
    t, s = model.resolve(), _student_dir(out).resolve()
    if not (s == t or s.is_relative_to(t) or t.is_relative_to(s)):
        return
    where = "is" if s == t else "is inside" if s.is_relative_to(t) else "holds"
    raise typer.BadParameter(
        f"{out}: export --distill writes the student's model directory to OUT-model, "
        f"{_student_dir(out)}, which {where} the teacher's folder (--model {model}); a model "
        "directory is replaced whole when saved: choose another --out",
        param_hint="--out",
    )


def _student_dir(out: Path) -> Path:
    """Where ``--distill`` saves the student: OUT-model, beside the guard."""
    return out.with_name(out.name + "-model")


_TRITON_KINDS = ("gpu", "cpu")


def _triton_kind(kind: str | None, triton: Path | None) -> str:
    """The Triton instance kind, checked before any work: one of ``_TRITON_KINDS``, and
    only with ``--triton`` (an option the export would not read is refused by name)."""
    if kind is None:
        return "gpu"
    if triton is None:
        raise typer.BadParameter(
            "it sets the Triton repository's instances: give --triton DIR too",
            param_hint="--triton-kind",
        )
    if kind not in _TRITON_KINDS:
        raise typer.BadParameter(
            f"gpu or cpu, not {kind!r} (cpu: for a Triton without a GPU)",
            param_hint="--triton-kind",
        )
    return kind


def _bad_objective(name: str) -> str:
    raise typer.BadParameter(
        f"--objective must be one of {sorted(_OBJECTIVES)}, not {name!r}", param_hint="--objective"
    )


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to the ``guardrail-dro`` app."""
    app.command("export", help=_HELP, no_args_is_help=True)(export_command)
