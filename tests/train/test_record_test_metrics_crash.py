"""``evaluate --record`` cut off between its writes leaves a model that still loads.

``record_test_metrics`` replaced ``README.md`` (the model card) and then
``manifest.json``, which pins the card's sha256. Each write is whole or not at all, but a
crash or a full disk between the two left the new card beside the old manifest's sha256,
and ``TrainedModel.load`` refused the model: "README.md does not match its sha256".

Here the k-th file write fails (``OSError``, no space left), for every k the call makes;
the writes are atomic, so a process killed there leaves the same files. After each, the
model loads with every listed file verified, and recording again completes it.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from guardrail_dro.train import modeldir
from guardrail_dro.train.modeldir import TrainedModel

pytest.importorskip("torch")

CUT_AT = [1, 2, 3]
"""The writes of one ``record_test_metrics``, 1-based: each case cuts it off at one."""


def _writes(monkeypatch: pytest.MonkeyPatch, fail_at: int | None) -> list[str]:
    """The names ``record_test_metrics`` writes, in order; the ``fail_at``-th (1-based)
    fails as a full disk would, before anything of it reaches the file."""
    real, names = modeldir.replace_text, []

    def write(path, text: str) -> None:
        names.append(Path(path).name)
        if len(names) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(modeldir, "replace_text", write)
    return names


def test_every_write_record_test_metrics_makes_is_counted(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    met = TrainedModel.load(d).manifest.valid_metrics
    names = _writes(monkeypatch, None)
    TrainedModel.record_test_metrics(d, met)
    assert "README.md" in names and names[-1] == "manifest.json", names
    assert len(names) == len(CUT_AT), names  # every write has its case below
    assert TrainedModel.load(d).manifest.files["README.md"]


@pytest.mark.parametrize("k", CUT_AT, ids=lambda k: f"write {k} fails")
def test_a_record_cut_off_at_any_write_leaves_a_model_that_loads(
    k: int, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    before = TrainedModel.load(d).manifest
    met = before.valid_metrics.model_copy(update={"n": 7})
    names = _writes(monkeypatch, k)
    with pytest.raises(OSError, match="No space left"):
        TrainedModel.record_test_metrics(d, met, data_name="t.jsonl", data_hash="abc")
    assert len(names) == k
    monkeypatch.undo()

    after = TrainedModel.load(d)  # verify=True: every file the manifest lists matches
    listed = set(after.manifest.files)
    assert listed | {"README.md"} == set(before.files), listed  # nothing else dropped
    assert after.manifest.test_metrics in (None, met)

    TrainedModel.record_test_metrics(d, met, data_name="t.jsonl", data_hash="abc")
    done = TrainedModel.load(d).manifest
    assert done.test_metrics == met and done.data_sizes["test"] == 7
    assert set(done.files) == set(before.files)  # the card pinned again
    assert "| test | acc |" in (d / "README.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []
