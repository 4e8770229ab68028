"""Thresholds chosen on the validation split at export: written to guard.json, read by
``Guard.load``, overridable by ``Policy(target_recall=...)``; old guard.json files load."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.artifact import load_artifact, manifest_digest
from guardrail_dro.serve.calibration import binary_metrics, toxic_scores
from guardrail_dro.serve.policy import Policy

pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")


def _cli(*args: str):
    import typer
    from typer.testing import CliRunner

    from guardrail_dro.cli.export import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return CliRunner().invoke(app, ["export", *args])


def test_export_writes_the_calibration(tiny_export) -> None:
    man = load_artifact(tiny_export["guard"]).manifest
    cal = man.calibration
    assert cal is not None and cal.calibrated
    assert cal.objective == "worst_group_accuracy" and cal.target is None
    assert cal.items == 400 and cal.split == "valid"
    assert cal.point is not None and cal.curve is not None
    assert man.thresholds.toxic == cal.point.threshold
    assert cal.point.worst_group_accuracy is not None and cal.point.worst_group
    # The stored curve holds the chosen point, so the default objective re-picks it.
    assert cal.curve.choose() == cal.point
    assert 2 <= len(cal.curve) <= 300
    # Per-class thresholds: kept (every non-safe class) or dropped, as measured.
    kept = cal.per_class.startswith("kept")
    assert cal.per_class.startswith(("kept", "dropped"))
    assert bool(man.thresholds.per_class) == kept
    assert "toxic threshold" in tiny_export["output"]  # the export says what it chose


def test_guard_load_reads_the_calibration(tiny_export) -> None:
    from guardrail_dro.serve.guard import Guard

    guard = Guard.load(tiny_export["guard"], provider="cpu", precision="fp32")
    man = guard.artifact.manifest
    assert guard.rule.toxic_threshold == man.thresholds.toxic
    curve = man.calibration.curve
    for target in (0.5, 0.9, 1.0):
        moved = guard.with_policy(Policy(target_recall=target))
        assert moved.rule.toxic_threshold == curve.choose("target_recall", target).threshold
    moved = guard.with_policy(Policy(target_fpr=0.2))
    assert moved.rule.toxic_threshold == curve.choose("target_fpr", 0.2).threshold


def test_stored_point_is_what_the_guard_decides_on_valid(tiny_export, synthetic) -> None:
    """The validation metrics in guard.json are those of the guard's own decisions on
    the validation texts (fp32, one text at a time)."""
    from guardrail_dro.serve.guard import Guard

    guard = Guard.load(tiny_export["guard"], provider="cpu", precision="fp32")
    valid = synthetic["valid"]
    blocked = np.array([not r.allowed for r in guard.check_many(valid.texts)])
    safe = np.array([c in valid.schema.safe for c in valid.schema.classes])
    point = guard.artifact.manifest.calibration.point
    got = binary_metrics(
        blocked,
        ~safe[valid.gold_array()],
        valid.group_array(),
        list(valid.groups),
        threshold=point.threshold,
    )
    assert got.recall == pytest.approx(point.recall, abs=0.01)
    assert got.fpr == pytest.approx(point.fpr, abs=0.02)


def _strip_calibration(d: Path) -> None:
    path = d / "guard.json"
    raw = json.loads(path.read_text())
    raw.pop("calibration")
    raw["manifest_sha256"] = manifest_digest(raw)
    path.write_text(json.dumps(raw))


def test_old_guard_json_without_calibration_loads(guard_copy: Path) -> None:
    from guardrail_dro.serve.guard import Guard

    _strip_calibration(guard_copy)
    art = load_artifact(guard_copy)
    assert art.manifest.calibration is None
    guard = Guard.load(guard_copy, provider="cpu", precision="fp32")
    assert guard.check("hello").label  # it serves, at guard.json's threshold
    assert guard.rule.toxic_threshold == art.manifest.thresholds.toxic
    with pytest.raises(ConfigError, match="lacks"):
        Guard.load(guard_copy, provider="cpu", policy=Policy(target_recall=0.9))


def test_export_without_valid_is_marked_uncalibrated(tiny_model_dir: Path, tmp_path) -> None:
    out = tmp_path / "guard"
    result = _cli("--model", str(tiny_model_dir), "--out", str(out), "--no-int8")
    assert result.exit_code == 0, result.output
    assert "uncalibrated" in result.output
    man = load_artifact(out).manifest
    assert man.calibration is not None and not man.calibration.calibrated
    assert "uncalibrated" in man.calibration.note and man.calibration.curve is None
    assert man.thresholds.toxic == 0.5


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--target-recall", "0.9", "--target-fpr", "0.1"], "one of target_recall"),
        (["--target-recall", "0.9", "--threshold", "0.4"], "one of target_recall"),
        (["--target-recall", "0.9"], "reached on validation data"),
        (["--target-fpr", "0"], r"target_fpr must be in \(0, 1\]"),
    ],
    ids=["recall+fpr", "recall+threshold", "no-valid", "zero"],
)
def test_export_refuses_conflicting_objectives(
    tiny_model_dir: Path, tmp_path, extra: list[str], match: str
) -> None:
    out = tmp_path / "guard"
    result = _cli("--model", str(tiny_model_dir), "--out", str(out), *extra)
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert re.search(match, str(result.exception))
    assert not out.exists()  # refused before any work


def test_export_objective_option(tiny_model_dir: Path, synthetic, tmp_path) -> None:
    """--objective balanced records the balanced objective and its point; a misspelt
    objective is refused before any work."""
    bad = _cli("--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--objective", "f1")
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()
    assert "--objective" in bad.output and "f1" in bad.output
    from export.onnx import export_onnx

    out = export_onnx(
        tiny_model_dir,
        tmp_path / "g",
        int8=False,
        valid=synthetic["valid"],
        objective="worst_group_balanced_accuracy",
    )
    cal = load_artifact(out).manifest.calibration
    assert cal is not None and cal.objective == "worst_group_balanced_accuracy"
    assert cal.point is not None and cal.point.worst_group_balanced_accuracy is not None
    assert cal.curve is not None and cal.curve.worst_group_balanced_accuracy
    best = max(cal.curve.worst_group_balanced_accuracy)
    assert cal.point.worst_group_balanced_accuracy == pytest.approx(best)


# ---- export.thresholds on hand-made logits ----------------------------------------------


def _logits(probs) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))


@pytest.fixture()
def three_class():
    """Two texts: a toxic one with its mass on one class (toxic score 0.6, P(a) 0.6)
    and a safe one spread over two classes (toxic score 0.7, each 0.35). The toxic
    score alone cannot block the first without the second; class a's own threshold can."""
    from guardrail_dro.data.items import AnnotatedDataset, Item
    from guardrail_dro.data.schema import LabelSchema

    schema = LabelSchema(classes=("safe", "a", "b"), safe=("safe",))
    items = [
        Item(item_id="t", text="toxic one", gold="a", group="g"),
        Item(item_id="s", text="safe one", gold="safe", group="g"),
    ]
    data = AnnotatedDataset(items=items, schema=schema, name="hand")
    logits = _logits([[0.4, 0.6, 1e-9], [0.3, 0.35, 0.35]])
    return schema, data, logits


def test_per_class_kept_when_it_helps(three_class) -> None:
    from export.thresholds import calibrate, decision_function

    schema, data, logits = three_class
    thresholds, cal = calibrate(logits, data, schema)
    assert cal.per_class.startswith("kept")
    assert thresholds.per_class and set(thresholds.per_class) == {"a", "b"}
    assert cal.point.accuracy == 1.0
    blocked = decision_function(schema, thresholds)(logits)
    assert blocked.tolist() == [True, False]


def test_per_class_dropped_when_it_does_not_help(three_class) -> None:
    from export.thresholds import calibrate, decision_function

    schema, data, _ = three_class
    logits = _logits([[0.2, 0.4, 0.4], [0.9, 0.05, 0.05]])  # the toxic score separates
    thresholds, cal = calibrate(logits, data, schema)
    assert cal.per_class.startswith("dropped") and thresholds.per_class == {}
    assert decision_function(schema, thresholds)(logits).tolist() == [True, False]
    assert 1 - 0.9 < thresholds.toxic <= 0.8


def test_decision_function_is_the_guard_rule_at_the_point(synthetic) -> None:
    """Random logits on the synthetic valid split: the decisions the int8 gate checks are
    exactly toxic score >= threshold, and reproduce the recorded validation point."""
    from export.thresholds import calibrate, decision_function

    valid = synthetic["valid"]
    schema = valid.schema
    rng = np.random.default_rng(0)
    safe = np.array([c in schema.safe for c in schema.classes])
    gold = valid.gold_array()
    logits = rng.normal(size=(len(valid), len(schema.classes)))
    logits[np.arange(len(valid)), gold] += 1.5  # informative, not perfect
    for kwargs in ({}, {"target_recall": 0.9}, {"target_fpr": 0.2}, {"threshold": 0.6}):
        thresholds, cal = calibrate(logits, valid, schema, **kwargs)
        blocked = decision_function(schema, thresholds)(logits)
        if not thresholds.per_class:
            assert (blocked == (toxic_scores(logits, safe) >= thresholds.toxic)).all()
        got = binary_metrics(blocked, ~safe[gold], valid.group_array(), list(valid.groups))
        assert (got.recall, got.fpr, got.accuracy) == pytest.approx(
            (cal.point.recall, cal.point.fpr, cal.point.accuracy)
        ), kwargs
        assert got.worst_group_accuracy == pytest.approx(cal.point.worst_group_accuracy)
    assert cal.objective == "fixed" and cal.point.threshold == 0.6


def test_export_sets_the_gate_decision(tiny_model_dir: Path, synthetic, tmp_path, monkeypatch):
    """``export_onnx`` hands the int8 gate the guard's decision at the chosen point."""
    import export.onnx as onnx_mod
    from export.thresholds import decision_function

    seen = {}
    real = onnx_mod.quantize_gated

    def spy(fp32, dst, check, say, *, first_only):
        seen["decide"], seen["logits"] = check.decide, check.reference
        return real(fp32, dst, check, say, first_only=first_only)

    monkeypatch.setattr(onnx_mod, "quantize_gated", spy)
    out = onnx_mod.export_onnx(
        tiny_model_dir, tmp_path / "g", valid=synthetic["valid"], target_recall=0.8
    )
    man = load_artifact(out).manifest
    expected = decision_function(man.label_schema, man.thresholds)(seen["logits"])
    assert seen["decide"] is not None
    assert (seen["decide"](seen["logits"]) == expected).all()
    assert man.calibration.objective == "target_recall" and man.calibration.point.recall >= 0.8


# ---- guardrail-dro evaluate --guard -----------------------------------------------------


def _run(*args: str):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "guardrail_dro", *args]
    env = {**os.environ, "COLUMNS": "200"}  # a wide table: one line per row
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_evaluate_guard_prints_the_binary_metrics(tiny_export, valid_jsonl: Path, tmp_path):
    """On the split it was calibrated on, the guard's own fp32 decisions reproduce the
    validation point guard.json recorded."""
    out = tmp_path / "m.json"
    guard = str(tiny_export["guard"])
    r = _run(
        "evaluate", "--guard", guard, "--test", str(valid_jsonl), "--precision", "fp32",
        "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    for column in ("threshold", "precision", "recall", "FPR", "binary acc", "worst group"):
        assert column in r.stdout
    assert "valid (guard.json)" in r.stdout and "ROC AUC" in r.stdout
    said = " ".join(r.stderr.split())
    assert "is the split this guard's operating point was chosen on" in said
    got = json.loads(out.read_text())
    stored = load_artifact(guard).manifest.calibration.point
    assert got["point"]["threshold"] == stored.threshold
    assert got["point"]["recall"] == pytest.approx(stored.recall, abs=0.01)
    assert got["point"]["fpr"] == pytest.approx(stored.fpr, abs=0.02)
    assert got["valid_point"] == stored.model_dump()
    assert 0 <= got["roc_auc"] <= 1

    # A policy target moves the point along the stored curve.
    r = _run(
        "evaluate", "--guard", guard, "--test", str(valid_jsonl), "--precision", "fp32",
        "--target-recall", "1.0", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    curve = load_artifact(guard).manifest.calibration.curve
    other = tmp_path / "other.jsonl"  # another split: no such note
    other.write_text("".join(valid_jsonl.read_text().splitlines(keepends=True)[:50]))
    r = _run("evaluate", "--guard", guard, "--test", str(other), "--precision", "fp32")
    assert r.returncode == 0 and "operating point was chosen on" not in r.stderr, r.stderr
    assert got["point"]["threshold"] == curve.choose("target_recall", 1.0).threshold
    assert got["point"]["recall"] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "m", "--guard", "g"], "exactly one of --model and --guard"),
        ([], "exactly one of --model and --guard"),
        (["--model", "m", "--target-recall", "0.9"], "take a --guard"),
    ],
    ids=["both", "neither", "target-without-guard"],
)
def test_evaluate_refuses_unclear_requests(args: list[str], message: str) -> None:
    r = _run("evaluate", "--test", "toxic-questions:valid", *args)
    assert r.returncode != 0
    assert message in r.stderr


def test_uncalibrated_note_says_what_would_calibrate(three_class) -> None:
    """Given --valid, the note must not ask for --valid: it names what is missing."""
    from export.thresholds import calibrate
    from guardrail_dro.data.items import AnnotatedDataset, Item
    from guardrail_dro.data.schema import LabelSchema

    _, data, logits = three_class
    no_safe = LabelSchema(classes=("safe", "a", "b"))
    items = [it.model_copy() for it in data.items]
    _, cal = calibrate(logits, AnnotatedDataset(items=items, schema=no_safe, name="x"), no_safe)
    assert not cal.calibrated and "no safe class" in cal.note
    assert "--safe" in cal.note and "--valid" not in cal.note
    unlabelled = [Item(item_id=it.item_id, text=it.text, group=it.group) for it in data.items]
    schema = data.schema
    _, cal = calibrate(logits, AnnotatedDataset(items=unlabelled, schema=schema, name="y"), schema)
    assert "no gold labels" in cal.note and "--gold-col" in cal.note


@pytest.fixture()
def trigger_floor():
    """Three toxic texts with their mass on one class (toxic score 0.55, P(a) 0.55), a
    safe one alike and a safe one spread (toxic score 0.7). Class a's own threshold is
    the only way to block the toxic texts without the spread one, and it blocks the
    like one at any toxic threshold: best accuracy with it, an FPR floor of 0.5."""
    from guardrail_dro.data.items import AnnotatedDataset, Item
    from guardrail_dro.data.schema import LabelSchema

    schema = LabelSchema(classes=("safe", "a", "b"), safe=("safe",))
    gold = ["a", "a", "a", "safe", "safe"]
    items = [Item(item_id=f"i{k}", text=f"t{k}", gold=g, group="g") for k, g in enumerate(gold)]
    data = AnnotatedDataset(items=items, schema=schema, name="hand")
    like = [0.45, 0.55, 1e-9]
    logits = _logits([like, like, like, like, [0.3, 0.35, 0.35]])
    return schema, data, logits


def test_a_per_class_threshold_never_puts_a_target_fpr_out_of_reach(trigger_floor) -> None:
    """The per-class threshold the default objective keeps blocks some safe texts
    whatever the toxic threshold: kept at 0.5 on toxic-questions, it put a floor of 0.244
    under valid's FPR, and ``export --target-fpr 0.10`` (README's own example) failed
    with "no threshold reaches FPR <= 0.1"."""
    from export.thresholds import calibrate, decision_function

    schema, data, logits = trigger_floor
    thresholds, cal = calibrate(logits, data, schema)  # the default objective keeps it
    assert cal.per_class.startswith("kept") and cal.point.accuracy == pytest.approx(0.8)
    assert cal.point.fpr == pytest.approx(0.5)

    thresholds, cal = calibrate(logits, data, schema, target_fpr=0.25)
    assert thresholds.per_class == {} and cal.per_class.startswith("dropped")
    assert "leaves no point at FPR <= 0.25" in cal.per_class
    assert cal.objective == "target_fpr" and cal.point.fpr <= 0.25
    assert not decision_function(schema, thresholds)(logits)[3:].any()

    thresholds, cal = calibrate(logits, data, schema, target_fpr=0.5)  # within reach
    assert cal.per_class.startswith("kept") and thresholds.per_class
    assert (cal.point.recall, cal.point.fpr) == pytest.approx((1.0, 0.5))
