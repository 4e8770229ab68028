"""Export + parity of the tiny random model (real ONNX Runtime sessions, no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def test_cli_export_writes_every_variant_with_parity_numbers(tiny_export) -> None:
    guard = tiny_export["guard"]
    manifest = json.loads((guard / "guard.json").read_text())
    assert set(manifest["variants"]) == {"fp32", "int8", "fp16"}
    for f in ("model.onnx", "model.int8.onnx", "model.fp16.onnx", "tokenizer.json"):
        assert (guard / f).is_file() and f in manifest["files"]
    fp32 = manifest["variants"]["fp32"]["parity"]
    assert fp32["max_abs_diff"] <= 1e-4
    # the lengths recorded are those compared: both ends of the axis, real texts between
    assert (fp32["min_tokens"], fp32["max_tokens"]) == (1, manifest["max_length"])
    assert fp32["distinct_lengths"] >= 5 and fp32["text_max_tokens"] > 2
    int8 = manifest["variants"]["int8"]["parity"]
    assert int8["decision_agreement"] >= 0.99 and int8["binary_worst_group_accuracy_drop"] <= 0.01
    assert manifest["variants"]["int8"]["gate"] == "validation"
    assert manifest["opset"] >= 17 and manifest["versions"]["onnxruntime"]
    assert manifest["train_metrics"]["worst_group_accuracy"] is not None
    assert "fp32" in tiny_export["output"] and "MB" in tiny_export["output"]
    # the digest to pin in Guard.load(manifest_sha256=...) is printed
    assert f"manifest_sha256: {manifest['manifest_sha256']}" in tiny_export["output"]
    assert not list(guard.parent.glob(".guard.tmp-*")), "temporary build directory left behind"


def test_graph_has_dynamic_batch_and_sequence_axes(tiny_export) -> None:
    import onnx

    model = onnx.load(str(tiny_export["guard"] / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"], inp.name
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_serving_path_matches_pytorch(tiny_export, tiny_model_dir: Path, variant: str) -> None:
    """load_artifact + runtime session + tokenizer.json (no transformers) vs PyTorch."""
    from guardrail_dro.serve.artifact import load_artifact
    from guardrail_dro.serve.runtime import create_session
    from guardrail_dro.train.modeldir import TrainedModel

    art = load_artifact(tiny_export["guard"])
    sess = create_session(art.model_path(variant), provider="cpu", intra_op_threads=1)
    tok = art.load_tokenizer()
    texts = ["a", "How do I pick a lock?", "word " * 400]
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    assert ids.shape[1] == art.manifest.max_length  # the long text is truncated
    logits = sess.run(ids, mask)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    ref = TrainedModel.load(tiny_model_dir).predict_proba(texts)
    atol = 1e-5 if variant == "fp32" else 0.05
    np.testing.assert_allclose(probs, ref, atol=atol)
    if variant == "fp32":
        assert (probs.argmax(1) == ref.argmax(1)).all()


def _constant_model(path: Path, num_classes: int, label: int, height: float = 5.0) -> Path:
    """A graph that ignores its input and always says ``label``: a broken variant."""
    import onnx
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])
    row = helper.make_tensor(
        "row",
        TensorProto.FLOAT,
        [1, num_classes],
        [height * (k == label) for k in range(num_classes)],
    )
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["m"], ["col"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["col", "row"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "constant", [ids, mask], [out], initializer=[row])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def test_parity_failure_lists_every_mismatch(
    tiny_export, tiny_model_dir, synthetic, tmp_path
) -> None:
    from export.gate import toxic_decision
    from export.spec import Tolerances
    from export.validate import ExportParityError, Validator, merge
    from guardrail_dro.errors import ArtifactError
    from guardrail_dro.train.modeldir import TrainedModel

    trained = TrainedModel.load(tiny_model_dir)
    valid = synthetic["valid"]
    safe = np.asarray(trained.schema.safe_mask())
    toxic = ~safe[valid.gold_array()]
    groups = valid.group_array(tuple(trained.manifest.groups))
    threshold = json.loads((tiny_export["guard"] / "guard.json").read_text())["thresholds"]
    threshold = float(threshold["toxic"])

    def worst(blocked: bool) -> float:
        return min(((toxic == blocked)[groups == k]).mean() for k in set(groups) if k >= 0)

    # A constant model (always block, or always allow: whichever has the lower worst
    # group) differs from fp32 on many decisions and costs binary worst-group accuracy
    # at the guard's calibrated threshold (height 40: a toxic score of ~1 or ~0).
    block = worst(True) < worst(False)
    const = int(np.nonzero(~safe if block else safe)[0][0])
    broken = _constant_model(tmp_path / "int8.onnx", trained.schema.num_classes, const, 40.0)
    v = Validator(
        trained,
        tiny_export["guard"] / "model.onnx",
        valid=valid,
        tolerances=Tolerances(fp32_max_abs_diff=1e-12),
        decide=toxic_decision(trained.schema.safe_mask(), threshold),
    )
    report = merge(v.check_fp32(), v.check_variant("int8", broken))
    checks = sorted((m.variant, m.check) for m in report.mismatches)
    assert checks == [
        ("fp32", "max abs logit diff vs PyTorch"),
        ("int8", "binary worst-group accuracy drop vs fp32"),
        ("int8", "decision agreement with fp32 (blocked or not)"),
    ]
    with pytest.raises(ExportParityError) as info:
        report.raise_for_mismatches()
    assert isinstance(info.value, ArtifactError) and len(info.value.mismatches) == 3
    assert "3 mismatch(es)" in str(info.value) and "limit 0.99" in str(info.value)


def test_unchecked_fp16_fails_unless_opted_in(tiny_export, tiny_model_dir, tmp_path) -> None:
    from export.validate import UNCHECKED, ExportParityError, validate_export
    from guardrail_dro.train.modeldir import TrainedModel

    trained = TrainedModel.load(tiny_model_dir)
    fp16 = tmp_path / "model.fp16.onnx"
    fp16.write_bytes(b"a graph the CPU provider cannot run")  # as a GPU-only graph fails
    variants = {"fp32": tiny_export["guard"] / "model.onnx", "fp16": fp16}
    report = validate_export(trained, tiny_export["guard"], variants)
    assert [(m.variant, m.check) for m in report.mismatches] == [("fp16", UNCHECKED)]
    with pytest.raises(ExportParityError, match="fp16: parity not measured.*--allow-unchecked"):
        report.raise_for_mismatches()
    opted = validate_export(trained, tiny_export["guard"], variants, allow_unchecked={"fp16"})
    assert opted.ok and "fp16" in opted.unchecked and "fp16" not in opted.stats


def test_failed_export_writes_nothing(tiny_model_dir, tmp_path) -> None:
    from export.onnx import export_onnx
    from export.spec import Tolerances
    from export.validate import ExportParityError

    out = tmp_path / "guard"
    with pytest.raises(ExportParityError, match="fp32: max abs logit diff"):
        export_onnx(
            tiny_model_dir,
            out,
            int8=False,
            optimize=False,
            tolerances=Tolerances(fp32_max_abs_diff=1e-12),
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_non_empty_out_dir_is_refused(tiny_model_dir, tmp_path) -> None:
    from export.onnx import export_onnx
    from guardrail_dro.errors import ConfigError

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty.*--overwrite"):
        export_onnx(tiny_model_dir, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_validation_split_with_other_classes_is_refused(tiny_model_dir, tmp_path) -> None:
    from export.onnx import export_onnx
    from guardrail_dro.data.items import AnnotatedDataset, Item
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.errors import ConfigError

    schema = LabelSchema(classes=("x", "y"))
    valid = AnnotatedDataset([Item(item_id="1", text="t", gold="x")], schema)
    with pytest.raises(ConfigError, match="validation data's classes"):
        export_onnx(tiny_model_dir, tmp_path / "g", valid=valid)


def test_a_hidden_layer_head_exports_and_serves_its_own_scores(
    tiny_model_dir: Path, synthetic, tmp_path: Path
) -> None:
    """A model with a non-linear head (``head_hidden``, what the quickstart trains) goes
    through export and ``Guard`` with the scores PyTorch gives it: the hidden layer is in
    the graph, not dropped for the linear head's shape."""
    import torch

    from export.onnx import export_onnx
    from guardrail_dro import Guard
    from guardrail_dro.train.model import ClassifierHead, GuardClassifier
    from guardrail_dro.train.modeldir import TrainedModel

    base = TrainedModel.load(tiny_model_dir)
    torch.manual_seed(3)
    head = ClassifierHead(base.model.encoder.config.hidden_size, base.schema.num_classes, 16)
    man = base.manifest.model_copy(update={"head_hidden": 16}, deep=True)
    model = GuardClassifier(base.model.encoder, head.eval(), normalize=base.manifest.normalize)
    model_dir = TrainedModel(model, base.tokenizer, base.schema, man).save(tmp_path / "m")
    texts = [it.text for it in list(synthetic["valid"])[:12]]
    probs = TrainedModel.load(model_dir).predict_proba(texts)
    linear = base.predict_proba(texts)
    assert np.abs(probs - linear).max() > 1e-3  # a different head, so a real check
    guard = Guard.load(export_onnx(model_dir, tmp_path / "g", int8=False))
    safe = np.asarray(base.schema.safe_mask())
    got = np.array([r.toxic_score for r in guard.check_many(texts)])
    np.testing.assert_allclose(got, 1 - probs[:, safe].sum(1), atol=1e-5)
