"""The ``guardrail-dro`` typer app, its commands, and ``main`` (library errors -> exit 2).

Every command is registered here, in the order ``--help`` lists them; each command
module imports only typer, rich and light parts of guardrail_dro at top level, so
``guardrail-dro --help`` is instant.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

import typer
from rich.console import Console

from guardrail_dro.cli import (
    agreement,
    annotate,
    check,
    distill,
    escalate,
    export,
    merge,
    quickstart,
    serve,
    split,
    train,
)
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
train.register(app)  # train, evaluate, bench
quickstart.register(app)
annotate.register(app)
agreement.register(app)
merge.register(app)
split.register(app)
distill.register(app)
export.register(app)
check.register(app)
escalate.register(app)
serve.register(app)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as SystemExit, except inside an import: a C extension initialising there
    (onnx's nanobind module, imported lazily mid-export) turned the exception into a C++
    ``std::terminate``, an abort that skipped every cleanup (seen in about 1 of 4 loaded
    runs of the export SIGTERM test). There the signal is sent again shortly, until the
    import has returned."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            again = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            again.daemon = True
            again.start()
            return
        frame = frame.f_back
    raise SystemExit(128 + signum)


def main() -> None:
    """Console entry point: library errors become one red line and exit code 2."""
    from pydantic import ValidationError
    from rich.markup import escape

    # No emoji codes: a message naming a bundled split ("toxic:train:") must not turn
    # ":train:" into a train emoji.
    err = Console(stderr=True, emoji=False)
    # SIGTERM (a `kill`, a container stopping) ends the run through SystemExit, so the
    # `finally` blocks run: an export removes its half-written temporary folder (87 MB
    # was left behind) and caches close, as on Ctrl-C. `serve` installs uvicorn's own.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        app()
    except GuardrailError as exc:
        # escape: a message naming "[[annotators]]" or a path with brackets is text, not
        # markup (it printed "list [] in the --config file")
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except ValidationError as exc:  # a typed config built from options: name the field
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or exc.title
            msg = e["msg"].removeprefix("Value error, ")
            err.print(f"[bold red]error:[/] {escape(f'{where}: {msg}')}", highlight=False)
        sys.exit(2)
