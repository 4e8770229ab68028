"""The command line as a user runs it: real subprocesses, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail_dro.data.synthetic import make_synthetic

CLI = [sys.executable, "-m", "guardrail_dro"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    for split, ds in make_synthetic(n_train=300, n_valid=120, n_test=120).items():
        ds.save_jsonl(d / f"{split}.jsonl")
    return d


def test_help_teaches() -> None:
    r = run("train", "--help")
    assert r.returncode == 0
    assert "--method" in r.stdout and "--text-col" in r.stdout and "worst" in r.stdout.lower()


def test_train_help_names_every_method_of_the_table() -> None:
    # The help is static text (the table's module imports torch); this keeps it true.
    from guardrail_dro.train.methods import METHODS

    out = " ".join(run("train", "--help").stdout.split())
    for name in METHODS:
        assert name in out, name


def test_train_then_evaluate(data_dir: Path, tiny_backbone: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    r = run(
        "train",
        "--train",
        str(data_dir / "train.jsonl"),
        "--valid",
        str(data_dir / "valid.jsonl"),
        "--out",
        str(out),
        "--backbone",
        str(tiny_backbone),
        "--epochs",
        "2",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "ours" and manifest["group_weights"]
    r = run(
        "evaluate",
        "--model",
        str(out),
        "--test",
        str(data_dir / "test.jsonl"),
        "--out",
        str(tmp_path / "m.json"),
    )
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n"] == 120 and m["worst_group_accuracy"] is not None
    assert manifest["data_names"]["train"] == str(data_dir / "train.jsonl")
    assert "test" not in manifest["data_hashes"]
    r = run("evaluate", "--model", str(out), "--test", str(data_dir / "test.jsonl"), "--record")
    assert r.returncode == 0, r.stderr
    assert "recorded" in r.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["test_metrics"] == m and "test" in manifest["data_hashes"]
    assert "| test | acc |" in (out / "README.md").read_text()
    from guardrail_dro.train.modeldir import TrainedModel

    TrainedModel.load(out)  # still verifies: the card's new sha256 is in the manifest
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.data.readers import read_dataset

    test = read_dataset(data_dir / "test.jsonl")
    items = [it.model_copy(update={"group": None}) for it in test.items]
    AnnotatedDataset(items, test.schema, name="test").save_jsonl(tmp_path / "nogroups.jsonl")
    r = run("evaluate", "--model", str(out), "--test", str(tmp_path / "nogroups.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "the test split has no groups" in " ".join(r.stdout.split())
    r = run("evaluate", "--model", str(out), "--test", str(data_dir / "test.jsonl"),
            "--precision", "bogus")  # accepted and ignored before
    assert r.returncode == 2 and "--precision takes a --guard" in " ".join(r.stderr.split())


def test_train_averages_seeds_and_refuses_it_in_full_mode(
    data_dir: Path, tiny_backbone: Path, tmp_path: Path
) -> None:
    common = [
        "train", "--train", str(data_dir / "train.jsonl"), "--valid",
        str(data_dir / "valid.jsonl"), "--backbone", str(tiny_backbone), "--epochs", "2",
        "--cache-dir", str(tmp_path / "c"), "--average-seeds", "2",
    ]  # fmt: skip
    r = run(*common, "--out", str(tmp_path / "model"))
    assert r.returncode == 0, r.stderr
    assert "seeds" in r.stdout  # the valid row names them (wrapped in a narrow terminal)
    assert "averaged the heads of 2 seeds (0, 1)" in " ".join(r.stderr.split())
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert [s["seed"] for s in manifest["averaged_seeds"]] == [0, 1]
    r = run(*common, "--mode", "full", "--out", str(tmp_path / "full"))
    assert r.returncode != 0 and "frozen encoder" in " ".join(r.stderr.split())
    assert not (tmp_path / "full").exists()


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        (
            {"train.csv": "question,label_1\nq,0\n", "valid.csv": "question,label_1\nq,0\n"},
            ["--labels", "0,1"],
            "no gold label",
        ),
        (
            {
                "train.csv": "question,label_1\nq,0\n",
                "valid.csv": "question,label_1,label\nq,0,1\n",
            },
            ["--labels", "0,1", "--text-col", "prompt"],
            "text column 'prompt' not found",
        ),
        (
            {
                "train.csv": "question,label_1\nq,7\n",
                "valid.csv": "question,label_1,label\nq,0,1\n",
            },
            ["--labels", "0,1"],
            "label '7' is not in the label schema",
        ),
        ({"train.csv": "", "valid.csv": "question,label_1,label\nq,0,1\n"}, [], "empty"),
        (
            {
                "train.csv": "question,rater_1,rater_2\nq,0,1\n",
                "valid.csv": "question,label_1,label\nr,0,1\n",
            },
            ["--labels", "0,1"],
            "train.csv: no annotator labels to learn from: no column was read as an "
            "annotator's (its columns are ['question', 'rater_1', 'rater_2']); annotator "
            "columns are found by name (label_*, annotator_*, annotation_*): name yours "
            "with --annotator-cols",
        ),
    ],
    ids=[
        "gold-missing-on-valid",
        "missing-column",
        "label-out-of-schema",
        "empty-file",
        "no-annotator-column",
    ],
)
def test_bad_input_exits_non_zero_naming_the_problem(
    tmp_path: Path, files: dict, extra: list, message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    r = run(
        "train",
        "--train",
        str(tmp_path / "train.csv"),
        "--valid",
        str(tmp_path / "valid.csv"),
        "--out",
        str(tmp_path / "m"),
        *extra,
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    # rich wraps long lines, a long file name even mid-word
    assert "".join(message.split()) in "".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr


def test_bundled_splits_by_name(tiny_backbone: Path, tmp_path: Path) -> None:
    # The shipped dataset, no file and no --schema: the schema (safe class 14) comes with it.
    out = tmp_path / "model"
    r = run(
        "train",
        "--train",
        "toxic-questions:test",
        "--valid",
        "toxic-questions:valid",
        "--out",
        str(out),
        "--method",
        "mv",
        "--backbone",
        str(tiny_backbone),
        "--epochs",
        "1",
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "schema.json").read_text())["safe"] == ["14"]
    r = run("evaluate", "--model", str(out), "--test", "toxic-questions:valid", "--out",
            str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n"] == 1000 and m["toxic_recall"] is not None


def test_an_unknown_bundled_name_lists_the_known_ones(tmp_path: Path) -> None:
    r = run("train", "--train", "toxic:train", "--valid", "toxic-questions:nope", "--out",
            str(tmp_path / "m"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    stderr = " ".join(r.stderr.split())  # rich wraps long lines
    assert "toxic:train: no such file" in stderr and "Traceback" not in stderr
    assert "(known: toxic-questions;" in stderr


def test_background_safe_on_a_bad_file_fails_before_any_training(tmp_path: Path) -> None:
    (tmp_path / "bg.csv").write_text("a,b\nhello,there\n")
    for source, message in (
        (str(tmp_path / "nope.txt"), "no such file, and not a bundled background set"),
        (str(tmp_path / "bg.csv"), "needs a 'text' column"),
    ):
        r = run(
            "train", "--train", "toxic-questions:train", "--valid", "toxic-questions:valid",
            "--out", str(tmp_path / "m"), "--background-safe", source,
        )
        assert r.returncode == 2, (r.stdout, r.stderr)
        stderr = " ".join(r.stderr.split())
        assert message in stderr and "Traceback" not in stderr
        assert not (tmp_path / "m").exists()


def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    r = run("train", "--train", "toxic-questions:train", "--valid", "toxic-questions:valid",
            "--out", str(used))  # fmt: skip
    assert r.returncode == 2 and "not a model directory" in " ".join(r.stderr.split())
    assert "epoch" not in r.stderr and (used / "notes.txt").read_text() == "mine"
    for command in (["evaluate", "--model", str(used), "--test", "toxic-questions:test"],
                    ["escalation", "--guard", str(used), "--valid", "toxic-questions:valid",
                     "--judge", "label_5"],
                    ["annotate", "--data", "toxic-questions:valid", "--annotator", "openai:x"]):
        r = run(*command, "--out", str(tmp_path))  # a folder, where a file is written
        said = " ".join(r.stderr.replace("│", " ").split())
        assert r.returncode == 2 and "is a directory" in said, r.stderr


def test_train_help_teaches_background_safe() -> None:
    r = run("train", "--help")
    text = " ".join(r.stdout.split())
    assert "--background-safe" in text and "convabuse-background" in text


def test_annotator_signals_are_options_and_a_bad_value_is_named(tmp_path: Path) -> None:
    from guardrail_dro.cli.training_options import TrainingOptions

    cfg = TrainingOptions(confidence="off", rationale="on").config(method="ours")
    assert (cfg.use_confidence, cfg.use_rationale) == ("off", "on")
    assert TrainingOptions().config(method="ours").use_rationale == "auto"
    r = run(
        "train", "--train", "toxic-questions:train", "--valid", "toxic-questions:valid",
        "--out", str(tmp_path / "m"), "--rationale", "loud",
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    stderr = " ".join(r.stderr.split())
    assert "--rationale" in stderr and "'loud' is not one of 'auto'," in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "m").exists()


def test_encoder_lr_reaches_the_config_and_a_non_positive_one_is_refused(tmp_path: Path) -> None:
    """--encoder-lr sets full mode's encoder group; unset keeps TrainConfig's default
    (one place for it), and 0 is named as the bad value before any data is read."""
    from guardrail_dro.cli.training_options import TrainingOptions
    from guardrail_dro.train.config import TrainConfig

    cfg = TrainingOptions(mode="full", encoder_lr=1e-4).config(method="ours")
    assert cfg.encoder_lr == 1e-4
    unset = TrainingOptions(mode="full").config(method="ours").encoder_lr
    assert unset == TrainConfig.model_fields["encoder_lr"].default
    r = run(
        "train", "--train", "toxic-questions:train", "--valid", "toxic-questions:valid",
        "--out", str(tmp_path / "m"), "--mode", "full", "--encoder-lr", "0",
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    stderr = " ".join(r.stderr.split())
    assert "encoder_lr: Input should be greater than 0" in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "m").exists()
    assert "--encoder-lr" in " ".join(run("bench", "--help").stdout.split())


def test_bench_checks_its_methods_and_out_before_any_training(
    data_dir: Path, tmp_path: Path
) -> None:
    """``--methods "mv, single:nobody"`` trained mv, then failed on ' single:nobody' (the
    space kept, the annotator never checked); an --out that is a file failed with
    NotADirectoryError once the first run had trained. Both are one line, up front."""
    splits = [f"--{s}={data_dir / f'{s}.jsonl'}" for s in ("train", "valid", "test")]
    cache = f"--cache-dir={tmp_path / 'c'}"
    r = run("bench", *splits, cache, "--out", str(tmp_path / "b"), "--methods", "mv, single:nobody")
    said = " ".join(r.stderr.split())
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "error: single:nobody: no annotator 'nobody' in" in said, said
    assert "Traceback" not in said and not (tmp_path / "b").exists()
    assert not (tmp_path / "c").exists()  # nothing embedded, nothing trained
    afile = tmp_path / "afile"
    afile.write_text("mine")
    r = run("bench", *splits, cache, "--out", str(afile), "--methods", "mv")
    said = " ".join(r.stderr.split())
    assert r.returncode == 2, (r.stdout, r.stderr)
    want = f"error: {afile}: the bench's output must be a folder"
    assert "".join(want.split()) in "".join(said.split()), said  # a long path wraps mid-word
    assert "Traceback" not in said and afile.read_text() == "mine"
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--seed", "-1"], "error: seed: Input should be greater than or equal to 0"),
        (["--device", "bogus"], "error: 'bogus' is not a device (--device): use cpu, cuda,"),
        (["--device", "cuda:99"], "error: device 'cuda:99' (--device) is not available:"),
    ],
    ids=["negative-seed", "unknown-device", "absent-device"],
)
def test_a_bad_seed_or_device_is_one_line_before_any_work(
    tmp_path: Path, option: list[str], message: str
) -> None:
    """These were tracebacks from numpy and torch, the device ones after the backbone
    had loaded (a ValueError, a RuntimeError, an AssertionError)."""
    r = run("train", "--train", "toxic-questions:train", "--valid", "toxic-questions:valid",
            "--out", str(tmp_path / "m"), *option)  # fmt: skip
    said = " ".join(r.stderr.split())
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in said and "Traceback" not in said, said
    assert not (tmp_path / "m").exists()
