"""Reduced-precision variants: int8 (gated) and fp16.

int8 recipes are tried in ``INT8_RECIPES`` order (fastest first); the first whose
variant passes the int8 gate (``export.gate``: decision agreement with fp32 >= 0.99 at
the operating point, binary worst-group accuracy drop <= 0.01) is kept.

Measured by ``benchmarks/bench_int8_recipes.py`` on toxic-questions valid (1,000 texts,
15 classes, smallest worst group 53 texts), with the frozen-MiniLM ``ours`` model, at
the threshold that maximises fp32's binary worst-group accuracy on valid (toxic >=
0.5044: 870 blocked, worst group 0.8302); each text scored alone; latency and size are
ratios to fp32 timed interleaved in the same run, on a 2-core machine shared by seven
jobs (load average 9-18), so latency ratios move by about +-0.2 between runs:

=================================  =====  ========  ========  =======  =====  =======
recipe                             gate   decision  flips     wg drop  size   latency
=================================  =====  ========  ========  =======  =====  =======
dynamic per-channel s8 (old 1st)   fail   0.986     14        0.019    0.25   0.53
dynamic per-channel u8 (old 2nd)   fail   0.980     20        0.008    0.25   0.58
dynamic s8, first block fp32 (3rd) fail   0.986     14        0.038    0.31   0.60
dynamic per-tensor s8              fail   0.967     33        0.019    0.25   0.48
blockwise 8-bit, block 16          fail   0.996     4         0.038    0.76   1.05
blockwise 8-bit, block 32          PASS   0.997     3         0.008    0.75   0.99
blockwise 8-bit, block 64          PASS   0.998     2         0.000    0.74   1.04
blockwise 8-bit, block 128         fail   0.996     4         0.038    0.74   1.00
blockwise block 32, fp32 compute   PASS   0.998     2         0.008    0.75   4.10
static QDQ MinMax, all ops         build fails (head bias: no valid activation scale)
static QDQ MinMax, MatMul          fail   0.992     8         0.019    0.74   1.08
static QDQ Percentile / Entropy    build fails (no histogram for the untyped tensors)
=================================  =====  ========  ========  =======  =====  =======

(static QDQ calibrated on 128 training texts, per channel.) Block 32 with fp32
compute passes too but is 4x slower than fp32 (weights dequantized on every run), so
it is not kept: a CPU variant slower than the fp32 one it replaces has no use.

Why blockwise wins: dynamic quantization gives each activation tensor ONE scale per
run, and MiniLM's hidden states carry a few outlier dimensions, so every other
dimension loses precision: max |logit diff| ~0.9-1.8 and 14-33 decision flips, spread
over every layer (a per-group sensitivity sweep found no node whose exclusion fixes it;
the head Gemm alone gives 0.7 logit error but little toxic-score error). ``MatMulNBits``
with 8-bit weights scales every block of 32-64 input values separately, weights and
(with int8 compute) activations, so an outlier costs one block its precision: max
|logit diff| 0.10-0.13, 2-4 flips. Static QDQ did not help here: ONNX Runtime cannot
type the fused contrib ops (Attention, SkipLayerNormalization), so most MatMuls are
left unquantized or the build fails on the head's bias. The price: blockwise keeps the
fused attention, embeddings and head in fp32 (size 0.74 of fp32, not 0.25) and is
about as fast as fp32 on this CPU, not 2x faster like the dynamic recipes. The worst-
group criterion is coarse at this data size: one text of the 53-text worst group is
1.9 points, so blocks 16 and 128 fail on 2 texts while block 32 / 64 pass; block 32
is first because it timed faster in both interleaved runs (0.99 vs 1.04 here, 0.80 vs
1.01 in an earlier one), block 64 is the fallback.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from guardrail_dro.errors import ConfigError, require

__all__ = [
    "CANDIDATE_RECIPES",
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
    # MatMulNBitsQuantizer logs every node at INFO on a logger with its own handler.
    names = ("", "onnxruntime", "onnxruntime.quantization.matmul_nbits_quantizer")
    loggers = [logging.getLogger(n) for n in names]
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
    passes the int8 gate (``export.gate``: decision agreement, binary worst-group drop).

    ``dynamic``: ``quantize_dynamic`` (int8 weights per channel or per tensor; each
    activation tensor quantized per run with one scale). ``blockwise``: ``MatMulNBits``
    with 8-bit weights in blocks of ``block_size`` along the input dimension, one scale
    per block; with ``int8_compute`` (accuracy level 4) activations are quantized per
    block too, so an outlier dimension costs one block its precision, not a whole row.
    """

    name: str
    method: Literal["dynamic", "blockwise"] = "dynamic"
    weight_type: str = "s8"  # dynamic: s8 (signed int8 weights) or u8
    per_channel: bool = True  # dynamic
    keep_first_layer_fp32: bool = False  # dynamic
    block_size: int = 32  # blockwise
    int8_compute: bool = True  # blockwise: int8 dot products (accuracy level 4)


#: Tried in this order, fastest first: dynamic per-channel s8 (about half fp32's latency,
#: a quarter of its size) where a model's margins allow it, then the blockwise recipes
#: that passed the gate on toxic-questions valid where dynamic did not (about fp32's
#: latency, 0.75 of its size). On toxic-questions the first attempt fails and costs one
#: scoring pass of the validation split; a model it passes keeps the 2x speed-up. See the
#: module docstring for the table and ``benchmarks/bench_int8_recipes.py`` to re-measure.
INT8_RECIPES: tuple[Int8Recipe, ...] = (
    Int8Recipe("per-channel s8"),
    Int8Recipe("block-32 s8, int8 compute", method="blockwise", block_size=32),
    Int8Recipe("block-64 s8, int8 compute", method="blockwise", block_size=64),
)

#: Every recipe the benchmark measures (today's three dynamic ones first).
CANDIDATE_RECIPES: tuple[Int8Recipe, ...] = (
    Int8Recipe("per-channel s8"),
    Int8Recipe("per-channel u8", weight_type="u8"),
    Int8Recipe("per-channel s8, first block fp32", keep_first_layer_fp32=True),
    Int8Recipe("per-tensor s8", per_channel=False),
    Int8Recipe("block-16 s8, int8 compute", method="blockwise", block_size=16),
    *INT8_RECIPES[1:],
    Int8Recipe("block-128 s8, int8 compute", method="blockwise", block_size=128),
    Int8Recipe("block-32 s8, fp32 compute", method="blockwise", int8_compute=False),
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


def _quantize_blockwise(src: Path, dst: Path, recipe: Int8Recipe) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(src)),
        bits=8,
        block_size=recipe.block_size,
        is_symmetric=True,
        accuracy_level=4 if recipe.int8_compute else None,
    )
    quantizer.process()
    onnx.save(quantizer.model.model, str(dst))


def quantize_int8(src: Path, dst: Path, recipe: Int8Recipe = INT8_RECIPES[0]) -> Path:
    """Quantize the fp32 graph ``src`` to ``dst`` with ``recipe``. For dynamic recipes,
    shape inference cannot type the fused contrib ops, so untyped tensors default to
    float; blockwise recipes rewrite only the MatMul nodes (the fused attention, the
    embeddings and the head stay fp32)."""
    require("onnxruntime", "cpu")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if recipe.method not in ("dynamic", "blockwise"):
        raise ConfigError(f"unknown int8 method {recipe.method!r}: use dynamic or blockwise")
    with quiet_logging():
        if recipe.method == "blockwise":
            _quantize_blockwise(Path(src), Path(dst), recipe)
            return dst
        weight = {"s8": QuantType.QInt8, "u8": QuantType.QUInt8}[recipe.weight_type]
        exclude = _first_block_nodes(src) if recipe.keep_first_layer_fp32 else []
        quantize_dynamic(
            str(src),
            str(dst),
            per_channel=recipe.per_channel,
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


def quantize_gated(
    fp32: Path,
    dst: Path,
    check,
    say: Progress,
    *,
    first_only: bool,
    recipes: Sequence[Int8Recipe] = INT8_RECIPES,
):
    """Quantize with each recipe in turn until one passes the int8 gate
    (``check.check_variant("int8", ...)``: an ``export.validate.Validator`` whose
    ``decide`` is the guard's operating point).

    Returns:
        (the recipe kept or None, the report: the passing one, or every recipe's
        mismatches when none passed).
    """
    from export.validate import Mismatch, ParityReport

    failed: list[Mismatch] = []
    notes: list[str] = []
    for recipe in recipes[:1] if first_only else recipes:
        say(f"quantizing to int8 ({recipe.name})")
        quantize_int8(fp32, dst, recipe)
        report = check.check_variant("int8", dst)
        if report.ok:
            report.notes += notes
            return recipe.name, report
        # With the numbers: "failed the gate" alone left a user no way to tell a recipe
        # that missed by one text from one that flipped dozens (README "int8 recipes").
        why = "; ".join(
            f"{m.check} {m.measured:.4g} (limit {m.limit:g})" + (m.detail and f": {m.detail}")
            for m in report.mismatches
        )
        notes.append(f"int8 recipe {recipe.name!r} failed the gate: {why}")
        failed += [
            Mismatch(m.variant, m.check, m.measured, m.limit, f"recipe {recipe.name}: {m.detail}")
            for m in report.mismatches
        ]
    return None, ParityReport(
        stats=report.stats, mismatches=failed, notes=notes, gates=dict(report.gates)
    )
