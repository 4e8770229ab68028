"""The Triton repository: version folders Triton can serve, the config serving the
version just written, and its inputs / outputs those of the ONNX graph it serves."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tritonclient", reason="Triton's protobuf definitions (tritonclient)")

from export.triton import model_config_pb2, parse_config, write_triton_repository
from guardrail_dro.errors import ConfigError


@pytest.mark.parametrize(
    ("option", "value"),
    [("version", 0), ("version", -1), ("version", True), ("version", "03"),
     ("max_batch_size", True), ("max_batch_size", 2.5)],
)  # fmt: skip
def test_a_version_or_batch_size_triton_cannot_serve_is_refused(
    tiny_export, tmp_path: Path, option: str, value: object
) -> None:
    # Before: folders "0", "-1", "True", "03" were written, which Triton skips, so the
    # model had no version to load; max_batch_size=True failed as an invalid config.
    with pytest.raises(ConfigError, match=f"{option} must be an int >= 1"):
        write_triton_repository(tiny_export["guard"], tmp_path / "repo", **{option: value})
    assert not (tmp_path / "repo").exists()


def test_the_config_serves_the_version_just_written(tiny_export, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_triton_repository(tiny_export["guard"], repo, version=2)
    model = write_triton_repository(tiny_export["guard"], repo, version=1, variant="int8")
    cfg = parse_config((model / "config.pbtxt").read_text())
    # Before: no version policy, so Triton's default (the latest) served the stale 2/.
    assert list(cfg.version_policy.specific.versions) == [1]
    assert sorted(p.name for p in model.iterdir() if p.is_dir()) == ["1", "2"]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_config_inputs_and_outputs_are_the_graphs(
    tiny_export, tmp_path: Path, variant: str
) -> None:
    onnx = pytest.importorskip("onnx")
    model = write_triton_repository(tiny_export["guard"], tmp_path, variant=variant)
    cfg = parse_config((model / "config.pbtxt").read_text())
    graph = onnx.load(str(model / "1" / "model.onnx"), load_external_data=False).graph
    dtype = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32"}
    name_of = model_config_pb2().DataType.Name

    def shape(v) -> list[int]:  # Triton's dims leave out the batch axis
        return [d.dim_value or -1 for d in v.type.tensor_type.shape.dim][1:]

    for declared, actual in ((cfg.input, graph.input), (cfg.output, graph.output)):
        assert [(t.name, name_of(t.data_type), list(t.dims)) for t in declared] == [
            (v.name, dtype[v.type.tensor_type.elem_type], shape(v)) for v in actual
        ]


def test_a_copy_cut_short_leaves_the_served_model_and_config_whole(
    tiny_export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file is written beside its place and renamed over it, the config last: a
    copy that fails half-way (a full disk) leaves the model and config Triton serves as
    they were. Before, the new config was written first and model.onnx overwritten in
    place, so a polling Triton could load half a model under the new config."""
    import shutil

    repo = tmp_path / "repo"
    model = write_triton_repository(tiny_export["guard"], repo)
    before = {p: p.read_bytes() for p in (model / "1" / "model.onnx", model / "config.pbtxt")}

    def half(src: object, dst: object) -> None:
        Path(str(dst)).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", half)
    with pytest.raises(OSError, match="No space"):
        write_triton_repository(tiny_export["guard"], repo, max_batch_size=8)
    assert {p: p.read_bytes() for p in before} == before
    assert not [p for p in model.rglob(".*") if p.name.startswith(".")]  # no temp file left
