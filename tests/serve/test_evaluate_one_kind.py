"""``guardrail-dro evaluate --guard`` on a split of one kind: a file of benign messages
measures the guard's FPR (the share it blocks), a file of attacks its recall; what such a
split cannot measure reads n/a in the table and null in ``--out`` (never NaN, never a
made-up 0 or 1), and a mixed split reads as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from guardrail_dro.cli.train import register
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.serve.guard import Guard

pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by name
    register(app)
    return app


@pytest.fixture(scope="module")
def decided(synthetic, guard: Guard) -> dict[str, np.ndarray]:
    """The synthetic test split's gold toxic / safe and the guard's own blocks on it
    (the guard the CLI loads: the same directory, CPU, int8)."""
    test = synthetic["test"]
    toxic = test.gold_array() != test.schema.classes.index("safe")
    results = guard.decide_many(test.texts)
    blocked = np.array([r.violation for r in results])
    # Each kind's split below must hold blocked and allowed texts to say anything.
    for kind in (toxic, ~toxic):
        assert blocked[kind].any() and not blocked[kind].all()
    return {
        "toxic": toxic,
        "blocked": blocked,
        "scores": np.array([r.toxic_score for r in results]),
    }


def _strict_json(text: str) -> Any:
    def no_constants(name: str) -> None:
        raise AssertionError(f"--out JSON holds {name}: not strict JSON")

    return json.loads(text, parse_constant=no_constants)


def _evaluate(app: typer.Typer, guard_dir: Path, data: AnnotatedDataset, tmp_path: Path):
    path, out = tmp_path / f"{data.name}.jsonl", tmp_path / f"{data.name}.json"
    data.save_jsonl(path)
    args = ["evaluate", "--guard", str(guard_dir), "--test", str(path), "--out", str(out)]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # one line per table row
    assert res.exit_code == 0, res.output + repr(res.exception)
    row = next(line for line in res.stdout.splitlines() if line.startswith("│ test "))
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    columns = ("split", "threshold", "precision", "recall", "FPR", "binary acc")
    return res, dict(zip(columns, cells, strict=False)), _strict_json(out.read_text())


def test_a_split_of_safe_texts_gives_the_fpr(app, guard_dir, synthetic, decided, tmp_path):
    safe = np.flatnonzero(~decided["toxic"])
    data = synthetic["test"].subset(safe, name="benign")
    res, row, got = _evaluate(app, guard_dir, data, tmp_path)
    share = float(decided["blocked"][safe].mean())
    point = got["point"]
    assert point["fpr"] == pytest.approx(share) and point["accuracy"] == pytest.approx(1 - share)
    assert point["precision"] == 0.0  # every blocked text is safe: defined, and 0
    assert point["recall"] is None and got["roc_auc"] is None and got["curve"] is None
    assert row["recall"] == "n/a" and row["FPR"] == f"{share:.3f}"
    assert row["precision"] == "0.000" and row["binary acc"] == f"{1 - share:.3f}"
    assert "toxic ROC AUC n/a on test" in res.stdout
    said = " ".join(res.stderr.split())
    assert "has safe texts only: FPR is the share of them blocked" in said


def test_a_split_of_toxic_texts_gives_the_recall(app, guard_dir, synthetic, decided, tmp_path):
    toxic = np.flatnonzero(decided["toxic"])
    data = synthetic["test"].subset(toxic, name="attacks")
    res, row, got = _evaluate(app, guard_dir, data, tmp_path)
    share = float(decided["blocked"][toxic].mean())
    point = got["point"]
    assert point["recall"] == pytest.approx(share) and point["accuracy"] == pytest.approx(share)
    assert point["precision"] == 1.0  # every blocked text is toxic
    assert point["fpr"] is None and got["roc_auc"] is None and got["curve"] is None
    assert point["worst_group_accuracy"] is not None  # the groups are still measured
    assert row["FPR"] == "n/a" and row["recall"] == f"{share:.3f}" and row["precision"] == "1.000"
    assert "toxic ROC AUC n/a on test" in res.stdout
    said = " ".join(res.stderr.split())
    assert "has toxic texts only: recall is the share of them blocked" in said


@pytest.mark.parametrize("kind", ["toxic", "safe", "both"])
def test_precision_is_na_when_nothing_is_blocked(
    app, guard_dir, synthetic, decided, tmp_path, kind: str
):
    """Texts the guard allows: no blocked text, so no share of them is toxic (it read
    1.0, a perfect score for a guard that did nothing)."""
    toxic, allowed = decided["toxic"], ~decided["blocked"]
    keep = {"toxic": toxic, "safe": ~toxic, "both": np.ones_like(toxic)}[kind] & allowed
    data = synthetic["test"].subset(np.flatnonzero(keep), name=f"allowed-{kind}")
    _, row, got = _evaluate(app, guard_dir, data, tmp_path)
    assert got["point"]["precision"] is None and row["precision"] == "n/a"
    assert got["point"]["recall"] == (None if kind == "safe" else 0.0)
    assert got["point"]["fpr"] == (None if kind == "toxic" else 0.0)


def test_a_mixed_split_reads_as_before(app, guard_dir, synthetic, decided, tmp_path):
    """Every metric a number, as the confusion matrix gives it; the curve and AUC there."""
    from sklearn.metrics import roc_auc_score

    res, row, got = _evaluate(app, guard_dir, synthetic["test"], tmp_path)
    toxic, blocked = decided["toxic"], decided["blocked"]
    tp, fp = int((blocked & toxic).sum()), int((blocked & ~toxic).sum())
    want = {
        "precision": tp / (tp + fp),
        "recall": tp / int(toxic.sum()),
        "fpr": fp / int((~toxic).sum()),
        "accuracy": float((blocked == toxic).mean()),
    }
    assert {k: got["point"][k] for k in want} == pytest.approx(want)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(toxic, decided["scores"]))
    assert got["curve"]["positives"] == int(toxic.sum())
    assert "n/a" not in res.stdout and "only" not in res.stderr
    assert row["precision"] == f"{want['precision']:.3f}" and row["FPR"] == f"{want['fpr']:.3f}"


# ---- what reads an OperatingPoint ---------------------------------------------------------


def test_points_stored_before_load_and_the_none_blocked_one_says_so() -> None:
    """guard.json's calibration as written before (numbers everywhere, precision 1.0 on
    the curve where nothing is blocked) loads; the curve's point there has no precision,
    and the export's line on it says n/a instead of failing on None."""
    from export.thresholds import describe
    from guardrail_dro.serve.calibration import Calibration, operating_curve

    curve = operating_curve(np.array([0.9, 0.6, 0.2, 0.1]), np.array([0, 1, 0, 1]))
    stored = json.loads(curve.model_dump_json())
    assert stored["precision"][0] == 1.0 and stored["recall"][0] == stored["fpr"][0] == 0.0
    old = {"calibrated": True, "objective": "target_fpr", "target": 0.01, "curve": stored}
    old["point"] = {"threshold": stored["threshold"][0], "precision": 1.0, "recall": 0.0,
                    "fpr": 0.0, "accuracy": stored["accuracy"][0]}  # fmt: skip
    cal = Calibration.model_validate(old)
    assert cal.curve is not None and cal.point is not None
    # The top text is safe: FPR <= 0.01 leaves nothing blocked.
    assert cal.curve.choose("target_fpr", 0.01).threshold == cal.point.threshold
    assert cal.point.precision == 1.0  # as stored: a reader need not rewrite the file
    none_blocked = cal.curve.point(0)
    assert none_blocked.precision is None and none_blocked.recall == 0.0
    assert cal.curve.point(1).precision == 0.0  # blocks the 0.9 text: safe
    said = describe(cal.model_copy(update={"point": none_blocked}))
    assert "precision n/a (none blocked)" in said and "recall 0.000, FPR 0.000" in said


@pytest.mark.parametrize(
    ("recall", "fpr", "balanced"),
    [(0.8, 0.2, 0.8), (None, 0.25, 0.75), (0.6, None, 0.6)],
    ids=["both-kinds", "safe-only", "toxic-only"],
)
def test_balanced_accuracy_of_a_one_kind_point(recall, fpr, balanced) -> None:
    from guardrail_dro.serve.calibration import OperatingPoint

    p = OperatingPoint(threshold=0.5, precision=None, recall=recall, fpr=fpr, accuracy=0.7)
    assert p.balanced_accuracy == pytest.approx(balanced)
    assert json.loads(p.model_dump_json())["precision"] is None


def test_the_split_the_point_was_chosen_on_is_not_titled_test(
    app, tiny_model_dir, synthetic, tmp_path: Path
) -> None:
    """Given the validation split its operating point was chosen on, evaluate --guard
    noted "a validation score, not a test" and then titled the table "on test"."""
    from export.onnx import export_onnx

    valid = synthetic["valid"]
    guard_dir = export_onnx(tiny_model_dir, tmp_path / "g", int8=False, valid=valid)
    path = tmp_path / "valid.jsonl"
    valid.save_jsonl(path)
    args = ["evaluate", "--guard", str(guard_dir), "--test", str(path)]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "a validation score, not a test" in " ".join(res.stderr.split())
    assert " on valid" in res.stdout and " on test" not in res.stdout
    assert any(line.startswith("│ valid ") for line in res.stdout.splitlines())
