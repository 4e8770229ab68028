"""Settings a run would not read, refused through the Python API as the CLI refuses
them; numbers given as text; run_bench's arguments; background text that is also in
the bench's test split."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import guardrail_dro as gd
from guardrail_dro.cli.training_options import TrainingOptions
from guardrail_dro.train.bench_plan import default_methods


@pytest.fixture(scope="module")
def tiny():
    return gd.make_synthetic(n_train=40, n_valid=30, n_test=20)


# ---- settings a run would not read ------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"encoder_lr": 1e-4}, "encoder_lr (full mode only; mode='frozen')"),
        ({"warmup": 0.3}, "warmup (full mode only"),
        ({"probe_epochs": 5}, "probe_epochs (full mode only"),
        ({"max_grad_norm": None}, "max_grad_norm (full mode only"),
        ({"lp_select": "compete"}, "lp_select (full mode only"),
        ({"ft_estimator": "learn"}, "ft_estimator (full mode only"),
        ({"mode": "full", "probe_epochs": 0, "lp_select": "compete"}, "lp_select (full mode's LP"),
        ({"background_weight": 2.0}, "background_weight (needs background_safe)"),
        ({"background_fraction": 0.5}, "background_fraction (needs background_safe)"),
        ({"harmful_weight": 3.0}, "harmful_weight (needs background_harmful)"),
        ({"method": "mv", "use_confidence": "on"}, "use_confidence (the soft-label estimator's"),
        ({"method": "single:llm_a", "use_rationale": "on"}, "method 'single:llm_a' learns none"),
        ({"method": "soft", "mode": "full", "ft_estimator": "learn"}, "ft_estimator (the soft"),
    ],
)
def test_a_setting_the_run_would_ignore_is_refused_by_name(settings: dict, named: str) -> None:
    """Each trained a model identical to one without it (the CLI's audit measured it,
    tests/train/test_options_audit.py), and the manifest recorded it as if it had
    trained: the CLI refused the options, the Python API took the fields."""
    cfg = gd.TrainConfig(**settings)
    with pytest.raises(gd.ConfigError, match="TrainConfig settings this run would ignore") as err:
        gd.BiLevelTrainer(cfg)
    assert named in str(err.value)


def test_several_are_named_together() -> None:
    cfg = gd.TrainConfig(method="mv", encoder_lr=1e-4, harmful_weight=2.0, use_confidence="on")
    with pytest.raises(gd.ConfigError) as err:
        gd.BiLevelTrainer(cfg)
    said = str(err.value)
    assert all(n in said for n in ("encoder_lr (", "harmful_weight (", "use_confidence ("))


@pytest.mark.parametrize(
    "settings",
    [
        {},
        # every judged setting spelt out at its default: never an error
        {
            "method": "mv",
            "encoder_lr": 3e-5,
            "warmup": 0.1,
            "probe_epochs": 40,
            "max_grad_norm": 1.0,
            "lp_select": "tuned",
            "ft_estimator": "freeze",
            "background_weight": None,
            "background_fraction": None,
            "harmful_weight": 1.0,
            "use_confidence": "auto",
            "use_rationale": "auto",
        },
        {"method": "mv", "use_confidence": "off", "use_rationale": "off"},  # what mv does
        {"mode": "full", "encoder_lr": 1e-4, "lp_select": "compete", "ft_estimator": "learn"},
        {"mode": "full", "probe_epochs": 0, "warmup": 0.2},
        {"background_safe": ["everyday-requests"], "background_weight": 2.0},
        {
            "background_safe": ["everyday-requests"],
            "background_harmful": ["harmful-requests"],
            "harmful_weight": 3.0,
        },
        {"method": "ours-agree", "use_confidence": "on", "use_rationale": "on"},
    ],
)
def test_defaults_and_settings_the_run_reads_are_kept(settings: dict) -> None:
    trainer = gd.BiLevelTrainer(gd.TrainConfig(**settings))
    assert trainer.config.model_dump() == gd.TrainConfig(**settings).model_dump()


def test_a_copy_is_judged_on_the_settings_its_update_gives(tiny, tiny_backbone, tmp_path) -> None:
    """model_fields_set of a copy keeps its original's: the trainer's LP stage, a
    frozen-mode copy of a full-mode config with the caller's encoder_lr, would refuse
    itself, and so would a bench's copy per method of its shared settings."""
    cfg = gd.TrainConfig(
        method="mv", mode="full", encoder_lr=1e-4, probe_epochs=1, epochs=1, batch_size=16,
        train_layers=1, backbone=str(tiny_backbone), cache_dir=tmp_path, progress=False,
    )  # fmt: skip
    result = gd.BiLevelTrainer(cfg).fit(tiny["train"], tiny["valid"])
    assert result.config.encoder_lr == 1e-4 and result.config.mode == "full"
    frozen = cfg.model_copy(update={"mode": "frozen", "train_layers": None})
    gd.BiLevelTrainer(frozen)  # the LP stage, as tests/train/test_full_mode.py builds it
    assert frozen == gd.TrainConfig(**{**frozen.model_dump(), "encoder_lr": 1e-4})
    with pytest.raises(gd.ConfigError, match=r"warmup \(full mode only; mode='frozen'\)"):
        gd.BiLevelTrainer(frozen.model_copy(update={"warmup": 0.3}))


def _fields(options: dict) -> dict:
    names = {"confidence": "use_confidence", "rationale": "use_rationale"}
    return {names.get(k, k): v for k, v in options.items()}


@pytest.mark.parametrize(
    ("options", "method"),
    [
        ({"encoder_lr": 1e-4}, "mv"),
        ({"ft_estimator": "learn"}, "ours"),
        ({"lp_select": "compete"}, "ours"),
        ({"background_weight": 4.0, "background_fraction": 0.5}, "mv"),
        ({"harmful_weight": 7.0}, "mv"),
        ({"confidence": "on"}, "mv"),
        ({"rationale": "on"}, "single:llm_a"),
        ({"mode": "full", "ft_estimator": "learn"}, "soft"),
        ({"mode": "full", "encoder_lr": 1e-4, "lp_select": "compete"}, "mv"),
        ({"confidence": "on", "rationale": "on"}, "ours"),
        ({"confidence": "off", "rationale": "off"}, "mv"),
        ({"harmful_weight": 1.0}, "mv"),
        ({"background_safe": ["everyday-requests"], "background_weight": 2.0}, "mv"),
    ],
)
def test_the_cli_and_the_python_api_refuse_the_same(options: dict, method: str) -> None:
    """One function decides for both (train/unread.py); each names what its user wrote:
    the CLI its options, the Python API its fields."""
    fields = _fields(options)
    try:
        TrainingOptions(**options).config(method=method)
        cli: set[str] = set()
    except gd.ConfigError as exc:
        said = str(exc)
        cli = {
            f for f, o in zip(fields, options, strict=True) if f"--{o.replace('_', '-')}" in said
        }
        assert cli, exc
    try:
        gd.BiLevelTrainer(gd.TrainConfig(method=method, **fields))
        python: set[str] = set()
    except gd.ConfigError as exc:
        python = {f for f in fields if f"{f} (" in str(exc)}
    assert cli == python


def test_every_kind_of_unread_setting_has_the_clis_words() -> None:
    from guardrail_dro.cli import training_options as T
    from guardrail_dro.train.unread import (
        ESTIMATOR_SWITCHES,
        FULL_MODE_ONLY,
        NEEDS,
        unread_settings,
    )

    assert set(T._OPTION_NEEDS) == set(NEEDS)
    judged = {*FULL_MODE_ONLY, *ESTIMATOR_SWITCHES, "background_weight", "harmful_weight"}
    options = {f.name for f in dataclasses.fields(TrainingOptions)}
    as_options = {"use_confidence": "confidence", "use_rationale": "rationale"}
    given = {f for f in judged if as_options.get(f, f) in options}
    assert given <= set(T._OPTION_NAMES)
    full = gd.TrainConfig(mode="full", probe_epochs=0).model_copy(update={"lp_select": "compete"})
    assert [u.needs for u in unread_settings(full, ["lp_select"])] == ["lp"]


def test_bench_configs_of_every_method_are_still_accepted(tiny) -> None:
    """A bench shares one config among its methods: the CLI's (every option passed,
    --confidence on) and the quickstart's (harmful_weight without harmful text on the
    synthetic set) must build every method's run as the bench does (bench_runs.RunStore)."""
    from guardrail_dro.cli.quick_recipe import quick_config

    shared = [
        TrainingOptions(confidence="on", rationale="on").config(average_seeds=1),
        quick_config(Path("q"), synthetic=True, backbone=None, background=[], choose=False),
    ]
    for base in shared:
        for method in default_methods(tiny["train"]):
            run = base.model_copy(update={"method": method, "seed": 1, "progress": False})
            assert gd.BiLevelTrainer(run).config.method == method


def test_a_bench_trains_a_method_its_shared_settings_do_not_touch(
    tiny, tiny_backbone, tmp_path
) -> None:
    cfg = gd.TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path, epochs=1, progress=False,
        use_confidence="on",
    )  # fmt: skip
    report = gd.run_bench(
        tiny["train"], tiny["valid"], tiny["test"], methods=["mv"], seeds=1, config=cfg
    )
    assert set(report.results) == {"mv"}


# ---- stored configs -----------------------------------------------------------------------
def test_a_manifests_config_loads_back_and_is_judged_only_when_it_trains(
    tiny, tiny_backbone, tmp_path
) -> None:
    cfg = gd.TrainConfig(
        method="mv", backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1,
        progress=False, lr=0.05,
    )  # fmt: skip
    result = gd.BiLevelTrainer(cfg).fit(tiny["train"], tiny["valid"])
    gd.TrainedModel.from_result(result, {}).save(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]
    back = gd.TrainConfig.model_validate(stored)
    assert back == result.config == cfg
    assert gd.TrainConfig.model_validate_json(json.dumps(stored)) == back
    gd.BiLevelTrainer(back)  # every field set, each at what trained: nothing to refuse
    # A manifest the Python API wrote before: an ignored setting recorded, and fields
    # added since missing. It loads; only training from it again is refused.
    old = {k: v for k, v in stored.items() if k not in {"ft_estimator", "train_layers"}}
    old.update(encoder_lr=1e-4, harmful_weight=3.0)
    loaded = gd.TrainConfig.model_validate(old)
    assert loaded.encoder_lr == 1e-4 and loaded.ft_estimator == "freeze"
    with pytest.raises(gd.ConfigError, match="encoder_lr .*harmful_weight"):
        gd.BiLevelTrainer(loaded)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"epochs": "3"}, "epochs must be a number, not str '3'"),
        ({"lr": "1e-3"}, "lr must be a number, not str"),
        ({"seed": True}, "seed must be a number, not bool"),
        ({"background_weight": b"2"}, "background_weight must be a number, not bytes"),
    ],
)
def test_numbers_given_as_text_are_refused(settings: dict, match: str) -> None:
    # epochs="3" trained 3 epochs and True as 1 without a word (pydantic's lax mode).
    with pytest.raises(ValidationError, match=match):
        gd.TrainConfig(**settings)


def test_numbers_of_any_kind_are_still_numbers() -> None:
    cfg = gd.TrainConfig(epochs=np.int64(3), lr=np.float32(0.5), weight_decay=0, warmup=0.25)
    assert (cfg.epochs, cfg.lr, cfg.weight_decay) == (3, 0.5, 0.0)
    assert type(cfg.epochs) is int


# ---- run_bench's arguments ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test": None}, "test must be an AnnotatedDataset, not NoneType"),
        ({"valid": None}, "valid must be an AnnotatedDataset, not NoneType"),
        ({"config": {"epochs": 2}}, "config must be a TrainConfig or None, not dict"),
        ({"methods": "ours"}, r"methods must be a list of method names, not a str: \['ours'\]"),
        ({"out_dir": 5}, "out_dir must be a folder path"),
    ],
)
def test_run_bench_names_a_bad_argument(tiny, kwargs: dict, match: str) -> None:
    # test=None: AttributeError 'NoneType' object has no attribute 'gold_array';
    # methods="ours": "unknown method 'o'".
    args = {"train": tiny["train"], "valid": tiny["valid"], "test": tiny["test"], **kwargs}
    with pytest.raises(TypeError, match=match):
        gd.run_bench(args.pop("train"), args.pop("valid"), args.pop("test"), seeds=1, **args)


# ---- background text also in the bench's test split --------------------------------------
def _ordinary(n: int) -> list[str]:
    return [f"Which fern grows best on a north window, number {i}?" for i in range(n)]


def test_background_text_in_a_scoring_split_is_left_out_with_a_note(tiny, tmp_path) -> None:
    from guardrail_dro.train.background_data import leaving_out, load, shared_with

    test = tiny["test"].texts[:12]
    f = tmp_path / "bg.txt"
    f.write_text("\n".join([*test, *_ordinary(20)]) + "\n")
    assert shared_with([str(f)], [], tiny["test"].texts) == 12
    bg, _, notes = load([str(f)], [], tiny["valid"], True)
    assert bg is not None and len(bg.train) + len(bg.heldout) == 32 and not notes
    with leaving_out("test", tiny["test"].texts):
        bg, _, notes = load([str(f)], [], tiny["valid"], True)
        assert bg is not None and len(bg.train) + len(bg.heldout) == 20
        assert notes == ["12 background-safe text(s) also in test were left out (drop_overlap)"]
        kept, _, _ = load([str(f)], [], tiny["valid"], False)  # --keep-overlap: as asked
        assert kept is not None and len(kept.train) + len(kept.heldout) == 32
        f.write_text("\n".join(test) + "\n")
        with pytest.raises(gd.DataError, match="12 of its texts are also in test"):
            load([str(f)], [], tiny["valid"], True)


def test_the_bench_trains_no_background_text_that_test_scores(
    tiny, tiny_backbone, tmp_path
) -> None:
    """The bench left out train items also in test, but not background text: a test text
    in --background-safe trained as safe, and test then scored the guard on it."""
    f = tmp_path / "bg.txt"
    f.write_text("\n".join([*tiny["test"].texts[:12], *_ordinary(20)]) + "\n")
    cfg = gd.TrainConfig(
        backbone=str(tiny_backbone), cache_dir=tmp_path / "c", epochs=1, progress=False,
        background_safe=[str(f)], background_weight=1.0, background_fraction=1.0,
        toxic_score="class-head",
    )  # fmt: skip
    fits = []
    report = gd.run_bench(
        tiny["train"], tiny["valid"], tiny["test"], methods=["mv"], seeds=1, config=cfg,
        on_fit=lambda method, seed, result: fits.append(result),
    )  # fmt: skip
    (result,) = fits
    assert result.background is not None
    assert result.background.items + result.background.heldout_items == 20
    note = "12 background-safe text(s) also in test were left out (drop_overlap)"
    assert note in report.results["mv"].notes
