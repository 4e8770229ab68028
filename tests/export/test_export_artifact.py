"""The guard artifact directory: verified at load, clear errors when it is not intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail_dro.artifact import GUARD_SCHEMA_VERSION, load_artifact
from guardrail_dro.errors import ArtifactError, ConfigError

pytest.importorskip("onnxruntime")


def test_intact_artifact_loads(guard_copy: Path) -> None:
    art = load_artifact(guard_copy)
    assert art.variants == ("fp32", "int8", "fp16")
    assert art.best_variant("cpu") == "int8" and art.best_variant("cuda") == "fp16"
    assert art.manifest.thresholds.per_class  # a default threshold per toxic class
    assert set(art.manifest.safe_classes) == set(art.schema.safe)
    with pytest.raises(ConfigError, match="no 'bf16' model; it has: fp32, int8, fp16"):
        art.model_path("bf16")


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx", "tokenizer.json"])
def test_changed_byte_is_refused(guard_copy: Path, name: str) -> None:
    path = guard_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{name} does not match its sha256"):
        load_artifact(guard_copy)
    load_artifact(guard_copy, verify=False)  # opt-out stays possible


def test_missing_file_is_named(guard_copy: Path) -> None:
    (guard_copy / "model.int8.onnx").unlink()
    with pytest.raises(ArtifactError, match="missing file model.int8.onnx"):
        load_artifact(guard_copy)


def test_file_without_checksum_is_refused(guard_copy: Path) -> None:
    path = guard_copy / "guard.json"
    raw = json.loads(path.read_text())
    del raw["files"]["model.onnx"]
    path.write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="model.onnx is used but has no sha256"):
        load_artifact(guard_copy)


@pytest.mark.parametrize("version", [GUARD_SCHEMA_VERSION + 1, 0, None])
def test_wrong_schema_version_is_refused(guard_copy: Path, version) -> None:
    path = guard_copy / "guard.json"
    raw = json.loads(path.read_text())
    raw["schema_version"] = version
    path.write_text(json.dumps(raw))
    with pytest.raises(
        ArtifactError,
        match=f"schema version {version!r}; this guardrail-dro "
        f"reads version {GUARD_SCHEMA_VERSION}",
    ):
        load_artifact(guard_copy)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda d: (d / "guard.json").unlink(), "not a guard artifact directory: no guard.json"),
        (lambda d: (d / "guard.json").write_text("{oops"), "guard.json: not valid JSON"),
        (lambda d: (d / "guard.json").write_text("[]"), "expected a JSON object"),
        (
            lambda d: (d / "guard.json").write_text(json.dumps({"schema_version": 1})),
            "not a valid guard manifest",
        ),
    ],
    ids=["no-manifest", "bad-json", "not-object", "missing-fields"],
)
def test_broken_manifest_is_explained(guard_copy: Path, setup, match: str) -> None:
    setup(guard_copy)
    with pytest.raises(ArtifactError, match=match):
        load_artifact(guard_copy)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="directory not found"):
        load_artifact(tmp_path / "nope")


def test_serving_modules_stay_light() -> None:
    code = (
        "import sys, guardrail_dro, guardrail_dro.artifact, guardrail_dro.runtime\n"
        "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'onnx') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_package_is_light_and_public_surface() -> None:
    code = (
        "import sys, export, export.cli\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert all(hasattr(export, n) for n in export.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
