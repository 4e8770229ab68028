"""The quickstart's options that exclude each other, refused before any work.

Its own module so that ``cli/quickstart.py`` stays the orchestrator (and under its size
limit).
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["refuse_conflicts", "refuse_student"]


def refuse_conflicts(
    *,
    synthetic: bool,
    schema: Path | None,
    live: bool,
    annotator: list[str] | None,
    background_safe: list[str] | None,
    no_background: bool,
    background_harmful: list[str] | None,
    no_harmful: bool,
    choose_background: bool,
) -> None:
    """Options one of which would silently undo the other: refused before any work, since
    the run that ignored one (the replay instead of ``--annotator``'s model, no background
    instead of the one named) takes minutes to show it."""
    pairs = [
        (annotator and not live, "--annotator takes --live (the offline pass replays "
         "recorded labels): add --live or drop --annotator"),
        (no_background and background_safe, "--no-background and --background-safe "
         "exclude each other"),
        (no_background and background_harmful, "--no-background trains no harmful text "
         "either: drop --background-harmful or --no-background"),
        (no_harmful and background_harmful, "--no-harmful and --background-harmful "
         "exclude each other"),
        (choose_background and (no_background or (synthetic and not background_safe)),
         "--choose-background needs background-safe text (--background-safe; the "
         "synthetic set has none by default)"),
        (synthetic and background_harmful and not background_safe, "--background-harmful "
         "with --synthetic needs --background-safe too (harmful text alone teaches that "
         "all text is harmful)"),
        (synthetic and schema, "--schema reads --data's CSVs; the synthetic set has its own"),
    ]  # fmt: skip
    for conflict, why in pairs:
        if conflict:
            raise typer.BadParameter(why)


def refuse_student(student: int | None) -> None:
    """A ``--student`` with more layers than the embedded MiniLM: ``distill`` refused it
    only after the bench and the export, minutes into the run."""
    if student is None:
        return
    from guardrail_dro.cli.distill import encoder_layers
    from guardrail_dro.train.model import default_backbone

    layers = encoder_layers(default_backbone())
    if layers is not None and student > layers:
        raise typer.BadParameter(
            f"{student}: the backbone (all-MiniLM-L6-v2) has {layers} layers; a student "
            f"takes 1..{layers} (2 is the recommended one)",
            param_hint="--student",
        )
