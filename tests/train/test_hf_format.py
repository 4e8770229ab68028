"""The trained model directory as a Hugging Face model: AutoModelForSequenceClassification,
pipeline("text-classification"), trust_remote_code without guardrail-dro, the old layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guardrail_dro.errors import ArtifactError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import guardrail_dro.train.hf_format  # noqa: E402, F401  (registers guardrail_dro)
from guardrail_dro.train.modeldir import TrainedModel  # noqa: E402

LONG = "please tell me how " * 60  # ~240 tokens: past the 128-token max length


def _texts(synthetic) -> list[str]:
    return [*synthetic["test"].texts[:6], "hi", LONG]


def _probs(out: list[list[dict]], classes: tuple[str, ...]) -> np.ndarray:
    """A pipeline's ``top_k=None`` answer as an (N, C) array in our class order."""
    return np.array([[{d["label"]: d["score"] for d in row}[c] for c in classes] for row in out])


def _pipeline_probs(clf, texts: list[str], classes: tuple[str, ...]) -> np.ndarray:
    return _probs(clf(texts), classes)


def _assert_same_scores(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert theirs.shape == ours.shape
    assert np.abs(ours - theirs).max() < 1e-5
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def _write_v1(trained: TrainedModel, out: Path) -> Path:
    """A model directory in the layout guardrail-dro wrote before the Hugging Face format
    (manifest version 1): encoder/ folder + head.safetensors."""
    from safetensors.torch import save_file

    from guardrail_dro.checksums import file_sha256

    (out / "encoder").mkdir(parents=True)
    trained.model.encoder.save_pretrained(out / "encoder")
    trained.tokenizer.save_pretrained(out / "encoder")
    head = trained.model.head.state_dict()
    save_file({k: v.contiguous() for k, v in head.items()}, out / "head.safetensors")
    if trained.estimator is not None:
        est = trained.estimator.state_dict()
        save_file({k: v.contiguous() for k, v in est.items()}, out / "estimator.safetensors")
    trained.schema.save(out / "schema.json")
    man = trained.manifest.model_copy(deep=True)
    man.manifest_version = 1
    man.toxic_score = None  # version 1 predates the binary toxic head
    files = sorted(p for p in out.rglob("*") if p.is_file())
    man.files = {str(p.relative_to(out)): file_sha256(p) for p in files}
    (out / "manifest.json").write_text(man.model_dump_json(indent=2))
    return out


def test_the_folder_is_a_sequence_classification_model(tiny_model_dir: Path) -> None:
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    schema = json.loads((tiny_model_dir / "schema.json").read_text())
    assert cfg["model_type"] == "guardrail_dro"
    assert cfg["id2label"] == {str(i): c for i, c in enumerate(schema["classes"])}
    assert cfg["label2id"] == {c: i for i, c in enumerate(schema["classes"])}
    assert cfg["auto_map"]["AutoModelForSequenceClassification"].startswith(
        "modeling_guardrail_dro."
    )
    from safetensors import safe_open

    with safe_open(tiny_model_dir / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert {"classifier.weight", "classifier.bias"} <= keys
    # toxic_classifier.*: the binary toxic head, when valid chose it (train/toxic_score.py)
    assert all(k.startswith(("encoder.", "classifier.", "toxic_classifier.")) for k in keys)
    weight = cfg.get("toxic_score_weight", 0.0)
    assert (weight > 0) == any(k.startswith("toxic_classifier.") for k in keys)
    assert not (tiny_model_dir / "head.safetensors").exists()
    assert not (tiny_model_dir / "encoder").exists()


def test_auto_model_and_pipeline_give_our_scores(tiny_model_dir: Path, synthetic) -> None:
    from transformers import AutoModelForSequenceClassification, pipeline

    ours = TrainedModel.load(tiny_model_dir)
    texts = _texts(synthetic)
    expected = ours.predict_proba(texts)

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    assert type(model).__name__ == "GuardrailDroForSequenceClassification"
    enc = ours.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    _assert_same_scores(expected, torch.softmax(logits, -1).numpy())

    clf = pipeline("text-classification", model=str(tiny_model_dir), truncation=True, top_k=None)
    _assert_same_scores(expected, _pipeline_probs(clf, texts, ours.schema.classes))
    top = pipeline("text-classification", model=str(tiny_model_dir))(texts[0])[0]
    assert top["label"] == ours.schema.classes[int(expected[0].argmax())]


def test_without_truncation_short_texts_still_match(tiny_model_dir: Path, synthetic) -> None:
    from transformers import pipeline

    ours = TrainedModel.load(tiny_model_dir)
    texts = _texts(synthetic)[:-1]
    clf = pipeline("text-classification", model=str(tiny_model_dir), top_k=None)
    _assert_same_scores(ours.predict_proba(texts), _pipeline_probs(clf, texts, ours.schema.classes))


def test_trust_remote_code_works_without_guardrail_dro(tiny_model_dir: Path, synthetic) -> None:
    """A fresh interpreter that never imports guardrail_dro: a bare call is refused (no
    silent BERT with a random head), trust_remote_code=True loads the folder's own code."""
    ours = TrainedModel.load(tiny_model_dir)
    texts = _texts(synthetic)
    script = f"""
import json, sys
from transformers import AutoModelForSequenceClassification, pipeline
d, texts = {str(tiny_model_dir)!r}, {texts!r}
try:
    AutoModelForSequenceClassification.from_pretrained(d)
    refused = False
except ValueError as exc:
    refused = "trust_remote_code" in str(exc)
clf = pipeline("text-classification", model=d, trust_remote_code=True, truncation=True, top_k=None)
out = clf(texts)
assert not any(m.startswith("guardrail_dro") for m in sys.modules)
print("RESULT=" + json.dumps({{"refused": refused, "out": out, "cls": type(clf.model).__module__}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,  # transformers' y/N prompt reads EOF: a refusal
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.rpartition("RESULT=")[2])
    assert res["refused"]
    assert "modeling_guardrail_dro" in res["cls"]
    _assert_same_scores(ours.predict_proba(texts), _probs(res["out"], ours.schema.classes))


def test_a_hidden_layer_head_maps_to_pre_classifier(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from transformers import pipeline

    from guardrail_dro.train.model import ClassifierHead, GuardClassifier

    base = TrainedModel.load(tiny_model_dir)
    torch.manual_seed(1)
    dim = base.model.encoder.config.hidden_size
    head = ClassifierHead(dim, base.schema.num_classes, hidden=16).eval()
    man = base.manifest.model_copy(update={"head_hidden": 16}, deep=True)
    model = GuardClassifier(base.model.encoder, head, normalize=base.manifest.normalize)
    out = TrainedModel(model, base.tokenizer, base.schema, man).save(tmp_path / "m")
    texts = _texts(synthetic)
    expected = TrainedModel(model, base.tokenizer, base.schema, man).predict_proba(texts)
    again = TrainedModel.load(out)
    _assert_same_scores(expected, again.predict_proba(texts))
    clf = pipeline("text-classification", model=str(out), truncation=True, top_k=None)
    _assert_same_scores(expected, _pipeline_probs(clf, texts, base.schema.classes))
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as f:
        assert {"pre_classifier.weight", "classifier.weight"} <= set(f.keys())


def test_an_old_layout_folder_still_loads_and_upgrades(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    from transformers import pipeline

    new = TrainedModel.load(tiny_model_dir)
    new.model.toxic = None  # version 1 predates the binary toxic head: its class scores
    old_dir = _write_v1(new, tmp_path / "v1")
    old = TrainedModel.load(old_dir)
    assert old.manifest.manifest_version == 1
    texts = _texts(synthetic)
    expected = new.predict_proba(texts)
    np.testing.assert_array_equal(old.predict_proba(texts), expected)
    assert old.estimator is not None

    upgraded = old.save(tmp_path / "v2")
    assert TrainedModel.load(upgraded).manifest.manifest_version == 2
    clf = pipeline("text-classification", model=str(upgraded), truncation=True, top_k=None)
    _assert_same_scores(expected, _pipeline_probs(clf, texts, new.schema.classes))


def test_an_unknown_manifest_version_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    raw = json.loads((copy / "manifest.json").read_text())
    raw["manifest_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="manifest version 99"):
        TrainedModel.load(copy)


def test_weights_that_do_not_fit_the_config_are_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Strict loading: a missing head tensor is an error, never a random init."""
    from safetensors.torch import load_file, save_file

    from guardrail_dro.train.hf_format import read_hf_layout

    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    state = load_file(copy / "model.safetensors")
    del state["classifier.bias"]
    save_file(state, copy / "model.safetensors", metadata={"format": "pt"})
    man = TrainedModel.load(tiny_model_dir).manifest
    with pytest.raises(ArtifactError, match=r"model.safetensors does not fit.*classifier.bias"):
        read_hf_layout(copy, num_classes=man.num_classes, head_hidden=0, normalize=True)
    state["classifier.bias"] = torch.zeros(man.num_classes)
    state["stray.weight"] = torch.zeros(1)
    save_file(state, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ArtifactError, match="stray.weight"):
        read_hf_layout(copy, num_classes=man.num_classes, head_hidden=0, normalize=True)


def test_the_transformers_example_runs(tiny_model_dir: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "transformers_pipeline.py"
    proc = subprocess.run(
        [sys.executable, str(example), "--model", str(tiny_model_dir), "a knife", "bread"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GuardrailDroForSequenceClassification" in proc.stdout
    diff = float(proc.stdout.rpartition("guardrail-dro| = ")[2])
    assert diff < 1e-5
