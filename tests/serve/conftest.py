"""Guard fixtures: the tiny model exported once per session (fp32 + int8), a Guard on it;
and a Guard on the shipped fake scorer, for tests that need decisions, not a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def guard_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from export.onnx import export_onnx

    return export_onnx(tiny_model_dir, tmp_path_factory.mktemp("guard") / "guard", int8=True)


@pytest.fixture(scope="session")
def guard(guard_dir: Path):
    from guardrail_dro.serve.guard import Guard

    return Guard.load(guard_dir, provider="cpu")


@pytest.fixture()
def guard_copy(guard_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the guard directory, free to tamper with."""
    return Path(shutil.copytree(guard_dir, tmp_path / "guard"))


@pytest.fixture(scope="session")
def fake_guard():
    """A guard on the fake scorer: "knife" in a window scores 0.9 violence, else safe."""
    from guardrail_dro.serve.guard import Guard

    from .guard_helpers import keyword_scorer

    return Guard.from_scorer(keyword_scorer())
