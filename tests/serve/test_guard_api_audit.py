"""Guard.load given something that is not a guard folder: the error names ``guard_dir``."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_dro.errors import ArtifactError
from guardrail_dro.serve.guard import Guard


@pytest.mark.parametrize("value", [None, 3, ""], ids=["none", "int", "empty-str"])
def test_load_names_guard_dir_when_it_is_not_a_path(value: object) -> None:
    # None gave "expected str, bytes or os.PathLike object, not NoneType"; "" loaded the
    # working directory and said it was not a guard.
    with pytest.raises(TypeError, match="guard_dir must be the path"):
        Guard.load(value)  # type: ignore[arg-type]


def test_load_of_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "guard.json"
    file.write_text("{}")
    with pytest.raises(ArtifactError, match="is a file: guard_dir must be"):
        Guard.load(file)  # it said "guard artifact directory not found", yet it exists
