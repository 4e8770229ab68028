"""Public entry points given a wrong type or value: a clear error naming the argument,
never a silently wrong result or an AttributeError from deep inside."""

from __future__ import annotations

import pytest

import guardrail_dro as gd
from guardrail_dro.errors import ConfigError


@pytest.fixture(scope="module")
def tiny():
    return gd.make_synthetic(n_train=12, n_valid=8, n_test=4)


# ---- BiLevelTrainer ---------------------------------------------------------------------
@pytest.mark.parametrize("config", [{}, {"method": "mv", "epochs": 2}, "ours"])
def test_trainer_rejects_a_config_that_is_not_a_trainconfig(config: object) -> None:
    # {} used to train silently with the default config; a filled dict raised
    # AttributeError: 'dict' object has no attribute 'method'.
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        gd.BiLevelTrainer(config)


def test_trainer_fit_rejects_the_splits_dict(tiny) -> None:
    trainer = gd.BiLevelTrainer(gd.TrainConfig(method="mv", progress=False))
    with pytest.raises(TypeError, match="train must be an AnnotatedDataset, not dict"):
        trainer.fit(tiny, tiny["valid"])
    with pytest.raises(TypeError, match="valid must be an AnnotatedDataset, not NoneType"):
        trainer.fit(tiny["train"], None)


# ---- make_synthetic ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": -1}, "n_train must be an int >= 0"),
        ({"n_valid": 2.5}, "n_valid must be an int >= 0"),
        ({"seed": None}, "seed must be an int >= 0"),
        ({"crowd_size": -1}, "crowd_size must be an int >= 0"),
        ({"human_accuracy": 2.0}, r"human_accuracy must be a probability in \[0, 1\]"),
        ({"phrase_on_safe": -0.1}, "phrase_on_safe must be a probability"),
        ({"llm_accuracy": "0.9"}, "llm_accuracy must be a probability"),
    ],
)
def test_make_synthetic_rejects_bad_counts_and_rates(kwargs: dict, match: str) -> None:
    # n_train=-1 used to return an empty train split; human_accuracy=2.0 was accepted.
    with pytest.raises(ValueError, match=match):
        gd.make_synthetic(**{"n_train": 4, "n_valid": 4, "n_test": 4, **kwargs})


def test_make_synthetic_still_takes_zero_and_edge_rates() -> None:
    data = gd.make_synthetic(n_train=0, n_valid=3, n_test=3, human_accuracy=1, llm_accuracy=0.0)
    assert {k: len(v) for k, v in data.items()} == {"train": 0, "valid": 3, "test": 3}


# ---- Policy -------------------------------------------------------------------------------
def test_policy_raise_on_violation_must_be_a_bool() -> None:
    # "no" is truthy: it used to turn raising on.
    with pytest.raises(ConfigError, match="raise_on_violation must be a bool"):
        gd.Policy(raise_on_violation="no")


@pytest.mark.parametrize("thresholds", [None, [0.5], 0.5])
def test_policy_thresholds_must_be_a_mapping(thresholds: object) -> None:
    with pytest.raises(ConfigError, match="Policy.thresholds must be a mapping"):
        gd.Policy(thresholds=thresholds)


def test_guard_from_scorer_rejects_an_empty_dict_policy() -> None:
    # {} is falsy: it used to be replaced by Policy() without a word.
    scorer = gd.FakeScorer.from_keywords({"knife": "toxic"})
    with pytest.raises(TypeError, match="policy must be a Policy, not dict"):
        gd.Guard.from_scorer(scorer, policy={})


# ---- read_splits --------------------------------------------------------------------------
def test_read_splits_rejects_a_list_of_paths() -> None:
    with pytest.raises(TypeError, match="paths must be a dict split name -> path, not list"):
        gd.read_splits(["train.csv"])


@pytest.mark.parametrize("options", [{}, {"text_col": "question"}])
def test_readers_reject_options_given_as_a_dict(tmp_path, options: dict) -> None:
    # {} was silently read with the defaults; a filled dict raised
    # AttributeError: 'dict' object has no attribute 'format'.
    path = tmp_path / "t.csv"
    path.write_text("text,label\nhello,safe\nbad,toxic\n")
    with pytest.raises(TypeError, match="options must be a ReaderOptions"):
        gd.read_dataset(path, options)
    with pytest.raises(TypeError, match="options must be a ReaderOptions"):
        gd.read_splits({"train": path}, options)


# ---- annotators ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [None, 5])
def test_make_annotator_rejects_a_spec_that_is_not_a_str(spec: object) -> None:
    from annotators import make_annotator

    with pytest.raises(TypeError, match="annotator spec must be a str"):
        make_annotator(spec, need_key=False)  # type: ignore[arg-type]


def test_annotate_rejects_the_splits_dict(tiny) -> None:
    from annotators import annotate, annotate_with_report

    for fn in (annotate, annotate_with_report):
        with pytest.raises(TypeError, match="dataset must be an AnnotatedDataset, not dict"):
            fn(tiny, [], progress=False)


@pytest.mark.parametrize("annotators", ["openai:gpt-4o-mini", ["openai:gpt-4o-mini"]])
def test_annotate_rejects_specs_in_place_of_annotators(tiny, annotators: object) -> None:
    from annotators import annotate

    with pytest.raises(TypeError, match="annotators must be a list of annotators"):
        annotate(tiny["train"], annotators, progress=False)  # type: ignore[arg-type]


# ---- export_onnx --------------------------------------------------------------------------
def test_export_onnx_rejects_the_splits_dict_as_valid(tiny, tmp_path) -> None:
    # Checked before the model loads: valid=splits used to fail after loading it, with
    # AttributeError: 'dict' object has no attribute 'schema'.
    from export import export_onnx

    with pytest.raises(TypeError, match="valid must be an AnnotatedDataset or None, not dict"):
        export_onnx(tmp_path / "no-model", tmp_path / "guard", valid=tiny)


# ---- paths given as None (an unset option, a missing dict key) --------------------------
@pytest.mark.parametrize("path", [None, 5])
def test_read_dataset_rejects_a_path_that_is_not_one(path: object) -> None:
    # Used to fail inside pathlib: "expected str, bytes or os.PathLike object, not NoneType".
    with pytest.raises(TypeError, match="path must be a path .*not " + type(path).__name__):
        gd.read_dataset(path)  # type: ignore[arg-type]


def test_read_splits_names_the_split_whose_path_is_not_one() -> None:
    with pytest.raises(TypeError, match=r"paths\['valid'\] must be a path"):
        gd.read_splits({"train": "toxic-questions:train", "valid": 5})  # type: ignore[dict-item]


@pytest.mark.parametrize("paths", [{"train": None}, {"train": None, "valid": None}, {}])
def test_read_splits_with_no_path_at_all_says_so(tiny, paths: dict) -> None:
    # Used to say "no labels in the data to infer a label schema from: pass --labels"
    # (with a schema given: an empty dict of splits, then a KeyError in the caller).
    with pytest.raises(ConfigError, match="paths names no file to read"):
        gd.read_splits(paths)
    with pytest.raises(ConfigError, match="paths names no file to read"):
        gd.read_splits(paths, schema=tiny["train"].schema)


def test_read_splits_still_skips_a_none_path_beside_a_file(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\nhello,safe\nbad,toxic\n")
    splits, _ = gd.read_splits({"train": path, "valid": None})
    assert list(splits) == ["train"]


def test_trained_model_load_and_save_name_a_none_directory(tmp_path) -> None:
    # Each used to raise pathlib's TypeError from inside the method.
    from guardrail_dro.train.modeldir import TrainedModel, check_save_target

    with pytest.raises(TypeError, match="model_dir must be a path .*not NoneType"):
        TrainedModel.load(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model_dir must be a path .*not NoneType"):
        TrainedModel.record_test_metrics(None, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="out_dir must be a path .*not NoneType"):
        check_save_target(None)  # type: ignore[arg-type]
    # save checks its target before touching self: no model needed to see the refusal.
    with pytest.raises(TypeError, match="out_dir must be a path .*not NoneType"):
        TrainedModel.save(object(), None)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())
