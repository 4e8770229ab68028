"""Distillation: layer choice, the student's initial weights, the loss, and a tiny
random teacher distilled into a 1-layer student end to end (export + Guard.check)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from guardrail_dro.errors import ConfigError  # noqa: E402
from guardrail_dro.train.distill import (  # noqa: E402
    DistillConfig,
    distill,
    distill_loss,
    pick_layers,
    student_from_teacher,
)
from guardrail_dro.train.modeldir import TrainedModel  # noqa: E402


@pytest.mark.parametrize(
    ("total", "k", "choice", "want"),
    [
        (6, 1, "spread", [0]),
        (6, 2, "spread", [0, 5]),
        (6, 3, "spread", [0, 2, 5]),
        (6, 3, "first", [0, 1, 2]),
        (6, 6, "spread", [0, 1, 2, 3, 4, 5]),
        (2, 2, "first", [0, 1]),
    ],
    ids=lambda v: str(v),
)
def test_pick_layers(total: int, k: int, choice: str, want: list[int]) -> None:
    assert pick_layers(total, k, choice) == want  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, 7])
def test_pick_layers_refuses_a_student_larger_than_the_teacher(k: int) -> None:
    with pytest.raises(ConfigError, match="1..6 layers"):
        pick_layers(6, k)


def test_student_copies_the_chosen_layers_and_the_head(tiny_model_dir: Path) -> None:
    teacher = TrainedModel.load(tiny_model_dir).model
    student = student_from_teacher(teacher, [1])
    assert student.encoder.config.num_hidden_layers == 1
    t, s = teacher.encoder.state_dict(), student.encoder.state_dict()
    for name, v in s.items():
        src = name.replace("encoder.layer.0.", "encoder.layer.1.")
        assert torch.equal(v, t[src]), name
    assert torch.equal(student.head.net[-1].weight, teacher.head.net[-1].weight)
    # Its own copy: training the student never touches the teacher.
    assert student.head.net[-1].weight.data_ptr() != teacher.head.net[-1].weight.data_ptr()
    # All the layers in order: the same network, the same logits.
    whole = student_from_teacher(teacher, [0, 1])
    ids = torch.tensor([[101, 7592, 2088, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.allclose(whole(ids, mask), teacher(ids, mask), atol=1e-6)


def test_distill_loss_terms() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    probs = torch.softmax(logits, -1)
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, 2.0]]), dim=-1)
    same = distill_loss(logits, emb, probs, emb, loss="both")
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    other = torch.nn.functional.normalize(torch.tensor([[2.0, 1.0, 2.0]]), dim=-1)
    cos = float((emb * other).sum())
    embed = distill_loss(logits, other, probs, emb, loss="embed")
    assert float(embed) == pytest.approx(2 - 2 * cos, rel=1e-5)
    kl = distill_loss(torch.zeros(1, 3), emb, probs, emb, loss="kl")
    expected = float((probs * (probs.log() - np.log(1 / 3))).sum())
    assert float(kl) == pytest.approx(expected, rel=1e-5)
    both = distill_loss(torch.zeros(1, 3), other, probs, emb, loss="both", embed_weight=2.0)
    assert float(both) == pytest.approx(expected + 2 * (2 - 2 * cos), rel=1e-5)


def test_distill_loss_toxic_term_is_the_binary_kl_of_the_toxic_scores() -> None:
    safe = torch.tensor([False, False, True])
    teacher = torch.tensor([[0.5, 0.2, 0.3]])  # toxic score 0.7
    emb = torch.nn.functional.normalize(torch.ones(1, 3), dim=-1)
    # A student with the teacher's toxic score but another split between the harmful
    # classes pays the class KL, not the toxic term.
    student = torch.log(torch.tensor([[0.1, 0.6, 0.3]]))
    base = distill_loss(student, emb, teacher, emb, loss="kl")
    with_term = distill_loss(student, emb, teacher, emb, loss="kl", toxic_weight=3.0, safe=safe)
    assert float(with_term) == pytest.approx(float(base), abs=1e-6)
    # One with another toxic score (0.4) pays 3 * KL(Bernoulli(0.7) || Bernoulli(0.4)).
    student = torch.log(torch.tensor([[0.2, 0.2, 0.6]]))
    base = distill_loss(student, emb, teacher, emb, loss="kl")
    with_term = distill_loss(student, emb, teacher, emb, loss="kl", toxic_weight=3.0, safe=safe)
    binary = 0.7 * np.log(0.7 / 0.4) + 0.3 * np.log(0.3 / 0.6)
    assert float(with_term) - float(base) == pytest.approx(3 * binary, rel=1e-5)
    # Without a safe class (or without the mask) there is no toxic score: no term.
    nothing = torch.zeros(3, dtype=torch.bool)
    assert float(
        distill_loss(student, emb, teacher, emb, loss="kl", toxic_weight=3.0, safe=nothing)
    ) == pytest.approx(float(base))


def test_fake_int8_rounds_inside_and_restores_after() -> None:
    from guardrail_dro.train.student import fake_int8

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))
    x = torch.randn(5, 8)
    exact = net(x)
    with fake_int8(net) as n:
        assert n == 2
        rounded = net(x)
        rounded.sum().backward()  # straight-through: gradients reach the weights
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
    diff = float((rounded - exact).detach().abs().max())
    assert 0 < diff < 0.05  # int8 rounding: small, not nothing
    assert torch.equal(net(x), exact)  # the plain forward is back


def test_word_noise_copies_are_new_deterministic_and_near_their_text() -> None:
    from guardrail_dro.train.augment import word_noise

    texts = [
        "How can I get on the subway without paying for a ticket?",
        "What is the best way to cook rice on a stove?",
        "hi there",  # too short to vary: no copies
    ]
    a = word_noise(texts, 3, seed=4)
    assert a == word_noise(texts, 3, seed=4)
    assert a != word_noise(texts, 3, seed=5)
    assert 0 < len(a) <= 6 and len(set(a)) == len(a) and not set(a) & set(texts)
    for v in a:
        src = next(t for t in texts if set(v.split()) <= set(t.split()))
        assert len(v.split()) >= 2 and len(v.split()) <= len(src.split())
    assert word_noise(texts, 0) == []
    with pytest.raises(ValueError, match="copies"):
        word_noise(texts, -1)


def _agreement(teacher: TrainedModel, student, texts: list[str]) -> float:
    tok = teacher.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        p = teacher.model(tok["input_ids"], tok["attention_mask"]).argmax(-1)
        q = student(tok["input_ids"], tok["attention_mask"]).argmax(-1)
    return float((p == q).float().mean())


def test_tiny_teacher_into_one_layer_student_end_to_end(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    """Distil, save, reload, export with calibration and the int8 gate, Guard.check."""
    pytest.importorskip("onnxruntime")
    from export.onnx import export_onnx
    from guardrail_dro.serve.guard import Guard

    teacher = TrainedModel.load(tiny_model_dir)
    teacher_dir = tiny_model_dir
    train_texts = synthetic["train"].texts
    unlabelled = ["hello there, how are you?", "what time is the meeting tomorrow"]
    cfg = DistillConfig(
        layers=1, epochs=3, lr=1e-3, progress=False, cache_dir=tmp_path / "cache",
        augment=1, toxic_weight=1.0, quant_aware_epochs=2,
    )  # fmt: skip
    epochs: list[dict] = []
    student = distill(
        teacher_dir, train_texts, synthetic["valid"], cfg,
        extra_texts={"chat": unlabelled}, on_epoch=epochs.append,
    )  # fmt: skip
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    rec = student.manifest.distilled_from
    assert rec is not None and rec.layers == [0] and rec.teacher_layers == 2
    assert rec.texts["chat"] == 2
    assert rec.texts["word-noise"] > 0  # augment=1: copies of the training texts
    # No validation text is distilled on: it selects the epoch.
    assert rec.texts["train"] == len(set(train_texts) - set(synthetic["valid"].texts))
    assert student.manifest.valid_metrics.n == len(synthetic["valid"])
    # The epoch kept is the one with the best validation ROC AUC (ties: the later) among
    # the quantisation-aware ones (the last two of three).
    aucs = {e["epoch"]: e["toxic_auc"] for e in rec.epoch_valid}
    assert rec.best_epoch == max((2, 3), key=lambda e: (aucs[e], e))

    # The loop trained (the weights moved from the copied layers), and the student
    # makes the teacher's decisions (a tiny random encoder's single layer already does,
    # so this guards against a loop that diverges, not a measure of quality).
    start = student_from_teacher(teacher.model, [0])
    moved = [
        not torch.equal(a, b)
        for a, b in zip(student.model.parameters(), start.parameters(), strict=True)
    ]
    assert sum(moved) > len(moved) // 2
    probe = synthetic["test"].texts[:64]
    assert _agreement(teacher, student.model, probe) >= 0.9

    model_dir = student.save(tmp_path / "student")
    again = TrainedModel.load(model_dir)
    assert again.model.encoder.config.num_hidden_layers == 1
    man = json.loads((model_dir / "manifest.json").read_text())
    assert man["distilled_from"]["teacher_dir"] == str(teacher_dir.resolve())

    guard_dir = export_onnx(model_dir, tmp_path / "guard", int8=True, valid=synthetic["valid"])
    guard = Guard.load(guard_dir, provider="cpu", precision="fp32")
    text = synthetic["test"].texts[0]
    result = guard.check(text)
    want = again.predict_proba([text])[0]
    got = [result.scores[c] for c in again.schema.classes]
    assert np.allclose(got, want, atol=1e-4)
    assert guard.artifact.manifest.calibration is not None  # calibrated on valid


def test_distill_refuses_other_classes(tiny_model_dir: Path, synthetic) -> None:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.data.schema import LabelSchema

    other = AnnotatedDataset([], LabelSchema(classes=("a", "b"), safe=("a",)))
    with pytest.raises(ConfigError, match="classes"):
        distill(tiny_model_dir, ["x"], other, DistillConfig(layers=1, progress=False))
