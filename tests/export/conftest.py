"""Export fixtures: the tiny model exported once per session, through the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _has_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


requires_gpu = pytest.mark.skipif(not _has_cuda(), reason="needs onnxruntime-gpu and a GPU")


@pytest.fixture(scope="session")
def valid_jsonl(synthetic, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("valid") / "valid.jsonl"
    synthetic["valid"].save_jsonl(path)
    return path


@pytest.fixture(scope="session")
def tiny_export(tiny_model_dir: Path, valid_jsonl: Path, tmp_path_factory) -> dict[str, Path]:
    """``guardrail-dro export`` of the tiny model: fp32 + int8 + fp16, gated on the
    synthetic validation split, with a Triton repository."""
    pytest.importorskip("onnxruntime")
    import typer
    from typer.testing import CliRunner

    from guardrail_dro.cli.export import register

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by name
    register(app)
    root = tmp_path_factory.mktemp("export")
    guard, triton = root / "guard", root / "triton"
    args = [
        "export",
        "--model",
        str(tiny_model_dir),
        "--out",
        str(guard),
        "--fp16",
        "--valid",
        str(valid_jsonl),
    ]
    try:
        import tritonclient  # noqa: F401

        args += ["--triton", str(triton)]
    except ImportError:
        triton = None
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"guard": guard, "triton": triton, "output": result.output}


@pytest.fixture()
def guard_copy(tiny_export, tmp_path) -> Path:
    """A private copy of the exported guard directory, free to tamper with."""
    return Path(shutil.copytree(tiny_export["guard"], tmp_path / "guard"))
