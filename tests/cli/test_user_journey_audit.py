"""A new user's journey on their own data, as the README tells it: what broke or misled.

Each command runs as a user runs it, a real subprocess; annotation goes to the shipped
fake OpenAI-compatible server over real HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from annotators.testing import FakeLLMServer, keyword_handler

CLI = [sys.executable, "-m", "guardrail_dro"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, env=env)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_an_export_target_it_cannot_reach_is_refused_before_distilling(
    tiny_backbone: Path, synthetic, tmp_path: Path
) -> None:
    # `export --distill 1 --target-recall 0.9` without --valid distilled a student (11 s
    # on MiniLM, minutes on real data), left OUT-model behind, then refused the target.
    for split in ("train", "valid"):
        synthetic[split].save_jsonl(tmp_path / f"{split}.jsonl")
    valid = str(tmp_path / "valid.jsonl")
    model = tmp_path / "model"  # trained by the CLI: its manifest names its data
    r = run("train", "--train", str(tmp_path / "train.jsonl"), "--valid", valid,
            "--method", "mv", "--backbone", str(tiny_backbone), "--epochs", "1",
            "--cache-dir", str(tmp_path / "c"), "--out", str(model))  # fmt: skip
    assert r.returncode == 0, r.stderr
    for extra in (["--target-recall", "0.9"],
                  ["--target-recall", "0.9", "--target-fpr", "0.1", "--valid", valid],
                  ["--target-fpr", "0", "--valid", valid]):  # fmt: skip
        out = tmp_path / "g"
        r = run("export", "--model", str(model), "--out", str(out), "--distill", "1", *extra)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "target" in r.stderr, r.stderr
        assert "student" not in r.stderr and not (tmp_path / "g-model").exists(), extra
        assert not out.exists()


def test_evaluate_says_where_it_wrote_the_metrics(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    # It wrote --out silently: train, agreement and annotate all say where files went.
    test = tmp_path / "test.jsonl"
    synthetic["test"].save_jsonl(test)
    out = tmp_path / "m" / "test-metrics.json"
    r = run("evaluate", "--model", str(tiny_model_dir), "--test", str(test), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.exists() and f"metrics written to {out}" in _flat(r.stdout)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY")
    }
    return {**env, **extra}


def test_unlabelled_texts_without_a_schema_name_the_schema_option(tmp_path: Path) -> None:
    # annotate is for unlabelled texts; the error named only --labels, not the --schema
    # file the README's "Use it on your data" asks for.
    data = tmp_path / "texts.csv"
    data.write_text("text\nhello there\nyou idiot\n")
    r = run("annotate", "--data", str(data), "--out", str(tmp_path / "o.jsonl"),
            "--annotator", "openai:gpt-4o-mini", "--dry-run", env=_env())  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--schema" in r.stderr and "--labels" in r.stderr


def test_a_pilot_says_what_to_run_next(tmp_path: Path) -> None:
    # After `--limit 2` OUT holds 2 items; nothing said that the same command without
    # --limit labels the rest (and the pilot output is not the whole dataset).
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "".join(f"text number {i}\n" for i in range(5)))
    out = tmp_path / "labelled.jsonl"
    with FakeLLMServer(keyword_handler) as srv:
        args = ["annotate", "--data", str(data), "--out", str(out), "--labels", "safe,toxic",
                "--safe", "safe", "--annotator", "openai:fake-a",
                "--base-url", srv.openai_base_url, "--no-progress"]  # fmt: skip
        r = run(*args, "--limit", "2", env=_env(OPENAI_API_KEY="k"))
        assert r.returncode == 0, r.stderr
        assert "without --limit" in _flat(r.stderr) and "other 3 items" in _flat(r.stderr)
        r = run(*args, env=_env(OPENAI_API_KEY="k"))  # the full run: no pilot hint
        assert r.returncode == 0, r.stderr
        assert "without --limit" not in r.stderr and srv.paid["text number 4"] == 1


def test_brackets_in_errors_and_help_are_printed_not_eaten_as_markup(tmp_path: Path) -> None:
    # Rich read "[[annotators]]" as a markup tag: the error said "list [] in the --config
    # file" and the help "(replaces the config's [])", on the step right after
    # --print-config, whose file the user is editing.
    data = tmp_path / "texts.csv"
    data.write_text("text\nhello there\nyou idiot\n")
    r = run("annotate", "--data", str(data), "--out", str(tmp_path / "o.jsonl"),
            "--labels", "safe,toxic", "--dry-run", env=_env())  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "list [[annotators]] in the --config" in _flat(r.stderr)
    r = run("annotate", "--help", env=_env(COLUMNS="200"))
    assert "replaces the config's [[annotators]]" in _flat(r.stdout)
