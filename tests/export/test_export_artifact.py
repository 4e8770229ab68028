"""The guard artifact directory: verified at load, clear errors when it is not intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail_dro.errors import ArtifactError, ConfigError
from guardrail_dro.serve.artifact import GUARD_SCHEMA_VERSION, load_artifact, manifest_digest

pytest.importorskip("onnxruntime")


def _sealed(raw: dict) -> dict:
    return {**raw, "manifest_sha256": manifest_digest(raw)}


def edit(d: Path, change, *, reseal: bool = True) -> dict:
    """Apply ``change(raw)`` to guard.json; ``reseal`` recomputes its manifest_sha256, as
    a deliberate editor would, so that the checks behind the digest are reached."""
    path = d / "guard.json"
    raw = json.loads(path.read_text())
    change(raw)
    if reseal:
        raw["manifest_sha256"] = manifest_digest(raw)
    path.write_text(json.dumps(raw))
    return raw


def test_intact_artifact_loads(guard_copy: Path) -> None:
    art = load_artifact(guard_copy)
    assert art.variants == ("fp32", "int8", "fp16")
    assert art.best_variant("cpu") == "int8" and art.best_variant("cuda") == "fp16"
    # Per-class thresholds: one per toxic class when they helped on valid, else none.
    per_class = art.manifest.thresholds.per_class
    assert art.manifest.calibration is not None
    kept = art.manifest.calibration.per_class.startswith("kept")
    assert (
        (set(per_class) == set(art.schema.classes) - set(art.schema.safe))
        if kept
        else not per_class
    )
    assert set(art.manifest.safe_classes) == set(art.schema.safe)
    with pytest.raises(ConfigError, match="no 'bf16' model; it has: fp32, int8, fp16"):
        art.model_path("bf16")


def test_the_guard_has_the_model_card(guard_copy: Path) -> None:
    from huggingface_hub import ModelCard

    art = load_artifact(guard_copy)
    assert "README.md" in art.manifest.files  # listed, so the loader accepts it
    card = ModelCard.load(guard_copy / "README.md")
    assert card.data.library_name == "onnx"
    assert f"reaches **{art.manifest.thresholds.toxic}**" in card.text
    for name, variant in art.manifest.variants.items():
        assert f"| {name} | `{variant.file}` |" in card.text
    assert "accuracy" in {r.metric_type for r in card.data.eval_results}


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx", "tokenizer.json", "README.md"])
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
    edit(guard_copy, lambda raw: raw["files"].pop("model.onnx"))
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
            lambda d: (d / "guard.json").write_text(json.dumps(_sealed({"schema_version": 1}))),
            "not a valid guard manifest",
        ),
        (
            lambda d: (d / "guard.json").write_text(json.dumps({"schema_version": 1})),
            "no manifest_sha256",
        ),
    ],
    ids=["no-manifest", "bad-json", "not-object", "missing-fields", "no-digest"],
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
        "import sys, guardrail_dro, guardrail_dro.serve.artifact, guardrail_dro.serve.runtime\n"
        "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'onnx') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_package_is_light_and_public_surface() -> None:
    code = (
        "import sys, export, guardrail_dro.cli.export\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert all(hasattr(export, n) for n in export.__all__)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_edited_thresholds_are_refused(guard_copy: Path) -> None:
    def lower(raw: dict) -> None:
        raw["thresholds"]["toxic"] = 0.99

    edit(guard_copy, lower, reseal=False)
    with pytest.raises(ArtifactError, match="does not match its manifest_sha256"):
        load_artifact(guard_copy)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda raw: raw["files"].update({"../x": "0" * 64}), r"inside the directory.*\.\./x"),
        (lambda raw: raw["files"].update({"/etc/passwd": "0" * 64}), "inside the directory"),
        (
            lambda raw: raw["variants"]["int8"].update({"file": "../model.int8.onnx"}),
            "inside the directory",
        ),
        (
            lambda raw: raw["thresholds"]["per_class"].update({"safe": 0.1}),
            "keys must be non-safe classes",
        ),
        (
            lambda raw: raw["thresholds"]["per_class"].update({"violence": 1.5}),
            "less than or equal to 1",
        ),
        (
            lambda raw: raw["calibration"]["curve"].update(
                {"threshold": raw["calibration"]["curve"]["threshold"][::-1]}
            ),
            "descending order",
        ),
        (
            lambda raw: raw.update({"safe_classes": raw["label_schema"]["classes"]}),
            "at least one class that is not safe",
        ),
    ],
    ids=[
        "dotdot-file",
        "absolute-file",
        "dotdot-variant",
        "safe-key",
        "above-1",
        "unsorted-curve",
        "all-safe",
    ],
)
def test_invalid_resealed_manifest_is_refused(guard_copy: Path, change, match: str) -> None:
    edit(guard_copy, change)
    with pytest.raises(ArtifactError, match=match):
        load_artifact(guard_copy)


def test_unlisted_files_are_refused(guard_copy: Path) -> None:
    (guard_copy / "model.extra.onnx").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"not listed in guard.json: \['model.extra.onnx'\]"):
        load_artifact(guard_copy)
    (guard_copy / "model.extra.onnx").unlink()
    (guard_copy / "trt_cache").mkdir()
    (guard_copy / "trt_cache" / "engine.bin").write_bytes(b"x")  # the documented allow-list
    load_artifact(guard_copy)


def test_manifest_pin(guard_copy: Path) -> None:
    art = load_artifact(guard_copy)
    digest = art.manifest.manifest_sha256
    assert digest == manifest_digest(json.loads((guard_copy / "guard.json").read_text()))
    assert load_artifact(guard_copy, manifest_sha256=digest).manifest == art.manifest
    # a deliberate edit that recomputes the stored digest still fails the pin
    edit(guard_copy, lambda raw: raw["thresholds"].update({"toxic": 0.99}))
    load_artifact(guard_copy)
    with pytest.raises(ArtifactError, match=f"not the pinned {digest}"):
        load_artifact(guard_copy, manifest_sha256=digest)


def test_variant_without_parity_is_never_chosen_automatically(guard_copy: Path) -> None:
    def unchecked(raw: dict) -> None:
        raw["variants"]["fp16"]["parity"] = {}
        raw["variants"]["int8"]["parity"] = {}

    edit(guard_copy, unchecked)
    art = load_artifact(guard_copy)
    assert art.best_variant("cuda") == "fp32" and art.best_variant("cpu") == "fp32"
    assert art.model_path("fp16").name == "model.fp16.onnx"  # still there when named
