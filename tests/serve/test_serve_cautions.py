"""``guardrail-dro serve`` says what export warned about the artifact it serves.

Before: a guard exported without ``--valid`` was served without a word, at a threshold
of 0.5 never chosen on data (a distilled student blocked "hello there" at 0.54) and with
an int8 model gated on 16 probe texts only; export had said so once, in a terminal long
closed by the time the server started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from guardrail_dro.cli.app import app

UNCALIBRATED = "warning: uncalibrated: no validation split; threshold 0.5 was not chosen"
PROBES = "warning: its int8 model was gated on built-in probe texts only"


@pytest.fixture(scope="module")
def calibrated_dir(tiny_model_dir: Path, synthetic, tmp_path_factory) -> Path:
    from export.onnx import export_onnx

    out = tmp_path_factory.mktemp("calibrated") / "guard"
    return export_onnx(tiny_model_dir, out, int8=True, valid=synthetic["valid"])


def _serve(guard_dir: Path, monkeypatch, *args: str) -> str:
    import guardrail_dro.serve.http as http

    started: list[object] = []
    monkeypatch.setattr(http, "serve", lambda app, **kw: started.append(app))  # no socket
    res = CliRunner().invoke(app, ["serve", "--guard", str(guard_dir), "--port", "0", *args])
    assert res.exit_code == 0 and len(started) == 1, res.output
    return res.output


def test_an_artifact_exported_without_valid_is_named(guard_dir: Path, monkeypatch) -> None:
    out = _serve(guard_dir, monkeypatch, "--provider", "cpu")
    assert UNCALIBRATED in out and "export with --valid to calibrate it" in out
    assert PROBES in out and "serve --precision fp32" in out


def test_fp32_keeps_the_threshold_warning_only(guard_dir: Path, monkeypatch) -> None:
    out = _serve(guard_dir, monkeypatch, "--provider", "cpu", "--precision", "fp32")
    assert UNCALIBRATED in out and "gated on built-in probe texts" not in out


def test_a_calibrated_gated_artifact_gets_no_warning(calibrated_dir: Path, monkeypatch) -> None:
    from guardrail_dro.cli.serve import cautions
    from guardrail_dro.serve.guard import Guard

    guard = Guard.load(calibrated_dir, provider="cpu")
    assert guard.precision == "int8" and cautions(guard) == []
    assert "warning:" not in _serve(calibrated_dir, monkeypatch, "--provider", "cpu")


def test_a_guard_without_an_artifact_has_nothing_to_say(fake_guard) -> None:
    from guardrail_dro.cli.serve import cautions

    assert cautions(fake_guard) == []


def test_check_says_it_too_and_keeps_stdout_json(guard_dir: Path) -> None:
    """``check`` on the same artifact: the warnings on stderr, one JSON object on stdout;
    a threshold given on the command line is the caller's choice, so only the int8
    gate's warning stays."""
    import json

    argv = ["check", "--guard", str(guard_dir), "--provider", "cpu", "hello there"]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    assert UNCALIBRATED in res.stderr and PROBES in res.stderr
    assert "allowed" in json.loads(res.stdout)
    chosen = CliRunner().invoke(app, [*argv[:-1], "--toxic-threshold", "0.7", argv[-1]])
    assert chosen.exit_code == 0, chosen.output
    assert "uncalibrated" not in chosen.stderr and PROBES in chosen.stderr
