"""Options the chosen path does not read are named, not ignored in silence.

Before: ``annotate --batch --rpm 60`` ran with no limit (the provider schedules a batch
job) and ``--max-wait`` without ``--batch`` did nothing, with no word about either.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.annotators.test_ann_cli import CLI, _csv, _env


def _dry_run(tmp_path: Path, *options: str) -> str:
    data = _csv(tmp_path / "in.csv", ["hello there"])
    r = subprocess.run(
        [CLI, "annotate", "--data", str(data), "--labels", "safe,toxic", "--annotator",
         "openai:gpt-4o-mini", "--out", str(tmp_path / "o.jsonl"), "--dry-run", *options],
        env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return " ".join(r.stderr.split())


@pytest.mark.parametrize(("options", "says"), [
    (["--batch", "--rpm", "60"], "note: --rpm has no effect here: the provider schedules"),
    (["--batch", "--concurrency", "4"], "note: --concurrency has no effect here"),
    (["--batch", "--tpm", "1000"], "note: --tpm has no effect here"),
    (["--max-wait", "10"], "note: --max-wait has no effect here: it is for --batch runs"),
    (["--poll-interval", "5"], "note: --poll-interval has no effect here"),
])  # fmt: skip
def test_an_option_the_path_does_not_read_is_named(
    tmp_path: Path, options: list[str], says: str
) -> None:
    assert says in _dry_run(tmp_path, *options)


def test_options_the_path_reads_bring_no_note(tmp_path: Path) -> None:
    assert "no effect" not in _dry_run(
        tmp_path, "--batch", "--poll-interval", "5", "--max-wait", "10"
    )
    assert "no effect" not in _dry_run(tmp_path, "--rpm", "60", "--concurrency", "4")


def test_a_config_rpm_under_batch_is_named(tmp_path: Path) -> None:
    # [run] rpm in a labeling config was as silently ignored under --batch as --rpm was.
    cfg = tmp_path / "team.toml"
    cfg.write_text("[run]\nrpm = 60\n", encoding="utf-8")
    said = _dry_run(tmp_path, "--batch", "--config", str(cfg))
    assert "note: [run] rpm in the labeling config has no effect with --batch" in said
    assert "[run] rpm" not in _dry_run(tmp_path, "--config", str(cfg))
    assert "[run] rpm" not in _dry_run(tmp_path, "--batch", "--rpm", "5", "--config", str(cfg))
