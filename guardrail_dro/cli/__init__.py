"""The ``guardrail-dro`` command line: a thin shell over the library's entry points.

Each command calls the library's entry point with the same parameter names and adds no
logic of its own. Heavy imports (torch, SDKs, onnxruntime) happen inside the commands.

- ``app``: the typer app and ``main``, the console entry point (errors -> exit code 2);
- ``options``: option groups shared by commands (data columns, label schema);
- ``train``: train, evaluate, bench;
- ``quickstart``: quickstart (and its orchestrator, ``run_quickstart``);
- ``annotate``, ``distill``, ``export``, ``check``: one command each.
"""

from guardrail_dro.cli.app import app, main

__all__ = ["app", "main"]
