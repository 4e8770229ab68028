"""Build-time side of the guard: trained model directory -> guard artifact directory.

- ``export.spec``: what is exported (inputs, dynamic axes, opset, tolerances);
- ``export.onnx``: how (``export_onnx``, the one entry point; the exporter sits behind
  ``convert``); ``export.quantize``: int8 recipes and fp16;
- ``export.probes``: the probe texts and the PyTorch / ONNX logits compared;
- ``export.validate``: the check (``ExportParityError`` lists every mismatch);
- ``export.triton``: a Triton model repository from a guard artifact;
- ``guardrail_dro.cli.export``: ``guardrail-dro export``.

The serving side (``guardrail_dro.serve``: artifact, runtime) never imports
this package. Importing it is cheap: torch, onnx and onnxruntime load on use.
"""

from export.onnx import export_onnx
from export.spec import ExportSpec, Tolerances
from export.triton import write_triton_repository
from export.validate import ExportParityError, Mismatch, ParityReport, validate_export

__all__ = [
    "ExportParityError",
    "ExportSpec",
    "Mismatch",
    "ParityReport",
    "Tolerances",
    "export_onnx",
    "validate_export",
    "write_triton_repository",
]
