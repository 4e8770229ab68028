"""A recipe that fails the int8 gate and is passed over says by how much.

Before: the export printed "note: int8 recipe 'per-channel s8' failed the gate" and
nothing else, so a user could not tell a 2x-faster recipe that missed by one text from
one that flipped dozens (the numbers were kept only when every recipe failed).
"""

from __future__ import annotations

from pathlib import Path

from export.validate import ParityReport
from guardrail_dro.errors import Mismatch

AGREEMENT = "decision agreement with fp32 (blocked or not)"


class _FirstRecipeFails:
    """An int8 check (``Validator.check_variant``'s shape) failing the first model it
    is given, by known numbers, and passing every other."""

    def __init__(self) -> None:
        self.seen: list[Path] = []

    def check_variant(self, variant: str, path: Path) -> ParityReport:
        self.seen.append(path)
        if len(self.seen) > 1:
            return ParityReport(stats={variant: {"decision_agreement": 1.0}})
        detail = "12 of 1000 validation texts changed decision (7 newly blocked, 5 newly allowed)"
        return ParityReport(
            stats={variant: {"decision_agreement": 0.988}},
            mismatches=[
                Mismatch(variant, AGREEMENT, 0.988, 0.99, detail),
                Mismatch(variant, "binary worst-group accuracy drop vs fp32", 0.0135, 0.01),
            ],
        )


def test_a_recipe_passed_over_is_noted_with_its_numbers(tiny_export, tmp_path: Path) -> None:
    from export.quantize import INT8_RECIPES, quantize_gated

    check = _FirstRecipeFails()
    kept, report = quantize_gated(
        tiny_export["guard"] / "model.onnx",
        tmp_path / "int8.onnx",
        check,
        lambda _: None,
        first_only=False,
    )
    assert kept == INT8_RECIPES[1].name and report.ok and len(check.seen) == 2
    first = INT8_RECIPES[0].name
    assert report.notes == [
        f"int8 recipe {first!r} failed the gate: {AGREEMENT} 0.988 (limit 0.99): 12 of 1000 "
        "validation texts changed decision (7 newly blocked, 5 newly allowed); binary "
        "worst-group accuracy drop vs fp32 0.0135 (limit 0.01)"
    ]
