"""Reduced-precision variants: int8 dynamic quantization (gated) and fp16.

int8 recipes are tried fastest first; the first one whose variant passes the int8 gate
(argmax agreement with fp32, worst-group accuracy drop; ``export.validate``) is kept.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from guardrail_dro.errors import require

__all__ = [
    "INT8_RECIPES",
    "Int8Recipe",
    "Progress",
    "convert_fp16",
    "quantize_gated",
    "quantize_int8",
    "quiet_logging",
]

Progress = Callable[[str], None]


@contextlib.contextmanager
def quiet_logging():
    import logging

    # onnxruntime.quantization logs on the root logger, the optimizer on its own (an
    # ERROR line when asked for GPU fusions on a machine without one: harmless here).
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass(frozen=True)
class Int8Recipe:
    """One way to quantize; the exporter tries them in order and keeps the first that
    passes the int8 gate (agreement, worst-group drop)."""

    name: str
    weight_type: str = "s8"  # s8: signed int8 weights (fastest kernels); u8: unsigned
    keep_first_layer_fp32: bool = False


#: Fastest first. Per-channel s8 agreed with fp32 on 98.7% of MiniLM decisions (per
#: tensor: 95.3%); u8 weights and a float first block are the usual fixes when a
#: model's margins are thin.
INT8_RECIPES: tuple[Int8Recipe, ...] = (
    Int8Recipe("per-channel s8"),
    Int8Recipe("per-channel u8", weight_type="u8"),
    Int8Recipe("per-channel s8, first block fp32", keep_first_layer_fp32=True),
)


def _first_block_nodes(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type in ("MatMul", "Attention")
        and ("layer.0/" in n.name or n.name == "Attention_0")
    ]


def quantize_int8(src: Path, dst: Path, recipe: Int8Recipe = INT8_RECIPES[0]) -> Path:
    """Dynamic int8 quantization of the weights, per channel. Shape inference cannot
    type the fused contrib ops, so untyped tensors default to float."""
    require("onnxruntime", "cpu")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = {"s8": QuantType.QInt8, "u8": QuantType.QUInt8}[recipe.weight_type]
    exclude = _first_block_nodes(src) if recipe.keep_first_layer_fp32 else []
    with quiet_logging():
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=True,
            weight_type=weight,
            nodes_to_exclude=exclude,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def convert_fp16(src: Path, dst: Path) -> Path:
    """float16 weights and activations, float32 inputs/outputs kept (for CUDA/TensorRT)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet_logging():
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def quantize_gated(fp32: Path, dst: Path, check, say: Progress, *, first_only: bool):
    """Quantize with each recipe in turn until one passes the int8 gate.

    Returns:
        (the recipe kept or None, the report: the passing one, or every recipe's
        mismatches when none passed).
    """
    from export.validate import Mismatch, ParityReport

    failed: list[Mismatch] = []
    notes: list[str] = []
    recipes = INT8_RECIPES[:1] if first_only else INT8_RECIPES
    for recipe in recipes:
        say(f"quantizing to int8 ({recipe.name})")
        quantize_int8(fp32, dst, recipe)
        report = check.check_variant("int8", dst)
        if report.ok:
            report.notes += notes
            return recipe.name, report
        notes.append(f"int8 recipe {recipe.name!r} failed the gate")
        failed += [
            Mismatch(m.variant, m.check, m.measured, m.limit, f"recipe {recipe.name}: {m.detail}")
            for m in report.mismatches
        ]
    return None, ParityReport(stats=report.stats, mismatches=failed, notes=notes)
