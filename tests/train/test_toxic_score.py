"""The guard's toxic score, chosen per model on valid (train/toxic_score.py): the rule,
the mixed outputs, and a chosen binary head surviving save, load, the Hugging Face
layout and the ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from guardrail_dro.train.model import GuardClassifier, ToxicMix, mix_toxic  # noqa: E402
from guardrail_dro.train.modeldir import TrainedModel  # noqa: E402
from guardrail_dro.train.toxic_score import select  # noqa: E402


def test_mixed_outputs_carry_the_chosen_score_and_keep_the_class_order() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=g) * 3
    binary = torch.randn(64, 1, generator=g) * 3
    safe = torch.tensor([False, True, False, False, True])
    for w in (0.5, 1.0):
        out = torch.softmax(mix_toxic(logits, binary, safe, w), -1)
        p = torch.softmax(logits, -1)
        want = (1 - w) * (1 - p[:, safe].sum(1)) + w * torch.sigmoid(binary[:, 0])
        torch.testing.assert_close(1 - out[:, safe].sum(1), want, atol=1e-5, rtol=0)
        # the most likely harmful class (a blocked text's label) is the class head's
        assert torch.equal(out[:, ~safe].argmax(1), p[:, ~safe].argmax(1))
        torch.testing.assert_close(
            out[:, safe] / out[:, safe].sum(1, keepdim=True),
            p[:, safe] / p[:, safe].sum(1, keepdim=True),
        )


def test_the_rule_keeps_the_class_head_unless_an_alternative_is_clearly_better() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(1000) < 0.5
    weak = y + rng.normal(0, 1.5, 1000)  # class head: AUC ~0.7
    strong = y + rng.normal(0, 0.4, 1000)  # binary head: AUC ~0.96
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    won = select(y, sig(weak), sig(strong))
    assert won.kind in ("binary head", "mean of both") and won.binary_weight > 0
    assert won.valid_auc[won.kind] > won.valid_auc["1 - P(safe)"] + 0.1
    assert won.gain_ci95[won.kind][0] > 0
    # a binary head that only repeats the class head: its gain is noise, the class head stays
    z = y + rng.normal(0, 1, 1000)
    same = select(y, sig(z), sig(z + rng.normal(0, 0.05, 1000)))
    assert same.kind == "1 - P(safe)" and same.binary_weight == 0
    assert same.gain_ci95["binary head"][0] <= 0 <= same.gain_ci95["binary head"][1]


def test_the_bootstrap_auc_is_sklearns() -> None:
    from sklearn.metrics import roc_auc_score

    from guardrail_dro.train.toxic_score import _aucs

    rng = np.random.default_rng(1)
    y = rng.random((5, 300)) < 0.3
    s = np.round(rng.random((5, 300)), 1)  # many ties
    want = [roc_auc_score(y[k], s[k]) for k in range(5)]
    np.testing.assert_allclose(_aucs(y, s), want, atol=1e-12)


def test_every_trained_model_records_its_toxic_score_choice(tiny_model_dir: Path) -> None:
    trained = TrainedModel.load(tiny_model_dir)
    man = trained.manifest
    assert man.toxic_score is not None
    assert set(man.toxic_score.valid_auc) == {"1 - P(safe)", "mean of both", "binary head"}
    assert any(n.startswith("toxic score:") for n in man.notes)
    # the fixture asks for the class head's score: measured and recorded, not applied
    assert man.toxic_score.kind == "1 - P(safe)" and man.toxic_score.rule == "set (class-head)"
    assert trained.model.toxic is None


@pytest.fixture()
def mixed_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with a random binary head at half the score, saved."""
    base = TrainedModel.load(tiny_model_dir)
    torch.manual_seed(3)
    dim = base.model.encoder.config.hidden_size
    mix = ToxicMix(dim, base.schema.safe_mask(), 0.5)
    with torch.no_grad():
        mix.binary.weight.mul_(40)  # large enough to move the score visibly
    model = GuardClassifier(
        base.model.encoder, base.model.head, normalize=base.manifest.normalize, toxic=mix.eval()
    )
    return TrainedModel(model, base.tokenizer, base.schema, base.manifest).save(tmp_path / "m")


def test_a_binary_head_survives_save_load_and_the_hf_layout(
    mixed_model: Path, tiny_model_dir: Path, synthetic
) -> None:
    from safetensors import safe_open
    from transformers import pipeline

    texts = list(synthetic["test"].texts[:40])
    plain = TrainedModel.load(tiny_model_dir).predict_proba(texts)
    loaded = TrainedModel.load(mixed_model)
    assert loaded.model.toxic is not None and loaded.model.toxic.weight == 0.5
    probs = loaded.predict_proba(texts)
    safe = np.asarray(loaded.schema.safe_mask())
    assert np.abs(probs[:, safe].sum(1) - plain[:, safe].sum(1)).max() > 0.05
    clf = pipeline("text-classification", model=str(mixed_model), truncation=True, top_k=None)
    got = np.array(
        [
            [{d["label"]: d["score"] for d in row}[c] for c in loaded.schema.classes]
            for row in clf(texts)
        ]
    )
    np.testing.assert_allclose(got, probs, atol=1e-5)
    with safe_open(mixed_model / "model.safetensors", "pt") as f:
        assert {"toxic_classifier.weight", "toxic_classifier.bias"} <= set(f.keys())


def test_the_exported_guard_scores_with_the_binary_head(
    mixed_model: Path, synthetic, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from export.onnx import export_onnx
    from guardrail_dro import Guard

    texts = list(synthetic["test"].texts[:20])
    trained = TrainedModel.load(mixed_model)
    safe = np.asarray(trained.schema.safe_mask())
    want = 1 - trained.predict_proba(texts)[:, safe].sum(1)
    out = export_onnx(mixed_model, tmp_path / "guard", int8=False, threshold=0.5)
    guard = Guard.load(out)
    got = np.array([guard.check(t).toxic_score for t in texts])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_evaluate_model_decides_classes_by_the_class_head(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    """``evaluate --model`` reports what ``train`` and ``bench`` report: the class head's
    argmax for the class metrics, the exported model's score for the toxic AUC. It took
    the argmax of the mixed outputs, whose safe mass the binary head moves, so a model's
    evaluation on its own valid split disagreed with its training report."""
    import json

    from typer.testing import CliRunner

    from guardrail_dro.cli.app import app
    from guardrail_dro.train.metrics import score_split

    test = synthetic["test"]
    base = TrainedModel.load(tiny_model_dir)
    torch.manual_seed(3)
    mix = ToxicMix(base.model.encoder.config.hidden_size, base.schema.safe_mask(), 1.0)
    enc = base.tokenizer(list(test.texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        mix.binary.weight.mul_(40)  # the binary head alone: toxic mass swings per text,
        z = mix.binary(base.model.embed(enc["input_ids"], enc["attention_mask"]))
        mix.binary.bias.sub_(z.median())  # toxic on about half the texts
    model = GuardClassifier(
        base.model.encoder, base.model.head, normalize=base.manifest.normalize, toxic=mix.eval()
    )
    mixed_model = TrainedModel(model, base.tokenizer, base.schema, base.manifest).save(
        tmp_path / "m"
    )
    mixed = TrainedModel.load(mixed_model)
    classes, guard = mixed.probabilities(test.texts)
    plain = TrainedModel.load(tiny_model_dir).predict_proba(test.texts)
    np.testing.assert_allclose(classes, plain, atol=1e-6)
    assert (classes.argmax(1) != guard.argmax(1)).any()  # the mix moves the argmax here
    data = tmp_path / "test.jsonl"
    test.save_jsonl(data)
    out = tmp_path / "metrics.json"
    res = CliRunner().invoke(
        app, ["evaluate", "--model", str(mixed_model), "--test", str(data), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    want = score_split(test, plain.argmax(1), proba=guard)
    assert got["accuracy"] == pytest.approx(want.accuracy)
    assert got["worst_group_accuracy"] == pytest.approx(want.worst_group_accuracy)
    assert got["toxic_roc_auc"] == pytest.approx(want.toxic_roc_auc)
