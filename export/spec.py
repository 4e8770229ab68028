"""What an export produces, declared once: inputs, dynamic axes, opset, tolerances.

The *how* (``export/onnx.py``) and the *check* (``export/validate.py``) both read this
spec, in the manner of optimum's ``OnnxConfig``: swapping the converter (for optimum,
once it supports transformers 5) changes neither what is exported nor how it is checked.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ExportSpec", "Tolerances"]


class Tolerances(BaseModel):
    """Parity limits every export must meet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fp32_max_abs_diff: float = Field(
        1e-4, gt=0, description="Max |logit(ONNX fp32) - logit(PyTorch)| over the probe texts."
    )
    int8_min_decision_agreement: float = Field(
        0.99,
        ge=0,
        le=1,
        description="Share of validation texts whose decision (blocked or allowed, at the "
        "guard's operating point) int8 must share with fp32.",
    )
    int8_max_worst_group_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Max drop in binary worst-group accuracy (gold toxic vs blocked, at the "
        "operating point; int8 vs fp32) on the validation split.",
    )
    fp16_min_agreement: float = Field(
        0.98, ge=0, le=1, description="Share of argmax decisions fp16 must share with fp32."
    )


class ExportSpec(BaseModel):
    """The graph's contract: names, dtypes and dynamic axes of inputs and outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    output_name: str = "logits"
    opset: int = Field(17, ge=17, description="ONNX opset; 17 or newer.")
    batch_axis: str = "batch"
    sequence_axis: str = "sequence"
    tolerances: Tolerances = Field(default_factory=Tolerances)

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """Batch and sequence are dynamic on every input; batch on the output."""
        axes: dict[str, dict[int, str]] = {
            n: {0: self.batch_axis, 1: self.sequence_axis} for n in self.input_names
        }
        axes[self.output_name] = {0: self.batch_axis}
        return axes
