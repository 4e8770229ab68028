"""Escalation and operating points at their edges: a toxic score rounding below 0, an
option the band overrides, an --out that cannot be written, a partly gold-labelled
validation split."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.escalation import EscalationBand, calibrate_escalation, choose_band
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

LABELS = ("safe", "chat", "toxic")
SCHEMA = LabelSchema(classes=LABELS, safe=("safe", "chat"))


class _LogitScorer(FakeScorer):
    """Fixed logits per keyword: "calm" is so safe, spread over two safe classes, that
    1 - P(safe) rounds to -2.2e-16 in float64 (as a real model's logits can)."""

    ROWS: ClassVar = {"calm": [0.0, 3.0, -50.0], "bad": [0.0, 0.0, 5.0], "unsure": [0.0, 0.0, 0.3]}

    def logits(self, rows):
        out = []
        for row in rows:
            text = "".join(map(chr, row))
            out.append(next((z for k, z in self.ROWS.items() if k in text), [5.0, 0.0, 0.0]))
        return np.array(out, dtype=np.float64)


def _guard(**kw) -> Guard:
    return Guard.from_scorer(
        _LogitScorer(lambda t: {}, labels=LABELS, max_length=16), safe_classes=SCHEMA.safe, **kw
    )


def test_the_toxic_score_never_rounds_below_zero():
    guard = _guard()
    assert guard.decide("calm").toxic_score == 0.0  # one window
    assert guard.decide("calm " * 10).toxic_score == 0.0  # several windows
    assert guard.with_policy(Policy(toxic_threshold=0.0)).decide("calm").violation
    from guardrail_dro.serve.calibration import toxic_scores  # export's, as the guard's

    assert toxic_scores(np.array([_LogitScorer.ROWS["calm"]]), np.array([1, 1, 0]))[0] == 0.0


def test_a_band_can_reach_the_safest_text():
    """A toxic text the guard finds safest: recall 1.0 means blocking down to it. Its
    score, -2.2e-16 before, made the band's edge negative: a pydantic ValidationError."""
    scores = np.array([-2.220446049250313e-16, 0.2, 0.5, 0.9])
    toxic = np.array([True, False, True, True])
    band = choose_band(scores, toxic, toxic, target_recall=1.0, max_defer=0.0)
    assert band.low == band.high == 0.0 and band.valid.recall == 1.0
    items = [
        Item(item_id=str(i), text=t, gold=g, annotations=(Annotation(annotator="j", label=g),))
        for i, (t, g) in enumerate(
            [("calm one", "toxic"), ("hello", "safe"), ("unsure", "toxic"), ("bad", "toxic")]
        )
    ]
    band = calibrate_escalation(
        _guard(), AnnotatedDataset(items, SCHEMA), "j", target_recall=1.0, max_defer=0.0
    )
    assert band.valid.recall == 1.0 and band.high == 0.0


def test_check_refuses_a_toxic_threshold_the_band_would_override(tmp_path, monkeypatch):
    """`check --toxic-threshold T --escalate BAND` decided by the band's edges, T unused."""
    import typer

    from guardrail_dro.cli.escalate import JudgeOptions

    band = EscalationBand(
        low=0.3, high=0.8, judge="j", target_recall=0.9, max_defer=0.2,
        valid={"recall": 0.9, "fpr": 0.2, "deferred": 0.1, "items": 100},
    )  # fmt: skip
    path = band.save(tmp_path / "band.json")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    options = JudgeOptions(escalate=path, judge="openai:gpt-4o-mini")
    with pytest.raises(typer.BadParameter, match="--toxic-threshold"):
        options.build(_guard(policy=Policy(toxic_threshold=0.99)))


def test_escalation_refuses_an_out_it_cannot_write_before_any_work(tmp_path):
    import typer
    from typer.testing import CliRunner

    from guardrail_dro.cli import escalate

    app = typer.Typer()
    app.callback()(lambda: None)
    escalate.register(app)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(app, [
        "escalation", "--guard", str(tmp_path), "--valid", str(tmp_path / "none.jsonl"),
        "--judge", "j", "--out", str(blocker / "band.json"),
    ])  # fmt: skip
    assert isinstance(res.exception, ConfigError), res.output
    assert "--out" in str(res.exception) and "a-file" in str(res.exception)


def test_a_partly_gold_labelled_valid_split_is_refused_not_left_uncalibrated():
    """One text without gold made the export silently uncalibrated, saying the split
    'has no gold labels' (29 of 30 had)."""
    from export.thresholds import calibrate, check_both_kinds

    items = [
        Item(item_id=str(i), text=f"t{i}", gold=None if i == 3 else ("safe", "toxic")[i % 2])
        for i in range(30)
    ]
    valid = AnnotatedDataset(items, SCHEMA, name="valid")
    with pytest.raises(ConfigError, match="1 of 30 .*no gold label"):
        check_both_kinds(valid)
    with pytest.raises(ConfigError, match="1 of 30 .*no gold label"):
        calibrate(np.zeros((30, 3)), valid, SCHEMA)
    none = AnnotatedDataset([it.model_copy(update={"gold": None}) for it in items], SCHEMA)
    assert not calibrate(np.zeros((30, 3)), none, SCHEMA)[1].calibrated  # no gold at all


def test_evaluating_at_a_policy_target_records_that_target():
    """`evaluate --guard --target-recall 0.9` printed and wrote guard.json's objective
    (e.g. worst_group_balanced_accuracy) for a point the target had moved."""
    from guardrail_dro.serve.evaluate import evaluate_guard

    guard = Guard.from_scorer(FakeScorer.from_keywords({"bad": "toxic"}, labels=("safe", "toxic")))
    schema = LabelSchema(classes=("safe", "toxic"), safe=("safe",))
    items = [Item(item_id=str(i), text=t, gold=g) for i, (t, g) in
             enumerate([("bad", "toxic"), ("fine", "safe"), ("bad day", "safe")])]  # fmt: skip
    data = AnnotatedDataset(items, schema, name="test")
    plain = evaluate_guard(guard, data)
    assert (plain.objective, plain.target) == (None, None)  # no calibration recorded
    fixed = evaluate_guard(guard.with_policy(Policy(toxic_threshold=0.7)), data)
    assert (fixed.objective, fixed.target) == ("fixed", None)
    from guardrail_dro.serve.calibration import operating_curve

    curve = operating_curve(np.array([0.9, 0.6, 0.2, 0.1]), np.array([1, 1, 0, 0]))
    targeted = Guard(
        guard.scorer, policy=Policy(target_recall=0.9), safe_classes=("safe",),
        toxic_threshold=0.5, thresholds={}, curve=curve,
    )  # fmt: skip
    point = evaluate_guard(targeted, data)
    assert (point.objective, point.target) == ("target_recall", 0.9)


def test_a_lone_surrogate_does_not_keep_a_text_from_the_judge():
    """JSON's "\\ud800" (a browser's cut emoji) reaches the guard as a lone surrogate; the
    judge's SDK could not encode it, so the judge always 'failed': closed, blocked; under
    Policy(on_error="open"), allowed unjudged, a way past the judge for any text."""
    from annotators.openai_annotator import OpenAIAnnotator
    from annotators.testing import FakeLLMServer, keyword_handler
    from guardrail_dro.serve.escalation import EscalatingGuard

    band = EscalationBand(
        low=0.3, high=0.8, judge="j", target_recall=0.9, max_defer=0.2,
        valid={"recall": 0.9, "fpr": 0.2, "deferred": 0.1, "items": 100},
    )  # fmt: skip
    scorer = FakeScorer(lambda t: {"toxic": 0.5} if "mild" in t else {}, labels=("safe", "toxic"))
    guard = Guard.from_scorer(scorer, policy=Policy(on_error="open"))
    with FakeLLMServer(keyword_handler) as srv:
        judge = OpenAIAnnotator("m", api_key="k", base_url=srv.openai_base_url)
        with EscalatingGuard(guard, judge, band) as cascade:
            out = cascade.check("a mild idiot \ud800")
    assert out.escalated and not out.result.degraded, out.result.error
    assert not out.allowed and out.judge is not None and out.judge.label == "toxic"
