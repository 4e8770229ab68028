"""``--overwrite`` replaces an earlier guard folder and nothing else.

Before: ``export --out . --overwrite`` removed the working directory's files
(``shutil.rmtree(".")`` once the build finished), and a folder or file that was no guard
was deleted as readily as an earlier guard.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from export.outdir import check_out
from guardrail_dro.errors import ConfigError


def test_the_working_directory_and_its_parents_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    for out in (Path("."), Path(".."), work, Path("sub/..")):
        with pytest.raises(ConfigError, match="working directory or a folder above it"):
            check_out(out, overwrite=True)
    assert (work / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_only_a_guard(tmp_path: Path) -> None:
    folder, file, guard = tmp_path / "data", tmp_path / "model.onnx", tmp_path / "guard"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n")
    file.write_bytes(b"onnx")
    with pytest.raises(ConfigError, match="a folder without guard.json, not an earlier guard"):
        check_out(folder, overwrite=True)
    with pytest.raises(ConfigError, match="is a file, not an earlier guard"):
        check_out(file, overwrite=True)
    guard.mkdir()
    (guard / "guard.json").write_text("{}")
    check_out(guard, overwrite=True)  # an earlier guard: replaced
    check_out(tmp_path / "new", overwrite=True)  # new
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", overwrite=False)
    with pytest.raises(ConfigError, match="not empty: pass overwrite=True"):
        check_out(guard, overwrite=False)
