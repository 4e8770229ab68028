"""``guardrail-dro distill`` refuses a bad value in the words of the option given.

Before: "error: layer_choice: Input should be 'first' or 'spread'" named the config
field, which no user typed, and not the value that was wrong.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "guardrail_dro"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--layer-choice", "middle", "Input should be 'first' or 'spread', not 'middle'"),
        ("--loss", "mse", "Input should be 'kl', 'embed' or 'both', not 'mse'"),
        ("--lr", "0", "Input should be greater than 0, not 0.0"),
    ],
    ids=["layer-choice", "loss", "lr"],
)
def test_a_bad_value_names_its_option(
    tiny_model_dir: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    out = tmp_path / "student"
    args = ["distill", "--model", str(tiny_model_dir), "--out", str(out), option, value]
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    said = " ".join(r.stderr.replace("│", " ").split())  # the error box, unwrapped
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"Invalid value for {option}: {message}" in said, said
    assert not out.exists()
