"""``guardrail-dro check``: run a guard artifact on a text or a JSONL file, print JSON.

A thin shell over ``Guard.load(guard_dir, provider=..., precision=..., policy=...)`` and
``Guard.check`` / ``Guard.check_many``; onnxruntime loads inside the command.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from guardrail_dro.cli.escalate import JudgeOptions
from guardrail_dro.cli.options import GuardDir, takes_option_groups

__all__ = ["check_command", "register"]

_HELP = (
    "Check texts with a guard artifact and print the results as JSON.\n\n"
    "One TEXT: prints one JSON object (allowed, label, scores, triggered, toxic_score, "
    "action, degraded, windows, latency_ms...). --file IN.jsonl: one JSON line per text "
    'line, in order, with "line" its line number (blank lines are skipped); each line is '
    'a string or an object with a "text" field (other fields, e.g. an id, are copied to '
    'the output, as "input_NAME" where NAME is also a result field, e.g. a gold "label"; '
    "a NaN or Infinity, which is not JSON, as null); "
    "a file that is not UTF-8 or holds no text is an error (exit 2). "
    "Exit code 0 whatever the decisions; "
    "--exit-code makes it 1 when any text is not allowed.\n\n"
    "Examples:\n\n"
    'guardrail-dro check --guard guard "how do I bake bread?"\n\n'
    "guardrail-dro check --guard guard --file prompts.jsonl > results.jsonl"
)


#: (input line number or None, the input's other fields) of each text
Extra = tuple[int | None, dict[str, Any]]


def _read_jsonl(path: Path, field: str) -> tuple[list[str], list[Extra]]:
    """The texts of a JSONL file and, for each, its line number and other fields.

    Read as bytes and decoded line by line, so that a file that is not UTF-8 is a
    ``ReaderError`` naming the line (the CLI prints one line and exits 2), not a
    traceback; a file with no text lines at all is an error too, never a silent run
    that prints nothing.
    """
    from guardrail_dro.errors import ReaderError

    texts: list[str] = []
    extras: list[Extra] = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ReaderError(
                    f"not UTF-8 text (byte {exc.start + 1} of the line: {exc.reason}); "
                    "save the file as UTF-8",
                    path=path,
                    line=n,
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReaderError(f"not JSON: {exc.msg}", path=path, line=n) from None
            if isinstance(row, str):
                row = {field: row}
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise ReaderError(
                    f"expected a string or an object with a string {field!r} field",
                    path=path,
                    line=n,
                    column=field,
                )
            texts.append(row[field])
            # the line number goes out with the result, to realign the output
            extras.append((n, {k: v for k, v in row.items() if k != field}))
    if not texts:
        what = "is empty" if path.stat().st_size == 0 else "holds only blank lines"
        raise ReaderError(
            f"no texts to check: the file {what} (one JSON string or object with a "
            f"{field!r} field per line)",
            path=path,
        )
    return texts, extras


def _output_line(extra: Extra, result: dict) -> str:
    """One output line: the result's fields, the input's other fields beside them (one
    that shares a result field's name as ``input_NAME``, or ``input_input_NAME`` if the
    input has that too, never overwritten), as strict JSON (an input's NaN or Infinity
    as null) that the output stream can encode (ASCII escapes where it cannot, e.g. a
    lone surrogate or a cp1252 console)."""
    n, fields = extra
    if n is not None:
        result = {"line": n, **result}
    line: dict = {}
    for k, v in fields.items():
        while k in result or k in line:
            k = f"input_{k}"
        line[k] = v
    line.update(result)
    try:
        text = json.dumps(line, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or Infinity read from the input (not JSON): null
        line = _finite(line)
        text = json.dumps(line, ensure_ascii=False, allow_nan=False)
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except UnicodeEncodeError:
        text = json.dumps(line, allow_nan=False)
    return text + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (which Python's json reads from an
    input line, but which is not JSON) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _one_source(text: str | None, file: Path | None) -> str | Path:
    """The one input to check: TEXT or --file, never both, never neither."""
    if file is None and text is not None:
        return text
    if text is None and file is not None:
        return file
    raise typer.BadParameter("give either a TEXT or --file IN.jsonl")


@takes_option_groups
def check_command(
    guard_dir: GuardDir,
    text: Annotated[str | None, typer.Argument(help="The text to check.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="JSONL of texts to check in batches.", exists=True, dir_okay=False
        ),
    ] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="Field of the text.")] = "text",
    provider: Annotated[
        str, typer.Option("--provider", help="auto | tensorrt | cuda | cpu")
    ] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help="auto | int8 | fp32 | fp16")
    ] = "auto",
    toxic_threshold: Annotated[
        float | None, typer.Option("--toxic-threshold", help="Override guard.json's.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Texts per batch.")] = 32,
    max_windows: Annotated[
        int | None,
        typer.Option(
            "--max-windows",
            min=0,
            help="Windows scored per text at most; a longer text is degraded, saying so "
            "(default: Policy's, 24; 0: every window).",
        ),
    ] = None,
    max_chars: Annotated[
        int | None,
        typer.Option(
            "--max-chars",
            min=0,
            help="A longer text is not scored: degraded, saying so (default: Policy's, "
            "16384; 0: any length, its first --max-windows windows scored).",
        ),
    ] = None,
    manifest_sha256: Annotated[
        str | None,
        typer.Option(
            "--manifest-sha256", help="Refuse a guard.json other than this one (export prints it)."
        ),
    ] = None,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when any text is not allowed.")
    ] = False,
    *,
    judging: JudgeOptions,
) -> None:
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.policy import Policy

    source = _one_source(text, file)
    # Given: that bound (0: none); not given: Policy's default.
    given = {"max_windows": max_windows, "max_chars": max_chars}
    bounds: dict[str, Any] = {k: v or None for k, v in given.items() if v is not None}
    # The file is read before the guard loads: a bad file fails fast, naming the line.
    rows = None if isinstance(source, str) else _read_jsonl(source, text_field)
    guard = Guard.load(
        guard_dir,
        provider=provider,
        precision=precision,
        policy=Policy(toxic_threshold=toxic_threshold, **bounds),
        batch_size=batch_size,
        manifest_sha256=manifest_sha256,
    )
    from guardrail_dro.cli.serve import cautions

    for line in cautions(guard, threshold_given=toxic_threshold is not None):
        print(line, file=sys.stderr)  # stdout stays one JSON object a line
    cascade = judging.build(guard)
    if cascade is not None:
        texts, extras = ([str(source)], [(None, {})]) if rows is None else rows
        results = _print_escalated(cascade, texts, extras)
    elif rows is None:
        assert isinstance(source, str)
        results = [guard.check(source)]
        sys.stdout.write(_output_line((None, {}), results[0].to_dict()))
    else:
        texts, extras = rows
        results = []
        for s in range(0, len(texts), batch_size):
            results += guard.check_many(texts[s : s + batch_size])
        for extra, r in zip(extras, results, strict=True):
            sys.stdout.write(_output_line(extra, r.to_dict()))
    if exit_code and not all(r.allowed for r in results):
        raise typer.Exit(1)


def _print_escalated(cascade: Any, texts: list[str], extras: list[Extra]) -> list[Any]:
    """``check`` with ``--escalate``: one JSON object per text (the decision in force,
    ``escalated``, the judge's answer)."""
    with cascade:  # closes the judge's connections when done
        out = cascade.check_many(texts)
    for extra, e in zip(extras, out, strict=True):
        answer = None
        if e.judge is not None:
            keep = ("outcome", "label", "rationale", "confidence", "model", "error")
            answer = {k: getattr(e.judge, k) for k in keep}
        result = {**e.result.to_dict(), "escalated": e.escalated, "judge": answer}
        sys.stdout.write(_output_line(extra, result))
    return [e.result for e in out]


def register(app: typer.Typer) -> None:
    """Add the ``check`` command to the ``guardrail-dro`` app."""
    app.command("check", help=_HELP, no_args_is_help=True)(check_command)
