"""The int8 gate (issue 10, item 4): decisions at the operating point, on real data.

Unit tests of ``export.gate`` on synthetic logits (exact flip counts), then the gate
through ``Validator`` / ``quantize_gated`` / the CLI on the tiny random model (real ONNX
Runtime sessions, real quantized graphs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.gate import GATE_PROBES, GATE_VALIDATION, int8_gate, toxic_decision
from export.spec import Tolerances
from export.validate import ParityReport

SAFE = (True, False, False)  # class 0 safe, two toxic classes


def _logits(blocked: np.ndarray) -> np.ndarray:
    """Logits whose toxic score is 0.9 where ``blocked``, 0.1 elsewhere."""
    out = np.zeros((len(blocked), 3), np.float32)
    out[:, 0] = np.where(blocked, -2.0, 2.0)
    out[:, 1] = np.where(blocked, 0.5, -1.0)
    return out


def _flip(blocked: np.ndarray, idx) -> np.ndarray:
    out = blocked.copy()
    out[idx] = ~out[idx]
    return out


def _gate(fp32: np.ndarray, variant: np.ndarray, valid=None) -> ParityReport:
    report = ParityReport()
    int8_gate(report, valid, fp32, variant, toxic_decision(SAFE), Tolerances(), "texts")
    return report


@pytest.mark.parametrize(("flips", "ok"), [(0, True), (10, True), (11, False), (40, False)])
def test_gate_fails_when_more_than_one_percent_of_decisions_flip(flips: int, ok: bool) -> None:
    blocked = np.arange(1000) % 3 == 0
    report = _gate(_logits(blocked), _logits(_flip(blocked, np.arange(flips) * 7)))
    assert report.ok is ok, report.mismatches
    assert report.stats["int8"]["decision_flips"] == flips
    assert report.stats["int8"]["decision_agreement"] == pytest.approx(1 - flips / 1000)
    if not ok:
        (m,) = report.mismatches
        assert m.check == "decision agreement with fp32 (blocked or not)" and m.limit == 0.99
        assert f"{flips} of 1000 texts changed decision" in m.detail


def test_class_flips_between_toxic_classes_are_recorded_not_gated() -> None:
    blocked = np.arange(200) % 2 == 0
    fp32 = _logits(blocked)
    swapped = fp32.copy()
    swapped[blocked, 1], swapped[blocked, 2] = -1.0, 0.5  # argmax changes, decision does not
    report = _gate(fp32, swapped)
    assert report.ok
    assert report.stats["int8"]["argmax_agreement"] == pytest.approx(0.5)
    assert report.stats["int8"]["decision_agreement"] == 1.0


def test_gate_uses_the_operating_point_not_the_argmax() -> None:
    # Scores 0.45 vs 0.55 straddle a 0.5 threshold: every decision flips, argmax does not.
    fp32 = np.log(np.array([[0.55, 0.45, 1e-9]] * 100, np.float32))
    variant = np.log(np.array([[0.45, 0.55, 1e-9]] * 100, np.float32))
    report = ParityReport()
    int8_gate(report, None, fp32, variant, toxic_decision(SAFE, 0.5), Tolerances(), "texts")
    assert not report.ok and report.stats["int8"]["decision_agreement"] == 0.0
    report = ParityReport()  # at a 0.6 operating point both allow every text
    int8_gate(report, None, fp32, variant, toxic_decision(SAFE, 0.6), Tolerances(), "texts")
    assert report.ok and report.stats["int8"]["decision_agreement"] == 1.0


def test_worst_group_drop_fails_even_when_few_decisions_flip(synthetic) -> None:
    valid = synthetic["valid"]  # 400 texts, gold and groups
    safe = np.array(valid.schema.safe_mask())
    gold_toxic = ~safe[valid.gold_array()]
    groups = valid.group_array()
    fp32 = np.zeros((len(valid), valid.schema.num_classes), np.float32)
    fp32[np.arange(len(valid)), valid.gold_array()] = 4.0  # fp32 decides every text right
    # int8 gets 4 texts (1%) of one group wrong: agreement passes, that group loses > 1 point
    members = np.flatnonzero(groups == 0)[:4]
    variant = fp32.copy()
    for i in members:
        variant[i] = 0.0
        variant[i, 0 if gold_toxic[i] else 1] = 4.0  # class 0 is safe, class 1 toxic
    report = ParityReport()
    decide = toxic_decision(valid.schema.safe_mask())
    int8_gate(report, valid, fp32, variant, decide, Tolerances(), "validation texts")
    assert [m.check for m in report.mismatches] == ["binary worst-group accuracy drop vs fp32"]
    stats = report.stats["int8"]
    assert stats["decision_agreement"] == 0.99
    assert stats["fp32_binary_worst_group_accuracy"] == 1.0
    assert stats["binary_worst_group_accuracy_drop"] == pytest.approx(4 / np.sum(groups == 0))
    report = ParityReport()  # identical decisions: nothing dropped
    int8_gate(report, valid, fp32, fp32.copy(), decide, Tolerances(), "validation texts")
    assert report.ok and report.stats["int8"]["binary_worst_group_accuracy_drop"] == 0.0


def test_decide_must_return_one_bool_per_text() -> None:
    from guardrail_dro.errors import ConfigError

    report = ParityReport()
    fp32 = _logits(np.zeros(5, bool))
    with pytest.raises(ConfigError, match=r"bool array of shape \(5,\)"):
        int8_gate(report, None, fp32, fp32, lambda lg: lg[:, 0], Tolerances(), "texts")


def test_schema_without_safe_class_decides_on_any_class() -> None:
    decide = toxic_decision((False, False))
    assert decide(np.log(np.array([[0.6, 0.4], [0.5, 0.5]]))).tolist() == [True, True]
    assert toxic_decision((False, False), 0.7)(np.log(np.array([[0.6, 0.4]]))).tolist() == [False]


# --- through the Validator, on the tiny random model ------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    pytest.importorskip("onnxruntime")
    from guardrail_dro.train.modeldir import TrainedModel

    return TrainedModel.load(tiny_model_dir)


def test_validator_gates_on_its_decide(trained, tiny_export, tmp_path, synthetic) -> None:
    from export.validate import Validator
    from tests.export.test_export_onnx import _constant_model

    valid = synthetic["valid"]
    fp32 = tiny_export["guard"] / "model.onnx"
    k = trained.schema.num_classes
    toxic_const = _constant_model(tmp_path / "toxic.onnx", k, k - 1)  # blocks every text
    check = Validator(trained, fp32, valid=valid)
    blocked32 = check.blocked(check.reference_per_row)
    report = check.check_variant("int8", toxic_const)
    assert not report.ok and report.gates == {"int8": GATE_VALIDATION}
    assert report.stats["int8"]["decision_agreement"] == pytest.approx(blocked32.mean())
    assert report.stats["int8"]["gate_texts"] == len(valid)
    # A guard that never blocks decides alike for both: the gate follows ``decide``.
    check.decide = lambda logits: np.zeros(len(logits), dtype=bool)
    assert check.check_variant("int8", toxic_const).stats["int8"]["decision_agreement"] == 1.0
    # fp32 against itself, each text alone: identical decisions.
    check.decide = None
    same = check.check_variant("int8", fp32)
    assert same.ok and same.stats["int8"]["decision_agreement"] == 1.0


def test_without_validation_data_the_gate_says_it_was_weak(trained, tiny_export) -> None:
    from export.validate import Validator

    check = Validator(trained, tiny_export["guard"] / "model.onnx")
    report = check.check_variant("int8", tiny_export["guard"] / "model.int8.onnx")
    assert report.gates == {"int8": GATE_PROBES}
    assert any("int8 gate was WEAK" in n and "--valid" in n for n in report.notes)
    assert "binary_worst_group_accuracy_drop" not in report.stats["int8"]


def test_a_small_validation_split_makes_a_weak_gate_too(trained, tiny_export, synthetic) -> None:
    from export.gate import MIN_GATE_TEXTS
    from export.validate import Validator

    guard = tiny_export["guard"]
    for n, weak in ((12, True), (MIN_GATE_TEXTS, False)):
        valid = synthetic["valid"].subset(range(n))
        check = Validator(trained, guard / "model.onnx", valid=valid)
        report = check.check_variant("int8", guard / "model.int8.onnx")
        assert report.gates == {"int8": GATE_VALIDATION}
        said = [x for x in report.notes if f"{n} validation texts only" in x]
        assert bool(said) is weak and (not weak or "larger --valid" in said[0])


def test_calibration_scores_long_texts_as_the_guard_does(trained, tiny_export) -> None:
    from export.probes import onnx_logits, served_logits
    from export.validate import Validator
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.policy import Policy

    guard_dir = tiny_export["guard"]
    filler = "the weather was mild and the bread was fresh " * 60
    texts = ["short one", filler + "now something else entirely", "a" + filler]
    check = Validator(trained, guard_dir / "model.onnx")
    reference = onnx_logits(check.fp32, trained.tokenizer, texts, trained.manifest.max_length)
    safe = np.asarray(trained.schema.safe_mask(), dtype=bool)
    served = served_logits(check.fp32, trained.tokenizer, texts, trained.manifest.max_length,
                           reference, safe)  # fmt: skip
    harmful = [c for c, s in zip(trained.schema.classes, safe, strict=True) if not s]
    off = {c: 1.0 for c in harmful}  # only the toxic score decides
    guard = Guard.load(guard_dir, provider="cpu", precision="fp32",
                       policy=Policy(thresholds=off, max_windows=None, max_chars=None))  # fmt: skip
    results = guard.check_many(texts)
    assert results[0].windows == 1 and np.array_equal(served[0], reference[0])
    def toxic(row: np.ndarray) -> float:
        return float(1 - np.exp(row - np.logaddexp.reduce(row))[safe].sum())

    for r, row in zip(results[1:], served[1:], strict=True):
        assert r.windows > 1  # long: the guard's worst window is what calibration reads
        assert r.toxic_score == pytest.approx(toxic(row), abs=1e-4)
    # the first window alone (what calibration read before) is not what the guard decides
    assert any(abs(r.toxic_score - toxic(row)) > 1e-3
               for r, row in zip(results[1:], reference[1:], strict=True))  # fmt: skip
    # The int8 gate's fp32 side decides each text as the guard at its thresholds does.
    from export.thresholds import decision_function
    from guardrail_dro.serve.artifact import load_artifact

    check.texts = texts
    check.decide = decision_function(trained.schema, load_artifact(guard_dir).manifest.thresholds)
    served_guard = Guard.load(guard_dir, provider="cpu", precision="fp32")
    per_row = check.reference_per_row
    assert check.blocked(per_row).tolist() == [
        not r.allowed for r in served_guard.check_many(texts)
    ]
    for r, row in zip(results, per_row, strict=True):
        assert r.toxic_score == pytest.approx(toxic(row), abs=1e-4)


def test_cli_export_without_valid_marks_the_gate_weak(tiny_model_dir, tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from guardrail_dro.cli.export import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    guard = tmp_path / "guard"
    result = CliRunner().invoke(
        app, ["export", "--model", str(tiny_model_dir), "--out", str(guard)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "int8 gate was WEAK" in result.output and "--valid" in result.output
    manifest = json.loads((guard / "guard.json").read_text())
    assert manifest["variants"]["int8"]["gate"] == GATE_PROBES
    assert any("WEAK" in n for n in manifest["train"]["parity_notes"])


def test_cli_export_notes_a_small_valid(tiny_model_dir, synthetic, tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from guardrail_dro.cli.export import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    small = tmp_path / "small.jsonl"
    synthetic["valid"].subset(range(40)).save_jsonl(small)
    result = CliRunner().invoke(app, ["export", "--model", str(tiny_model_dir), "--out",
                                      str(tmp_path / "g"), "--valid", str(small)])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    said = " ".join(result.output.split())
    assert "has 40 texts (under 100): the operating point chosen on it" in said
    assert "int8 gate was WEAK: 40 validation texts only" in said  # printed, not only stored
    valid = synthetic["valid"]
    safe = [i for i, g in enumerate(valid.gold_array()) if valid.schema.classes[g] in
            valid.schema.safe]  # fmt: skip
    valid.subset(safe).save_jsonl(small)  # a split of safe texts only: refused up front
    result = CliRunner().invoke(app, ["export", "--model", str(tiny_model_dir), "--out",
                                      str(tmp_path / "g2"), "--valid", str(small)])  # fmt: skip
    said = " ".join(result.output.split()) + repr(result.exception)
    assert result.exit_code != 0 and "needs toxic and safe texts" in said
    assert "converting" not in said and not (tmp_path / "g2").exists()


def test_export_with_valid_records_the_validation_gate(tiny_export) -> None:
    manifest = json.loads((tiny_export["guard"] / "guard.json").read_text())
    int8 = manifest["variants"]["int8"]
    assert int8["gate"] == GATE_VALIDATION and "WEAK" not in tiny_export["output"]
    assert int8["parity"]["decision_agreement"] >= 0.99
    assert int8["parity"]["binary_worst_group_accuracy_drop"] <= 0.01
    assert int8["parity"]["gate_texts"] == 400
    assert manifest["train"]["int8_recipe"] in {r.name for r in _recipes()}


# --- the recipes ------------------------------------------------------------------------


def _recipes():
    from export.quantize import INT8_RECIPES

    return INT8_RECIPES


def test_recipe_list_holds_the_measured_passing_recipes() -> None:
    from export.quantize import CANDIDATE_RECIPES, INT8_RECIPES

    assert INT8_RECIPES and set(INT8_RECIPES) <= set(CANDIDATE_RECIPES)
    assert len({r.name for r in CANDIDATE_RECIPES}) == len(CANDIDATE_RECIPES)
    # the fast dynamic recipe first (it passes where margins allow), then the blockwise
    # ones that passed the gate on toxic-questions where every dynamic recipe failed
    assert INT8_RECIPES[0].method == "dynamic" and INT8_RECIPES[0].per_channel
    assert [r.method for r in INT8_RECIPES[1:]] == ["blockwise", "blockwise"]
    assert all(r.int8_compute for r in INT8_RECIPES[1:])


@pytest.mark.parametrize("recipe", _recipes(), ids=lambda r: r.name)
def test_each_recipe_quantizes_and_is_batch_invariant(tiny_export, tmp_path, recipe) -> None:
    import onnx

    from export.quantize import quantize_int8
    from guardrail_dro.serve.runtime import create_session

    fp32 = tiny_export["guard"] / "model.onnx"
    dst = quantize_int8(fp32, tmp_path / "int8.onnx", recipe)
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    if recipe.method == "dynamic":
        # activations quantized per run with one scale: not batch invariant by itself,
        # which is why OnnxScorer scores int8 one row at a time
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"} and "MatMulNBits" not in ops
        return
    assert "MatMulNBits" in ops and "MatMul" not in ops
    sess = create_session(dst, provider="cpu", intra_op_threads=1)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 2000, size=(4, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1:, 7:] = 0  # rows 1-3 padded in the batch
    batch = sess.run(ids, mask)
    for i in range(4):
        n = int(mask[i].sum())
        alone = sess.run(ids[i : i + 1, :n], mask[i : i + 1, :n])
        np.testing.assert_allclose(batch[i], alone[0], atol=1e-4)


def test_unknown_recipe_method_is_a_clear_error(tiny_export, tmp_path) -> None:
    from export.quantize import Int8Recipe, quantize_int8
    from guardrail_dro.errors import ConfigError

    bad = Int8Recipe("x", method="static")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown int8 method 'static'"):
        quantize_int8(tiny_export["guard"] / "model.onnx", tmp_path / "x.onnx", bad)


def test_quantize_gated_keeps_the_first_recipe_that_passes(trained, tiny_export, tmp_path):
    from export.quantize import INT8_RECIPES, quantize_gated
    from export.validate import Validator

    check = Validator(trained, tiny_export["guard"] / "model.onnx")
    steps: list[str] = []
    kept, report = quantize_gated(
        tiny_export["guard"] / "model.onnx",
        Path(tmp_path / "int8.onnx"),
        check,
        steps.append,
        first_only=False,
    )
    assert kept == INT8_RECIPES[0].name and report.ok, report.mismatches
    assert steps == [f"quantizing to int8 ({INT8_RECIPES[0].name})"]
