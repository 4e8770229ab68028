"""The package surface: lazy public names, and a light import."""

import subprocess
import sys

import guardrail_dro


def test_every_public_name_resolves() -> None:
    for name in guardrail_dro.__all__:
        assert getattr(guardrail_dro, name) is not None, name


def test_import_is_light() -> None:
    code = (
        "import sys, guardrail_dro, guardrail_dro.data.readers, guardrail_dro.train.metrics; "
        "heavy = [m for m in ('torch', 'onnxruntime', 'openai', 'anthropic', 'transformers')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "guardrail_dro", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for cmd in ("train", "evaluate", "bench", "quickstart", "annotate", "export", "check"):
        assert cmd in out, cmd
