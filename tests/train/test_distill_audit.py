"""``guardrail-dro distill`` given odd inputs (``distill_model_dir``, what the command
runs): refusals that come before any distilling and name the option, and output that
says what was distilled on."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from rich.console import Console

from guardrail_dro.cli.distill import distill_model_dir
from guardrail_dro.errors import ConfigError
from guardrail_dro.train.distill import DistillConfig


def _cfg(tmp_path: Path, **kw) -> DistillConfig:
    base = {"layers": 1, "epochs": 1, "augment": 0, "progress": False}
    return DistillConfig(**{**base, "cache_dir": tmp_path / "cache", **kw})


@pytest.fixture()
def data(synthetic, tmp_path: Path) -> dict[str, Path]:
    out = {}
    for split in ("train", "valid"):
        out[split] = tmp_path / f"{split}.jsonl"
        synthetic[split].save_jsonl(out[split])
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_out_inside_the_teacher_is_refused(tiny_model_dir: Path, data, tmp_path: Path) -> None:
    # It used to distil and save into the teacher's folder, where the next save of the
    # teacher (a model directory is replaced whole) deletes the student.
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, teacher)
    before = _files(teacher)
    with pytest.raises(ConfigError, match="--out .* is inside the teacher's directory"):
        distill_model_dir(teacher, teacher / "student", _cfg(tmp_path), **data)
    assert not (teacher / "student").exists() and _files(teacher) == before


def test_out_holding_the_teacher_is_refused(tiny_model_dir: Path, data, tmp_path: Path) -> None:
    # A model directory with the teacher nested inside it: saving the student over it
    # used to delete the teacher along with the folder it replaced.
    outer = tmp_path / "outer"
    shutil.copytree(tiny_model_dir, outer)
    teacher = outer / "teacher"
    shutil.copytree(tiny_model_dir, teacher)
    with pytest.raises(ConfigError, match="--out .* holds the teacher"):
        distill_model_dir(teacher, outer, _cfg(tmp_path), **data)
    assert (teacher / "manifest.json").is_file()


def test_layers_above_the_teachers_are_refused_before_the_data_is_read(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # It used to read the data first (here: fail on the missing file instead), and then
    # say "the student needs 1..2 layers" without naming --layers.
    with pytest.raises(ConfigError, match=r"--layers 3: the teacher has 2 .*1\.\.2"):
        distill_model_dir(
            tiny_model_dir, tmp_path / "s", _cfg(tmp_path, layers=3),
            train=tmp_path / "missing.csv", valid=tmp_path / "missing.csv",
        )  # fmt: skip


def test_data_the_manifest_names_but_cannot_be_found_names_the_option(
    tiny_model_dir: Path, tmp_path: Path, data
) -> None:
    # train records --train as typed (relative to where it ran); from elsewhere distill
    # used to fail with "train.csv: file not found", a path the user never typed.
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, teacher)
    man = json.loads((teacher / "manifest.json").read_text())
    man["data_names"] = {"train": "data/train.csv", "valid": "data/valid.csv"}
    (teacher / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError, match="manifest names its train data data/train.csv.*--train"):
        distill_model_dir(teacher, tmp_path / "s", _cfg(tmp_path))
    with pytest.raises(ConfigError, match="manifest names its valid data data/valid.csv.*--valid"):
        distill_model_dir(teacher, tmp_path / "s", _cfg(tmp_path), train=data["train"])
    assert not (tmp_path / "s").exists()


def test_held_out_texts_of_a_texts_file_are_said(
    tiny_model_dir: Path, data, tmp_path: Path
) -> None:
    """1 in 5 texts of a --texts file is held out (as train holds out background text):
    a 2-line file could add nothing, and the run said only "(0)"."""
    from guardrail_dro.data.background import split_by_hash

    lines = [f"an unlabelled chat message number {i}" for i in range(12)]
    kept, held = split_by_hash(lines)
    assert held and kept  # the split this test is about
    texts = tmp_path / "chats.txt"
    texts.write_text("\n".join(lines) + "\n")
    buf = io.StringIO()
    out = distill_model_dir(
        tiny_model_dir, tmp_path / "s", _cfg(tmp_path), texts=[str(texts)],
        console=Console(file=buf, width=400), **data,
    )  # fmt: skip
    said = buf.getvalue()
    assert f"({len(kept)})" in said
    assert f"note: {texts}: {len(held)} of its {len(lines)} texts are held out" in said
    man = json.loads((out / "manifest.json").read_text())
    assert man["distilled_from"]["texts"][str(texts)] == len(kept)
    # The summary prints metrics as the epoch lines do (it printed 0.4583333333333333).
    assert re.search(r"valid worst-group acc \d\.\d{3} \(teacher \d\.\d{3}\)$", said.strip())
