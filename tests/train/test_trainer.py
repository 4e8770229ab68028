"""The trainer end to end on the synthetic dataset (known shortcut, known annotators)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from guardrail_dro.data.readers import read_splits
from guardrail_dro.data.synthetic import SHIFTED_GROUP, SPURIOUS_PHRASE, make_synthetic
from guardrail_dro.errors import ConfigError, DataError
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig


def _fit(method: str, data, backbone: Path, cache: Path, **kw):
    cfg = TrainConfig(method=method, backbone=str(backbone), cache_dir=cache, progress=False, **kw)
    return BiLevelTrainer(cfg).fit(data["train"], data["valid"])


def test_synthetic_dataset_has_the_shortcut_it_promises(synthetic) -> None:
    test = synthetic["test"]
    toxic_with_phrase = [it for it in test if it.gold != "safe" and SPURIOUS_PHRASE in it.text]
    share = {g: sum(it.group == g for it in toxic_with_phrase) for g in test.groups}
    assert max(share, key=share.get) == SHIFTED_GROUP
    # LLM-like annotators call every phrased item safe.
    assert all(it.label_of("llm_a") == "safe" for it in toxic_with_phrase)
    again = make_synthetic(seed=0)["train"]
    assert [it.text for it in again] == synthetic["train"].texts  # deterministic by seed


@pytest.fixture(scope="module")
def minilm_runs(synthetic, tmp_path_factory):
    """ours / mv / soft with the real frozen MiniLM (a random tiny encoder cannot tell the
    topics apart, so it cannot show anything about the method)."""
    cache = tmp_path_factory.mktemp("minilm-cache")
    out = {}
    for method in ("ours", "mv", "soft"):
        cfg = TrainConfig(method=method, cache_dir=cache, progress=False)
        res = BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])
        out[method] = (res, res.evaluate(synthetic["test"]))
    return out


@pytest.mark.slow
def test_ours_beats_majority_vote_and_uniform_soft_labels_on_worst_group(minilm_runs) -> None:
    """The acceptance test of the method: fixed seed, frozen MiniLM, under a minute."""
    worst = {m: metrics.worst_group_accuracy for m, (_, metrics) in minilm_runs.items()}
    assert worst["ours"] > worst["mv"] + 0.05, worst
    assert worst["ours"] > worst["soft"] + 0.05, worst
    acc = {m: metrics.accuracy for m, (_, metrics) in minilm_runs.items()}
    assert acc["ours"] >= acc["mv"], acc


@pytest.mark.slow
def test_ours_learns_to_distrust_llms_on_phrased_items(minilm_runs) -> None:
    res = minilm_runs["ours"][0]
    w = res.annotator_weight_by_group[SHIFTED_GROUP]
    humans = (w["human_1"] + w["human_2"]) / 2
    llms = (w["llm_a"] + w["llm_b"] + w["llm_c"]) / 3
    assert humans > llms, w
    assert res.group_weights is not None
    assert sum(res.group_weights.values()) == pytest.approx(1.0)


def test_classifier_risk_variant_and_group_dro_baseline_run(
    synthetic,
    tiny_backbone: Path,
    tmp_path: Path,
) -> None:
    for method in ("ours-agree", "dro-mv", "ds", "best-single", "gold", "single:human_1"):
        res = _fit(method, synthetic, tiny_backbone, tmp_path, epochs=3)
        assert 0.0 <= res.valid_metrics.accuracy <= 1.0
        assert res.best_epoch in range(3)


def test_full_mode_fine_tunes_the_encoder(synthetic, tiny_backbone: Path, tmp_path: Path) -> None:
    small = {k: v.subset(range(60)) for k, v in synthetic.items()}
    res = _fit(
        "ours",
        small,
        tiny_backbone,
        tmp_path,
        mode="full",
        epochs=1,
        batch_size=16,
        estimator_rank=0,
        probe_epochs=0,  # no LP stage, which valid may keep over the fine-tuned epoch
    )
    before = _fit("soft", small, tiny_backbone, tmp_path, epochs=1).source.embedder
    after = res.source.embedder
    p0 = next(before.encoder.parameters())
    p1 = next(after.encoder.parameters())
    assert not p0.detach().cpu().equal(p1.detach().cpu())


def test_hundred_sparse_annotators_in_long_format(tiny_backbone: Path, tmp_path: Path) -> None:
    data = make_synthetic(n_train=400, n_valid=150, n_test=100, crowd_size=120, seed=3)
    paths = {}
    for split, ds in data.items():
        p = tmp_path / f"{split}.csv"
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "text", "annotator", "label", "gold", "group"])
            for it in ds:
                for a in it.annotations:
                    w.writerow([it.item_id, it.text, a.annotator, a.label, it.gold, it.group])
        paths[split] = p
    splits, _ = read_splits(paths)
    assert len(splits["train"].annotators) > 100
    res = _fit("ours", splits, tiny_backbone, tmp_path, epochs=3)
    assert len(res.annotators) > 100
    assert res.evaluate(splits["test"]).accuracy > 0.3


def test_bad_configuration_and_data_are_named(
    synthetic,
    tiny_backbone: Path,
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="unknown method 'magic'"):  # pydantic's, names field
        TrainConfig(method="magic")
    with pytest.raises(ConfigError, match="no annotator 'nobody'"):
        _fit("single:nobody", synthetic, tiny_backbone, tmp_path, epochs=1)
    no_gold = synthetic["valid"].subset(range(10))
    no_gold = type(no_gold)(
        [it.model_copy(update={"gold": None}) for it in no_gold], no_gold.schema, name="valid"
    )
    with pytest.raises(DataError, match="no gold label"):
        BiLevelTrainer(TrainConfig(progress=False)).fit(synthetic["train"], no_gold)


def test_train_items_that_reappear_in_valid_are_left_out(synthetic, tiny_backbone, tmp_path):
    train = synthetic["train"]
    leaky = type(train)(
        list(train.items)
        + [
            it.model_copy(update={"item_id": f"dup-{it.item_id}"})
            for it in synthetic["valid"].items[:25]
        ],
        train.schema,
        name="train",
    )
    res = _fit(
        "soft", {"train": leaky, "valid": synthetic["valid"]}, tiny_backbone, tmp_path, epochs=1
    )
    assert res.train_items_used == len(train)
    assert any("25 train item(s) also in valid" in n for n in res.notes)
    kept = _fit(
        "soft",
        {"train": leaky, "valid": synthetic["valid"]},
        tiny_backbone,
        tmp_path,
        epochs=1,
        drop_overlap=False,
    )
    assert kept.train_items_used == len(train) + 25


@pytest.mark.slow
def test_full_mode_scales_to_two_processes_with_torchrun(synthetic, tiny_backbone, tmp_path):
    """The same `train` command under torchrun: DDP on CPU (gloo), each rank its own share
    of the batches, one model directory written by the main rank."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    for split in ("train", "valid"):
        synthetic[split].subset(range(96)).save_jsonl(tmp_path / f"{split}.jsonl")
    out = tmp_path / "model"
    proc = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "-m",
            "guardrail_dro",
            "train",
            "--train",
            str(tmp_path / "train.jsonl"),
            "--valid",
            str(tmp_path / "valid.jsonl"),
            "--out",
            str(out),
            "--backbone",
            str(tiny_backbone),
            "--mode",
            "full",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "manifest.json").is_file()
    # 96 items, batch 32, two ranks: 48 each, so 2 steps per rank, not 3.
    assert "2/2" in proc.stderr and "3/3" not in proc.stderr


def test_valid_without_groups_still_trains_the_estimator(synthetic, tiny_backbone, tmp_path):
    """A valid split with gold but no groups: one group, and the estimator must move
    (a silent all-zero upper risk would leave it at uniform weights, like the reference
    code's never-stepped scheduler)."""
    valid = synthetic["valid"]
    flat = type(valid)(
        [it.model_copy(update={"group": None}) for it in valid], valid.schema, name="valid"
    )
    for method in ("ours", "ours-agree"):
        res = _fit(
            method, {"train": synthetic["train"], "valid": flat}, tiny_backbone, tmp_path, epochs=2
        )
        assert any("no groups" in n for n in res.notes)
        assert res.estimator.bias.detach().abs().max() > 1e-3, method
        assert res.valid_metrics.worst_group_accuracy is None


def test_one_label_per_item_is_named_in_the_notes(synthetic, tiny_backbone, tmp_path):
    """With one label per item the soft label is that label: the user is told, and told
    which method can still correct it."""
    train = synthetic["train"]
    one = type(train)(
        [it.model_copy(update={"annotations": it.annotations[:1]}) for it in train],
        train.schema,
        name="train",
    )
    data = {"train": one, "valid": synthetic["valid"]}
    res = _fit("ours", data, tiny_backbone, tmp_path, epochs=1)
    note = [n for n in res.notes if "carry one label" in n]
    assert note and note[0].startswith(f"ours: {len(one)} of {len(one)} train items"), res.notes
    full = _fit("ours", synthetic, tiny_backbone, tmp_path, epochs=1)
    assert not any("carry one label" in n for n in full.notes)


def test_a_negative_seed_or_a_device_not_there_is_refused_by_name(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """numpy refuses a negative seed and torch an unknown or absent device, each with a
    traceback from deep inside a fit; the config and ``pick_device`` name them first."""
    from pydantic import ValidationError

    from guardrail_dro.train.devices import pick_device

    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        TrainConfig(seed=-1)
    with pytest.raises(ValidationError, match=r"'bogus' is not a device \(--device\)"):
        TrainConfig(device="bogus")
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match=r"device 'cuda:99' \(--device\) is not available"):
        pick_device("cuda:99")
    with pytest.raises(ConfigError, match=r"device 'cuda:99' \(--device\) is not available"):
        _fit("mv", synthetic, tiny_backbone, tmp_path, epochs=1, device="cuda:99")
