"""``evaluate --guard`` warns of a guard whose decision is close to constant, as
``evaluate --model``, ``train`` and ``bench`` do (``train/collapse.py``).

It had no such warning: a guard that allowed every text of a 90 %-safe split showed
binary accuracy 0.9 and nothing more. The rule is the same; the baseline beside it is
the guard's kind of number, binary accuracy (always allow / always block), not the
class accuracy of the most common of several classes.
"""

from __future__ import annotations

from pathlib import Path

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
    """The synthetic test split's gold toxic / safe and the guard's blocks on it (the
    guard the CLI loads: the same directory, CPU, int8)."""
    test = synthetic["test"]
    toxic = test.gold_array() != test.schema.classes.index("safe")
    blocked = np.array([r.violation for r in guard.decide_many(test.texts)])
    for kind in (toxic, ~toxic):  # the splits below need both decisions on both kinds
        assert blocked[kind].any() and not blocked[kind].all()
    return {"toxic": toxic, "blocked": blocked}


def _evaluate(app: typer.Typer, guard_dir: Path, data: AnnotatedDataset, tmp_path: Path) -> str:
    """``evaluate --guard`` on ``data``: its stderr, on one line."""
    path = tmp_path / f"{data.name}.jsonl"
    data.save_jsonl(path)
    args = ["evaluate", "--guard", str(guard_dir), "--test", str(path)]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output + repr(res.exception)
    return " ".join(res.stderr.split())


def _pick(decided: dict[str, np.ndarray], toxic: int, safe: int, *, blocked: bool) -> list[int]:
    """The first ``toxic`` toxic and ``safe`` safe test items the guard blocks (or allows)."""
    same = decided["blocked"] == blocked
    t = np.flatnonzero(same & decided["toxic"])[:toxic]
    s = np.flatnonzero(same & ~decided["toxic"])[:safe]
    assert len(t) == toxic and len(s) == safe, "the tiny guard decides too few of these"
    return [*t.tolist(), *s.tolist()]


def test_a_guard_that_allows_everything_is_warned_of(
    app, guard_dir, synthetic, decided, tmp_path
) -> None:
    data = synthetic["test"].subset(_pick(decided, 2, 18, blocked=False), name="allowed")
    said = _evaluate(app, guard_dir, data, tmp_path)
    assert f"warning: {guard_dir}: misses most toxic items on test: toxic recall 0.000, " in said
    assert "FPR 0.000 (recall - FPR 0.000; a constant guard scores 0); 10.0% of the" in said
    assert "Always predicting the most common class, 'safe', scores accuracy 0.900" in said
    assert f"on the same items; {guard_dir} scores 0.900" in said


def test_a_guard_that_blocks_everything_is_compared_with_always_blocking(
    app, guard_dir, synthetic, decided, tmp_path
) -> None:
    """Toxic texts of several classes: the constant decision "block" is right on all of
    them (0.8 here), where the most common class alone would be right on fewer."""
    pick = _pick(decided, 8, 2, blocked=True)
    data = synthetic["test"].subset(pick, name="blocked")
    gold = data.gold_array()
    assert np.bincount(gold).max() < 8  # no one toxic class is 80 % of the items
    said = _evaluate(app, guard_dir, data, tmp_path)
    assert "its toxic-vs-safe decision is close to constant on test" in said, said
    assert "toxic recall 1.000, FPR 1.000 (recall - FPR 0.000" in said
    assert "most common class, 'toxic', scores accuracy 0.800" in said
    assert f"{guard_dir} scores 0.800" in said


def test_a_guard_that_tells_toxic_from_safe_gets_no_warning(
    app, guard_dir, synthetic, decided, tmp_path
) -> None:
    right = decided["blocked"] == decided["toxic"]
    data = synthetic["test"].subset(np.flatnonzero(right), name="right")
    assert "warning" not in _evaluate(app, guard_dir, data, tmp_path)


def test_the_rule_is_the_models_on_binary_metrics() -> None:
    """``decision_warning`` is ``collapse_warning`` on the items as toxic or safe, with the
    guard's binary metrics and the recorded validation point beside."""
    from guardrail_dro.data.items import Item
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.serve.calibration import OperatingPoint
    from guardrail_dro.train.collapse import decision_warning

    schema = LabelSchema(classes=("ok", "hate", "spam"), safe=("ok",))
    golds = ["ok"] * 3 + ["hate"] * 4 + ["spam"] * 3
    items = [
        Item(item_id=f"q{i}", text="t", gold=g, group=f"g{i % 2}") for i, g in enumerate(golds)
    ]
    data = AnnotatedDataset(items, schema, name="test")

    def point(recall: float, fpr: float, acc: float) -> OperatingPoint:
        return OperatingPoint(
            threshold=0.5, precision=None, recall=recall, fpr=fpr, accuracy=acc,
            worst_group_accuracy=acc,
        )  # fmt: skip

    valid = point(0.9, 0.1, 0.9)
    line = decision_warning("g", "test", data, point(1.0, 1.0, 0.7), valid=valid)
    assert line is not None and "on valid: toxic recall 0.900, FPR 0.100" in line
    # always blocking is right on the 7 toxic items: 0.700; 'hate' alone would be 0.400
    assert "most common class, 'toxic', scores accuracy 0.700 (worst group" in line
    assert decision_warning("g", "test", data, point(0.2, 0.0, 0.4)) is not None  # recall bar
    assert decision_warning("g", "test", data, point(0.9, 0.1, 0.9)) is None
    safe_only = AnnotatedDataset(items[:3], schema, name="benign")
    blocks_all = OperatingPoint(threshold=0.5, precision=0.0, recall=None, fpr=1.0, accuracy=0.0)
    assert decision_warning("g", "test", safe_only, blocks_all) is None  # no toxic to miss
