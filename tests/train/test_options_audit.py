"""`guardrail-dro train` options and their combinations: what an audit of them found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guardrail_dro.cli.training_options import TrainingOptions
from guardrail_dro.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("options", "method", "named"),
    [
        ({"encoder_lr": 1e-4}, "mv", "--encoder-lr"),
        ({"ft_estimator": "learn"}, "ours", "--ft-estimator learn"),
        ({"lp_select": "compete"}, None, "--lp-select compete"),
        ({"background_weight": 4.0}, "mv", "--background-weight"),
        ({"background_fraction": 0.5}, None, "--background-fraction"),
        ({"harmful_weight": 7.0}, "mv", "--harmful-weight"),
        ({"confidence": "on"}, "mv", "--confidence on"),
        ({"rationale": "on"}, "single:llm_a", "--rationale on"),
        ({"mode": "full", "ft_estimator": "learn"}, "soft", "--ft-estimator learn"),
    ],
)
def test_an_option_the_run_would_ignore_is_refused_by_name(
    options: dict, method: str | None, named: str
) -> None:
    """Each of these trained a model identical, weight for weight, to one without the
    option (model.safetensors sha256 13df1364702b for mv, frozen, with and without
    --encoder-lr 0.1 --ft-estimator learn --lp-select compete, with and without
    --background-weight 4 --background-fraction 0.5 --harmful-weight 7, with and without
    --confidence on --rationale on), and the manifest recorded the option as if it had
    trained."""
    with pytest.raises(ConfigError, match="would ignore") as err:
        TrainingOptions(**options).config(**({"method": method} if method else {}))
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("options", "method"),
    [
        ({"mode": "full", "encoder_lr": 1e-4, "lp_select": "compete"}, "mv"),
        ({"mode": "full", "ft_estimator": "learn"}, "ours-agree"),
        ({"confidence": "on", "rationale": "on"}, "ours"),
        ({"confidence": "off", "rationale": "off"}, "mv"),  # what happens anyway
        ({"confidence": "on"}, None),  # bench: ours reads it, the others need not
        ({"harmful_weight": 1.0}, "mv"),  # the default, however it was spelled
    ],
)
def test_options_the_run_reads_are_kept(options: dict, method: str | None) -> None:
    cfg = TrainingOptions(**options).config(**({"method": method} if method else {}))
    assert cfg.mode == options.get("mode", "frozen")


def test_the_cli_refuses_before_reading_any_data(tmp_path: Path) -> None:
    """Refused when the options are parsed: the data named does not even exist."""
    r = subprocess.run(
        [
            sys.executable, "-m", "guardrail_dro", "train",
            "--train", str(tmp_path / "none.jsonl"), "--valid", str(tmp_path / "none.jsonl"),
            "--out", str(tmp_path / "m"), "--method", "mv", "--encoder-lr", "0.1",
            "--harmful-weight", "3",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    said = " ".join(r.stderr.split())
    assert "--encoder-lr" in said and "--harmful-weight" in said, said
    assert "needs --background-harmful" in said and "full mode" in said, said


def _ordinary(n: int) -> list[str]:
    return [f"How do I water a fern number {i} in my kitchen?" for i in range(n)]


def test_background_text_that_is_also_in_valid_is_left_out(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """`--background-safe valid.jsonl` trained every valid text, toxic ones included, as
    safe (88 trained + 32 held out of valid's 120) with no word: valid then scored the
    guard on its own training items. Background text now leaves valid out, as train does
    (drop_overlap)."""
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    valid = synthetic["valid"]
    f = tmp_path / "bg.txt"
    f.write_text("\n".join([*valid.texts[:40], *_ordinary(30)]) + "\n")
    cfg = TrainConfig(
        method="mv", backbone=str(tiny_backbone), epochs=1, progress=False,
        cache_dir=tmp_path / "c", background_safe=[str(f)], background_weight=1.0,
        background_fraction=1.0, toxic_score="class-head",
    )  # fmt: skip
    r = BiLevelTrainer(cfg).fit(synthetic["train"], valid)
    assert r.background is not None
    assert r.background.items + r.background.heldout_items == 30
    assert any("40 background-safe text(s) also in valid" in n for n in r.notes), r.notes
    f.write_text("\n".join(valid.texts[:40]) + "\n")
    with pytest.raises(DataError, match="also in valid"):
        BiLevelTrainer(cfg).fit(synthetic["train"], valid)
    kept = BiLevelTrainer(cfg.model_copy(update={"drop_overlap": False}))
    r = kept.fit(synthetic["train"], valid)  # --keep-overlap: as asked
    assert r.background is not None
    assert r.background.items + r.background.heldout_items == 40


def test_a_background_file_of_labelled_rows_is_refused(synthetic, tmp_path: Path) -> None:
    """`--background-safe train.jsonl` (an annotated split) trained every train text,
    the toxic ones too, as safe: the reader took each object's "text" and dropped its
    labels without a word. A file whose rows carry different labels is refused; one
    whose label column says one thing (all "safe") still reads."""
    from guardrail_dro.data.background import load_background

    jsonl = tmp_path / "train.jsonl"
    synthetic["train"].save_jsonl(jsonl)
    with pytest.raises(DataError, match="different labels"):
        load_background([str(jsonl)])
    gold = tmp_path / "gold.jsonl"
    synthetic["valid"].save_jsonl(gold)
    with pytest.raises(DataError, match="different labels"):
        load_background([str(gold)], harmful=True)
    csv = tmp_path / "rows.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in zip(
        _ordinary(6), ["safe", "safe", "toxic", "safe", "safe", "safe"], strict=True
    )))  # fmt: skip
    with pytest.raises(DataError, match="'safe', 'toxic'"):
        load_background([str(csv)])
    csv.write_text("text,label\n" + "".join(f"{t},safe\n" for t in _ordinary(6)))
    assert len(load_background([str(csv)]).train) >= 1
    # distill's extra texts are read as either kind (its teacher labels them): no check
    assert load_background([str(jsonl)], require_both=False, harmful=None).train


def test_average_seeds_in_full_mode_is_refused_with_the_options() -> None:
    """`train --mode full --average-seeds 2` was refused by fit_seeds, once the data had
    been read and checked; now with the options, before anything is read."""
    with pytest.raises(ConfigError, match="--average-seeds 2 .* --mode full"):
        TrainingOptions(mode="full").config(method="ours", average_seeds=2)
    assert TrainingOptions().config(method="ours", average_seeds=2).average_seeds == 2
