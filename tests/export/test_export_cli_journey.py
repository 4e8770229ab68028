"""``guardrail-dro export`` as a CPU deployment uses it: what ``--model`` must be, said
before any work, and a Triton repository a Triton without a GPU can load.

Before: a guard artifact given as ``--model`` got "label schema file not found:
GUARD/schema.json" (with ``--valid`` or ``--distill``), or seconds of loading and then
"no manifest.json"; ``--triton`` always wrote KIND_GPU instances with a TensorRT
accelerator, which a CPU-only Triton refuses ("has kind KIND_GPU but no GPUs are
available"), and no option chose otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from guardrail_dro.cli.export import register


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by name
    register(app)
    return app


def _run(*args: str):
    return CliRunner().invoke(_app(), ["export", *args])


def _said(result) -> str:
    return " ".join(result.output.replace("│", " ").split())  # the error box, unwrapped


@pytest.mark.parametrize(
    "extra",
    [["--valid", "toxic-questions:valid"], ["--distill", "2"], []],
    ids=["valid", "distill", "plain"],
)
def test_a_guard_artifact_as_model_is_named_before_any_work(tmp_path: Path, extra) -> None:
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "guard.json").write_text("{}")  # what export writes; no manifest.json
    result = _run("--model", str(guard), "--out", str(tmp_path / "out"), *extra)
    said = _said(result)
    assert result.exit_code == 2, result.output
    assert "--model" in said and "it is a guard artifact" in said, said
    assert "schema.json" not in said and "loading" not in said
    assert not (tmp_path / "out").exists() and not (tmp_path / "out-model").exists()


def test_a_folder_without_a_model_names_the_option(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("--model", str(empty), "--out", str(tmp_path / "out"))
    said = _said(result)
    assert result.exit_code == 2 and "--model" in said and "no manifest.json" in said, said
    assert "train --out" in said and "loading" not in said


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--triton-kind", "cpu"], "give --triton DIR too"),
        (["--triton", "REPO", "--triton-kind", "tpu"], "gpu or cpu, not 'tpu'"),
    ],
    ids=["without-triton", "unknown-kind"],
)
def test_triton_kind_is_checked_before_any_work(
    tiny_model_dir: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    args = [a.replace("REPO", str(tmp_path / "repo")) for a in extra]
    result = _run("--model", str(tiny_model_dir), "--out", str(tmp_path / "out"), *args)
    said = _said(result)
    assert result.exit_code == 2 and "--triton-kind" in said and message in said, said
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()


def test_triton_kind_cpu_serves_the_gated_int8_on_cpu_instances(
    tiny_model_dir: Path, valid_jsonl: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tritonclient", reason="Triton's protobuf definitions (tritonclient)")
    from export.triton import parse_config
    from guardrail_dro.serve.artifact import load_artifact

    guard, repo = tmp_path / "guard", tmp_path / "repo"
    result = _run(
        "--model", str(tiny_model_dir), "--out", str(guard), "--valid", str(valid_jsonl),
        "--triton", str(repo), "--triton-kind", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    art = load_artifact(guard)
    served = art.best_variant("cpu")
    assert served == "int8"  # what Guard.load runs on a CPU, and not what gpu serves
    assert f"Triton repository: {repo} (cpu, {served})" in result.output
    model = repo / "guardrail"
    assert (model / "1" / "model.onnx").read_bytes() == art.model_path(served).read_bytes()
    cfg = parse_config((model / "config.pbtxt").read_text())
    assert [g.kind for g in cfg.instance_group] == [cfg.instance_group[0].KIND_CPU]
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator
