"""``export --distill K --out .`` is refused by name: OUT-model, the student's folder,
is made from OUT's folder name, and ``.`` has none.

Before: a ValueError traceback ("PosixPath('.') has an empty name") from building the
student's path.
"""

from __future__ import annotations

import shutil
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


def test_an_out_without_a_folder_name_is_refused_by_name(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "teacher")
    (tmp_path / "guard").mkdir()  # empty: --out's own check lets it through
    monkeypatch.chdir(tmp_path / "guard")
    result = CliRunner().invoke(
        _app(), ["export", "--model", str(tmp_path / "teacher"), "--out", ".", "--distill", "1"]
    )
    said = " ".join(result.output.replace("│", " ").split())  # the error box, unwrapped
    assert not isinstance(result.exception, ValueError), repr(result.exception)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "--out" in said and "folder name" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guard", "teacher"]
