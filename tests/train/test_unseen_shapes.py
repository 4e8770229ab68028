"""Dataset shapes unlike the two the method was tuned on, and what the user is told.

An audit benched ``ours`` / mv / soft / ds / best-single (frozen MiniLM) on small
datasets of unusual shapes: one annotator, an adversarial pair, 30 sparse workers, a
class no annotator uses, valid or test without groups, a 3-item group, 97 % safe,
partial LLM confidences, labels like ``menace ☠``, a 40-item valid. Nothing crashed;
these are the messages that misled there, each checked here on the tiny encoder.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.readers import read_splits
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.train.bench import bench_methods, run_bench
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig


def _small(synthetic) -> dict[str, AnnotatedDataset]:
    """60 train and valid items; 200 test items, so that no test group is tiny."""
    n = {"train": 60, "valid": 60, "test": 200}
    return {k: v.subset(range(n[k]), name=k) for k, v in synthetic.items()}


def _regroup(ds: AnnotatedDataset, group) -> AnnotatedDataset:
    """``ds`` with each item's group replaced by ``group(index, item)``."""
    items = [it.model_copy(update={"group": group(i, it)}) for i, it in enumerate(ds.items)]
    return AnnotatedDataset(items, ds.schema, name=ds.name)


def _cfg(backbone: Path, tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(
        backbone=str(backbone), cache_dir=tmp_path / "cache", epochs=1, progress=False, **kw
    )


def test_best_single_names_the_score_it_chose_by(synthetic, tiny_backbone, tmp_path) -> None:
    """Valid without groups is ranked by accuracy (select_key), but the note said
    "by valid worst-group accuracy"; and equal scores shown side by side (0.820 thrice
    in the audit) read as a coin toss where accuracy broke the tie."""
    data = _small(synthetic)
    ungrouped = _regroup(data["valid"], lambda i, it: None)
    cfg = _cfg(tiny_backbone, tmp_path, method="best-single")
    res = BiLevelTrainer(cfg).fit(data["train"], ungrouped)
    (note,) = [n for n in res.notes if n.startswith("best-single chose")]
    assert "by valid accuracy (valid has no groups)" in note, note
    assert "worst-group" not in note
    res = BiLevelTrainer(cfg).fit(data["train"], data["valid"])
    (note,) = [n for n in res.notes if n.startswith("best-single chose")]
    assert "by valid worst-group accuracy (ties: accuracy)" in note, note


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_an_inferred_schema_suggests_labels_a_shell_can_take(tmp_path: Path) -> None:
    """Classes with a space or a symbol ("not toxic", "menace ☠") were suggested
    unquoted (``--labels menace ☠,not toxic``): pasted, the shell split them into
    three arguments. The suggestion must parse back to the same classes."""
    train = _write(
        tmp_path / "train.csv",
        "text,label_1,label_2\na,not toxic,menace ☠\nb,menace ☠,menace ☠\n",
    )
    valid = _write(tmp_path / "valid.csv", "text,label_1,gold\nc,not toxic,not toxic\n")
    splits, schema = read_splits({"train": train, "valid": valid})
    (note,) = [n for n in splits["train"].notes if "inferred" in n]
    assert "--labels 'menace ☠,not toxic' --safe CLASS" in note, note
    argv = shlex.split(note.split("declare ", 1)[1].split(" --safe", 1)[0])
    assert argv[0] == "--labels"
    assert LabelSchema.parse_list(argv[1]).classes == schema.classes


def test_a_class_with_a_comma_is_not_suggested_for_labels(tmp_path: Path) -> None:
    """--labels splits on commas, so it cannot declare "hate, harassment": point at
    --schema instead of a command that would declare other classes."""
    train = _write(tmp_path / "train.csv", 'text,label_1\na,"hate, harassment"\nb,ok\n')
    splits, schema = read_splits({"train": train})
    assert schema.classes == ("hate, harassment", "ok")
    (note,) = [n for n in splits["train"].notes if "inferred" in n]
    assert note.endswith(
        "(declare --schema, for a guard's safe/toxic decision; not --labels, which splits "
        "class names at commas)"
    ), note


def test_the_bench_says_what_test_groups_cannot_measure(synthetic) -> None:
    """A test split without groups showed n/a worst-group columns and silently no
    paired comparison; a one-item test group decides worst-group accuracy alone. The
    valid split had such notes, the bench's test split none."""
    data = _small(synthetic)
    train, valid, test = data["train"], data["valid"], data["test"]
    assert bench_methods(["mv"], train, valid, test) == (["mv"], [])
    _, notes = bench_methods(["mv"], train, valid, _regroup(test, lambda i, it: None))
    assert notes == [
        "the test split has no groups (--group-col): no group or worst-group accuracy, "
        "and no paired comparison of the methods (it resamples test within groups)"
    ]
    lonely = _regroup(test, lambda i, it: "lonely" if i == 0 else it.group)
    _, notes = bench_methods(["mv"], train, valid, lonely)
    assert len(notes) == 1 and notes[0].startswith(
        "test group(s) with fewer than 10 items: 'lonely' (1): "
    ), notes


def test_run_bench_says_so_when_neither_valid_nor_test_has_groups(
    synthetic, tiny_backbone, tmp_path
) -> None:
    """The bench's own best-single choice (derived from its single:<a> runs) and its
    notes, through ``run_bench``: as the audit's ungrouped splits ran."""
    data = _small(synthetic)
    report = run_bench(
        data["train"],
        _regroup(data["valid"], lambda i, it: None),
        _regroup(data["test"], lambda i, it: None),
        methods=["best-single"],
        seeds=1,
        config=_cfg(tiny_backbone, tmp_path),
        score_annotators=False,
    )
    assert report.paired == {}
    lines = report.note_lines()
    assert any(n.startswith("bench: the test split has no groups") for n in lines), lines
    (chose,) = [n for n in lines if "best-single chose" in n]
    assert "by valid accuracy (valid has no groups)" in chose, chose


def test_a_method_note_naming_its_method_is_not_prefixed_twice() -> None:
    """The trainer's "ours: 3 of 3 train items ..." read "ours: ours: ..." in the bench."""
    from types import SimpleNamespace

    from guardrail_dro.train.bench_plan import method_note_lines

    runs = [SimpleNamespace(method="ours", notes=["ours: 3 of 3 train items kept", "rank 0"])]
    assert method_note_lines(runs) == ["ours: 3 of 3 train items kept", "ours: rank 0"]
