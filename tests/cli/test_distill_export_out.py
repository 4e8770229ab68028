"""``export --distill K`` refuses an ``--out`` whose student folder (OUT-model) is the
teacher's, in the words the user typed.

Before: ``export --model runs/guard-model --out runs/guard --distill 2`` was refused with
"--out runs/guard-model is the teacher's own directory", a path no one had typed.
"""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("model", "out"),
    [("guard-model", "guard"), ("guard-model/inner", "guard")],
    ids=["is-the-teacher", "holds-the-teacher"],
)
def test_a_student_folder_on_the_teacher_names_the_out_typed(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, out: str
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / model)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(
        _app(), ["export", "--model", model, "--out", out, "--distill", "1"]
    )
    said = " ".join(result.output.replace("│", " ").split())  # the error box, unwrapped
    assert result.exit_code == 2, result.output
    assert re.search(rf"--out'?: {out}: ", said), said  # what was typed comes first
    assert f"--out {out}-model" not in said, said
    assert "OUT-model" in said and f"{out}-model" in said and "choose another --out" in said
    assert "distilling" not in said
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
