"""The ``guardrail-dro`` command line: a thin shell over the library's entry points.

Each command calls exactly one library function with the same parameter names and adds
no logic of its own. Heavy imports (torch, SDKs) happen inside the commands, so
``guardrail-dro --help`` is instant.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from guardrail_dro.errors import GuardrailError

__all__ = ["app", "main"]

app = typer.Typer(
    name="guardrail-dro",
    help="Train content-moderation guardrails from crowd + LLM labels, robust on the "
    "worst group (bi-level soft-label GroupDRO), export them to ONNX, and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def _register_plugins() -> None:
    # Other packages of the distribution add their own commands; their modules import
    # only typer and guardrail_dro at top level, so this stays cheap.
    for module in ("annotators.cli", "export.cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


def main() -> None:
    """Console entry point: library errors become one red line and exit code 2."""
    _register_plugins()
    try:
        app()
    except GuardrailError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
