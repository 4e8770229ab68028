"""What export writes next to the guard artifact, and what it leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest


def _export_app():
    import typer

    from guardrail_dro.cli.export import register

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by name
    register(app)
    return app


@pytest.mark.parametrize("where", ["inside", "around"])
def test_a_triton_repository_overlapping_the_guard_is_refused_before_export(
    tiny_model_dir: Path, tmp_path: Path, where: str
) -> None:
    # `export --out g --triton g/triton` exported for minutes, then wrote the Triton
    # files into the new guard, which refused to load ("files not listed in guard.json")
    # and the command exited 2, leaving that broken guard at --out.
    from typer.testing import CliRunner

    from guardrail_dro.errors import ConfigError

    out = tmp_path / "g" if where == "inside" else tmp_path / "repo" / "g"
    repo = out / "triton" if where == "inside" else tmp_path / "repo"
    args = ["export", "--model", str(tiny_model_dir), "--out", str(out), "--no-int8"]
    result = CliRunner().invoke(_export_app(), [*args, "--triton", str(repo)])
    assert isinstance(result.exception, ConfigError), result.output
    assert "overlap" in str(result.exception)
    assert not out.exists() and not list(tmp_path.rglob("*.onnx"))


def test_write_triton_repository_into_the_guard_leaves_it_loadable(guard_copy: Path) -> None:
    pytest.importorskip("tritonclient", reason="Triton's protobuf definitions (tritonclient)")
    from export.triton import write_triton_repository
    from guardrail_dro.errors import ConfigError
    from guardrail_dro.serve.artifact import load_artifact

    with pytest.raises(ConfigError, match="overlap"):
        write_triton_repository(guard_copy, guard_copy / "triton")
    assert not (guard_copy / "triton").exists()
    load_artifact(guard_copy)


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_guard_directory_gets_the_mode_mkdir_gives(tiny_export) -> None:
    # The guard was built in a tempfile.mkdtemp folder (0700) renamed into place: a guard
    # exported by one user was "not readable" to the service account serving it
    # (`check --guard`: "dir ... is not readable"; Guard.load: PermissionError).
    guard: Path = tiny_export["guard"]
    assert guard.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert not list(guard.parent.glob(".guard.tmp-*"))


@pytest.mark.parametrize("found", ["a file", "an empty folder"])
def test_an_out_filled_during_the_export_is_kept_without_overwrite(
    tiny_model_dir: Path, tmp_path: Path, found: str
) -> None:
    # Two exports racing to one --out both passed the "empty or new" check; the one that
    # finished last deleted the other's finished guard (rmtree, no --overwrite) and put
    # its own in its place without a word.
    from export.onnx import export_onnx
    from guardrail_dro.errors import ConfigError
    from guardrail_dro.serve.artifact import load_artifact

    out = tmp_path / "g"

    def meanwhile(msg: str) -> None:
        if msg.startswith("checking parity"):  # the other export finishes first
            out.mkdir()
            if found == "a file":
                (out / "guard.json").write_text("theirs")

    if found == "a file":
        with pytest.raises(ConfigError, match="written while this export ran"):
            export_onnx(tiny_model_dir, out, int8=False, progress=meanwhile)
        assert (out / "guard.json").read_text() == "theirs"
    else:  # an empty folder is free to take, as at the start
        export_onnx(tiny_model_dir, out, int8=False, progress=meanwhile)
        load_artifact(out)
    assert [p.name for p in tmp_path.iterdir()] == ["g"]  # no temporary folder left


def test_a_guard_from_a_newer_format_says_to_upgrade(guard_copy: Path) -> None:
    # A guard.json of a newer schema version said "re-export the model with this
    # version": the fix for a newer artifact is a newer guardrail-dro.
    import json

    from guardrail_dro.errors import ArtifactError
    from guardrail_dro.serve.artifact import load_artifact, manifest_digest

    path = guard_copy / "guard.json"
    raw = json.loads(path.read_text())
    for version, fix in ((2, "newer guardrail-dro: upgrade"), (0, "re-export")):
        raw["schema_version"] = version
        raw["manifest_sha256"] = manifest_digest(raw)
        path.write_text(json.dumps(raw))
        with pytest.raises(ArtifactError, match=f"guard.json.*version {version}.*{fix}"):
            load_artifact(guard_copy)
