"""Export a trained model directory to a guard artifact directory (the *how*).

``export_onnx(model_dir, out_dir)`` is the one entry point (the CLI calls it):

1. load the trained model (``TrainedModel.load``, checksums verified);
2. convert the whole ``GuardClassifier`` (encoder + mean pooling + normalisation +
   head) to one ONNX graph with ``torch.onnx.export`` (``convert``, the only function
   that knows the exporter);
3. optionally fuse it with onnxruntime's transformer optimizer (attention, layer norm,
   GELU: about 1.5x faster on CPU, same numbers);
4. int8: 8-bit weights by the first recipe that passes the gate (``export/quantize.py``,
   ``model.int8.onnx``); fp16: float16 weights for CUDA / TensorRT (``model.fp16.onnx``);
5. save the tokenizer, check parity (``export.validate``), choose the thresholds on the
   validation split (``export.thresholds``), write the model card (``README.md``, the
   trained model's card with the operating point and the variants), and seal
   ``guard.json`` (which lists the card like every file).

The artifact is built in a temporary sibling directory and moved into place only when
every check passed, so a failed export never leaves a half-written guard behind; one a
killed export left (``.OUT.tmp-HOST-PID-*``) is removed by the next export to OUT, or
named when it cannot be told from a running one's (``guardrail_dro.leftovers``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from export.outdir import check_out
from export.probes import served_logits
from export.quantize import Progress, convert_fp16, quantize_gated, quiet_logging
from export.spec import ExportSpec, Tolerances
from guardrail_dro.checksums import file_sha256, new_folder
from guardrail_dro.errors import ArtifactError, ConfigError, require
from guardrail_dro.leftovers import sweep_leftovers

__all__ = [
    "convert",
    "export_onnx",
    "optimize_graph",
]


def _silence_warnings():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    # The TorchScript exporter warns that it is legacy and that tracing converts tensors
    # to Python bools (transformers' mask helpers); parity is checked right after.
    warnings.simplefilter("ignore")
    return ctx


def convert(model, spec: ExportSpec, path: Path, *, exporter: str = "torchscript") -> Path:
    """The exporter, behind one function: PyTorch ``GuardClassifier`` -> ONNX file.

    Args:
        model: a ``GuardClassifier`` (its ``forward(input_ids, attention_mask)``).
        spec: names, dynamic axes and opset.
        path: the ``.onnx`` file to write.
        exporter: ``torchscript`` (``dynamo=False``, about 2 s for MiniLM) or ``dynamo``
            (needs onnxscript, about 12 s). Both give the same logits.
    """
    torch = require("torch", "export")
    require("onnx", "export")
    if exporter not in ("torchscript", "dynamo"):
        raise ConfigError(f"exporter must be torchscript or dynamo, not {exporter!r}")
    if exporter == "dynamo":
        require("onnxscript", "export")
    encoder = model.encoder
    previous = getattr(encoder.config, "_attn_implementation", None)
    # Eager attention exports as plain MatMul/Softmax, the pattern onnxruntime's
    # optimizer fuses into one Attention op; SDPA's graph is not fused.
    if hasattr(encoder, "set_attn_implementation"):
        encoder.set_attn_implementation("eager")
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]])
    mask = (ids != 0).long()  # one padded row: the mask path is traced, not skipped
    ctx = _silence_warnings()
    try:
        model.eval()
        kwargs: dict[str, Any] = {
            "input_names": list(spec.input_names),
            "output_names": [spec.output_name],
            "opset_version": spec.opset,
        }
        if exporter == "torchscript":
            kwargs |= {
                "dynamo": False,
                "dynamic_axes": spec.dynamic_axes,
                "do_constant_folding": True,
            }
        else:
            b = torch.export.Dim("batch", min=1)
            s = torch.export.Dim("sequence", min=1, max=4096)
            kwargs |= {
                "dynamo": True,
                "external_data": False,
                "dynamic_shapes": ({0: b, 1: s}, {0: b, 1: s}),
            }
        with torch.no_grad():
            torch.onnx.export(model, (ids, mask), str(path), **kwargs)
    finally:
        ctx.__exit__(None, None, None)
        if previous is not None and hasattr(encoder, "set_attn_implementation"):
            encoder.set_attn_implementation(previous)
    return path


def optimize_graph(
    src: Path, dst: Path, *, num_heads: int, hidden_size: int, use_gpu: bool = False
) -> dict[str, int]:
    """Fuse a BERT-like graph with onnxruntime's transformer optimizer.

    Returns:
        The fused operator counts (Attention, SkipLayerNormalization...), non-zero only.
    """
    require("onnxruntime", "cpu")
    from onnxruntime.transformers.optimizer import optimize_model

    with quiet_logging():
        opt = optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            use_gpu=use_gpu,
        )
        opt.save_model_to_file(str(dst))
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    check_out(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return new_folder(out_dir.parent, f".{out_dir.name}.tmp-")


def _into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished build to ``out``. Without ``overwrite`` only an absent or
    empty ``out`` is replaced (the rename does that atomically): one filled while the
    export ran (a second export to the same --out that finished first) was deleted."""
    if overwrite and out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    try:
        tmp.rename(out)
    except OSError:
        if overwrite or not out.exists():
            raise
        raise ConfigError(
            f"{out} was written while this export ran (another export to the same --out?) "
            "and is left as it is: export again with --overwrite to replace it"
        ) from None


def _tokenizer_files(tokenizer, directory: Path) -> tuple[str, ...]:
    before = set(os.listdir(directory))
    tokenizer.save_pretrained(str(directory))
    written = sorted(set(os.listdir(directory)) - before)
    if "tokenizer.json" not in written:
        raise ArtifactError(
            "the model's tokenizer is not a fast tokenizer: no tokenizer.json "
            "for serving without transformers"
        )
    return tuple(written)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for n in (
        "guardrail-dro",
        "torch",
        "transformers",
        "tokenizers",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "onnxruntime-gpu",
        "numpy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


def export_onnx(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    int8: bool = True,
    fp16: bool = False,
    allow_unchecked_fp16: bool = False,
    optimize: bool = True,
    valid=None,
    spec: ExportSpec | None = None,
    tolerances: Tolerances | None = None,
    exporter: str = "torchscript",
    threshold: float | None = None,
    target_recall: float | None = None,
    target_fpr: float | None = None,
    objective: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Export a trained model directory to a guard artifact directory.

    Args:
        model_dir: what ``guardrail-dro train`` wrote.
        out_dir: the guard artifact directory to create (must be empty or absent).
        int8: also write ``model.int8.onnx`` (CPU), gated on decision agreement and
            binary worst-group accuracy at the operating point.
        fp16: also write ``model.fp16.onnx`` (CUDA / TensorRT), checked against fp32
            on ONNX Runtime's CPU provider.
        allow_unchecked_fp16: ship the fp16 model even when that check cannot run
            (the export fails otherwise); an unchecked variant is recorded with empty
            parity and never chosen by ``precision="auto"``.
        optimize: fuse attention / layer norm / GELU with onnxruntime's optimizer.
        valid: an ``AnnotatedDataset`` (validation split): the toxic threshold is chosen
            on it (``export.thresholds``) and the int8 gates run on it; without it the
            threshold stays 0.5 (recorded as uncalibrated) and int8 agreement is
            measured on built-in probe texts only.
        spec: names, axes, opset (default ``ExportSpec()``: opset 17).
        tolerances: parity limits (overrides ``spec.tolerances``).
        exporter: ``torchscript`` (default, fast) or ``dynamo``.
        threshold: a fixed toxic threshold (its validation metrics are still recorded);
            None: chosen on ``valid`` (0.5 without it).
        target_recall: choose the lowest validation FPR with recall >= this.
        target_fpr: choose the highest validation recall with FPR <= this. Without
            ``threshold`` or a target: ``objective``.
        objective: without a target or threshold, ``worst_group_accuracy`` (default)
            or ``worst_group_balanced_accuracy`` (the best mean of recall and 1 - FPR in
            the worst group, independent of the validation split's class mix).
        overwrite: replace a non-empty ``out_dir``.
        progress: called with a short message before each slow step.

    Returns:
        ``out_dir``.

    Raises:
        ExportParityError: an exported variant differs from its reference (every
            mismatch listed); nothing is written to ``out_dir`` then.
        ArtifactError: the model directory is missing files or tampered.
        ConfigError: more than one of threshold / target_recall / target_fpr, a target
            without validation data with gold labels.
        DependencyError: torch / onnx / onnxruntime missing (names the extra).

    Example:
        >>> export_onnx("runs/model", "guard", valid=splits["valid"])
        PosixPath('guard')
    """
    from export.thresholds import (
        calibrate,
        check_objective,
        decision_function,
        describe,
        uncalibrated,
    )
    from export.validate import Validator, merge
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.serve.artifact import (
        VARIANT_FILES,
        GuardManifest,
        ModelVariant,
        write_manifest,
    )
    from guardrail_dro.serve.runtime import import_onnxruntime
    from guardrail_dro.train.model_card import model_card
    from guardrail_dro.train.modeldir import TrainedModel

    if valid is not None and not isinstance(valid, AnnotatedDataset):
        raise TypeError(f"valid must be an AnnotatedDataset or None, not {type(valid).__name__}")
    say = progress or (lambda _msg: None)
    spec = spec or ExportSpec()
    tol = tolerances or spec.tolerances
    out = Path(out_dir)
    import_onnxruntime()  # refuse early when onnxruntime and onnxruntime-gpu are both in
    check_objective(
        target_recall=target_recall,
        target_fpr=target_fpr,
        threshold=threshold,
        valid=valid is not None,
    )
    check_out(out, overwrite)
    sweep_leftovers(out, ("tmp",))  # a killed export's build (hundreds of MB), by its pid
    say(f"loading {model_dir}")
    trained = TrainedModel.load(model_dir)
    if valid is not None and tuple(valid.schema.classes) != tuple(trained.schema.classes):
        raise ConfigError(
            f"the validation data's classes {list(valid.schema.classes)} are not "
            f"the model's {list(trained.schema.classes)}"
        )
    tmp = _prepare_out(out, overwrite)
    try:
        say("converting to ONNX")
        raw = convert(trained.model, spec, tmp / "raw.onnx", exporter=exporter)
        fp32 = tmp / VARIANT_FILES["fp32"]
        fused: dict[str, int] = {}
        if optimize:
            say("optimizing the graph")
            cfg: Any = trained.model.encoder.config  # a transformers config
            fused = optimize_graph(
                raw, fp32, num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size
            )
        else:
            raw.rename(fp32)
        files = {"fp32": fp32}
        if fp16:
            say("converting to fp16")
            src = fp32
            if optimize:
                cfg = trained.model.encoder.config
                src = tmp / "gpu.onnx"
                optimize_graph(
                    raw,
                    src,
                    num_heads=cfg.num_attention_heads,
                    hidden_size=cfg.hidden_size,
                    use_gpu=True,
                )
            files["fp16"] = convert_fp16(src, tmp / VARIANT_FILES["fp16"])
        for scratch in ("raw.onnx", "gpu.onnx"):
            (tmp / scratch).unlink(missing_ok=True)
        tok_files = _tokenizer_files(trained.tokenizer, tmp)
        pad_token = str(trained.tokenizer.pad_token or "[PAD]")

        say("checking parity" + (f" on {len(valid)} validation texts" if valid else ""))
        check = Validator(trained, fp32, valid=valid, tolerances=tol)
        reports = [check.check_tokenizer(tmp, pad_token), check.check_fp32()]
        if valid is not None:
            say("choosing the operating point on the validation split")
            served = served_logits(
                check.fp32, trained.tokenizer, valid.texts, trained.manifest.max_length,
                check.reference, np.asarray(trained.schema.safe_mask(), dtype=bool),
            )  # fmt: skip
            thresholds, calibration = calibrate(
                served,
                valid,
                trained.schema,
                target_recall=target_recall,
                target_fpr=target_fpr,
                threshold=threshold,
                objective=objective,
            )
        else:
            thresholds, calibration = uncalibrated(trained.schema, threshold)
        say(describe(calibration))
        # The int8 gate compares the guard's real decisions at this operating point.
        check.decide = decision_function(trained.schema, thresholds)
        if fp16:
            reports.append(check.check_variant("fp16", files["fp16"]))
        recipe = None
        if int8:
            files["int8"] = tmp / VARIANT_FILES["int8"]
            recipe, int8_report = quantize_gated(
                fp32, files["int8"], check, say, first_only=not reports[1].ok
            )
            reports.append(int8_report)
        report = merge(*reports)
        report.require_checked({"fp16"} if allow_unchecked_fp16 else ())
        report.raise_for_mismatches()

        man = trained.manifest
        providers = {
            "fp32": ("tensorrt", "cuda", "cpu"),
            "int8": ("cpu",),
            "fp16": ("tensorrt", "cuda"),
        }
        variants = {
            name: ModelVariant(
                file=VARIANT_FILES[name],
                precision=name,
                providers=providers[name],
                parity=report.stats.get(name, {}),
                gate=report.gates.get(name),
            )
            for name in VARIANT_FILES
            if name in files
        }
        manifest = GuardManifest(
            label_schema=trained.schema,
            safe_classes=trained.schema.safe,
            thresholds=thresholds,
            calibration=calibration,
            max_length=man.max_length,
            input_names=spec.input_names,
            output_name=spec.output_name,
            opset=spec.opset,
            variants=variants,
            tokenizer_files=tok_files,
            pad_token=pad_token,
            train_metrics=man.valid_metrics.model_dump(mode="json"),
            train={
                "method": man.method,
                "backbone": man.backbone,
                "normalize": man.normalize,
                "groups": man.groups,
                "data_hashes": man.data_hashes,
                "created": man.created,
                "model_dir_manifest_sha256": file_sha256(Path(model_dir) / "manifest.json"),
                "exporter": exporter,
                "optimized": optimize,
                "fused_operators": fused,
                "parity_notes": report.notes,
                "int8_recipe": recipe,
            },
            versions=_versions(),
        )
        (tmp / "README.md").write_text(
            model_card(
                man,
                trained.schema,
                operating_point=manifest.thresholds.model_dump(),
                guard={"variants": {k: v.model_dump() for k, v in variants.items()}},
            ),
            encoding="utf-8",
        )  # listed in guard.json by write_manifest, like every file
        write_manifest(tmp, manifest)
        _into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote {out}")
    return out
