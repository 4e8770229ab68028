"""Every file of a saved model folder gets the mode ``open()`` gives (0666 less the umask).

Before: ``model.safetensors`` and ``estimator.safetensors`` were 0600 (safetensors'
``save_file`` writes them so) beside 0644 files in a 0755 folder: a model trained by one
user could not be loaded by another, the service account exporting or serving it included.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from guardrail_dro.train.modeldir import TrainedModel


def test_every_file_of_a_saved_model_is_readable_by_others(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    old = os.umask(0o022)
    try:
        TrainedModel.load(tiny_model_dir).save(tmp_path / "m")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").iterdir()}
    assert "model.safetensors" in modes
    assert {name: mode for name, mode in modes.items() if mode != 0o644} == {}
