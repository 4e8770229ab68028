"""Triton model repository: config checked with Triton's own ModelConfig protobuf."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tritonclient", reason="Triton's protobuf definitions (tritonclient)")


def test_repository_layout_and_config(tiny_export) -> None:
    from export.triton import parse_config
    from guardrail_dro.serve.artifact import load_artifact

    repo: Path = tiny_export["triton"]
    model = repo / "guardrail"
    assert (model / "1" / "model.onnx").read_bytes() == (
        tiny_export["guard"] / "model.onnx"
    ).read_bytes()
    cfg = parse_config((model / "config.pbtxt").read_text())
    art = load_artifact(tiny_export["guard"])
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 32
    assert [i.name for i in cfg.input] == ["input_ids", "attention_mask"]
    assert list(cfg.input[0].dims) == [-1]
    assert list(cfg.output[0].dims) == [art.schema.num_classes]
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.preferred_batch_size
    accel = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel[0].name == "tensorrt" and accel[0].parameters["precision_mode"] == "FP16"
    labels = (model / "labels.txt").read_text().split()
    assert labels == list(art.schema.classes)


def test_cpu_int8_repository(tiny_export, tmp_path: Path) -> None:
    from export.triton import parse_config, write_triton_repository

    model = write_triton_repository(
        tiny_export["guard"], tmp_path, name="g8", variant="int8", kind="KIND_CPU", max_batch_size=8
    )
    cfg = parse_config((model / "config.pbtxt").read_text())
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8]


def test_invalid_config_text_is_refused() -> None:
    from export.triton import parse_config
    from guardrail_dro.errors import ArtifactError

    with pytest.raises(ArtifactError, match="not a valid Triton ModelConfig"):
        parse_config('name: "x"\nmax_batch_size: "lots"\n')
    with pytest.raises(ArtifactError, match="not a valid Triton ModelConfig"):
        parse_config('name: "x"\nno_such_field: 1\n')
