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


# ---- a band names the guard it was chosen for -----------------------------------------
def test_a_band_used_with_another_guard_or_precision_is_noted(guard_dir, synthetic, tmp_path,
                                                              monkeypatch, capsys):  # fmt: skip
    """A band's edges are toxic scores of one export at one precision; loaded with another
    (an fp32 band served int8, a retrained export) only another judge was noted."""
    import warnings

    from guardrail_dro.cli.escalate import JudgeOptions
    from guardrail_dro.serve.escalation import EscalatingGuard
    from guardrail_dro.serve.escalation_guard import GuardIdentity

    int8 = Guard.load(guard_dir, provider="cpu", precision="int8")
    fp32 = Guard.load(guard_dir, provider="cpu", precision="fp32")
    valid = synthetic["valid"]
    band = calibrate_escalation(int8, valid, valid.annotators[2], max_defer=0.2)
    assert band.guard == GuardIdentity(
        manifest_sha256=int8.artifact.manifest.manifest_sha256, precision="int8"
    )
    assert EscalationBand.load(band.save(tmp_path / "band.json")) == band
    judge = _NoJudge()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the guard it was chosen for: nothing to say
        EscalatingGuard(int8, judge, band).close()
    with pytest.warns(UserWarning, match="chosen for the int8 model; this guard runs fp32"):
        EscalatingGuard(fp32, judge, band).close()
    other = band.model_copy(update={"guard": GuardIdentity(manifest_sha256="0" * 64,
                                                           precision="int8")})  # fmt: skip
    with pytest.warns(UserWarning, match="another export"):
        EscalatingGuard(int8, judge, other).close()
    # A band file from before the field: loads, and says nothing.
    old = tmp_path / "old.json"
    old.write_text(band.model_dump_json(exclude={"guard"}))
    assert EscalationBand.load(old).guard is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EscalatingGuard(fp32, judge, EscalationBand.load(old)).close()
    # check --escalate / serve --escalate: a note on stderr, not a Python warning.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    options = JudgeOptions(escalate=tmp_path / "band.json", judge="openai:gpt-4o-mini")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        options.build(fp32).close()
    note = " ".join(capsys.readouterr().err.split())
    assert "note: the band was chosen for the int8 model" in note and "fp32" in note


class _NoJudge:
    name, model = "none", "none"

    async def aclose(self) -> None:
        return None


# ---- the advice on a band that blocks most safe texts --------------------------------
def test_the_advice_on_a_greedy_band_names_the_judges_recall_not_the_budget():
    """`escalation --target-recall 1.0 --max-defer 1` said 'raise --max-defer'; the limit
    is the judge's own recall: the toxic texts it misses are blocked on the score alone."""
    from guardrail_dro.serve.escalation_band import band_notes

    rng = np.random.default_rng(0)
    toxic = rng.random(400) < 0.5
    scores = np.clip(rng.normal(np.where(toxic, 0.6, 0.4), 0.2), 0, 1)
    judge = toxic & (rng.random(400) < 0.6)  # finds 6 in 10 toxic texts, never a safe one
    recall = judge[toxic].mean()
    band = choose_band(scores, toxic, judge, target_recall=1.0, max_defer=1.0)
    notes = " ".join(band_notes(400, toxic, band, widest=band, judge=judge))
    assert "lower --target-recall" in notes and "raise --max-defer" not in notes
    assert f"the judge's own recall on these texts is {recall:.3f}" in notes
    # Where a larger budget does lower the FPR, raising it is still the advice.
    good = choose_band(scores, toxic, toxic, target_recall=1.0, max_defer=1.0)
    tight = choose_band(scores, toxic, toxic, target_recall=1.0, max_defer=0.01)
    assert tight.valid.fpr > 0.5 > good.valid.fpr
    assert "raise --max-defer" in " ".join(band_notes(400, toxic, tight, widest=good,
                                                      judge=toxic))  # fmt: skip


def test_escalation_at_full_budget_does_not_advise_raising_it(guard_dir, synthetic, tmp_path):
    import typer
    from typer.testing import CliRunner

    from guardrail_dro.cli import escalate

    app = typer.Typer()
    app.callback()(lambda: None)
    escalate.register(app)
    valid = tmp_path / "valid.jsonl"
    synthetic["valid"].save_jsonl(valid)
    res = CliRunner().invoke(app, [
        "escalation", "--guard", str(guard_dir), "--valid", str(valid), "--judge", "llm_a",
        "--target-recall", "1.0", "--max-defer", "1",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    err = " ".join(res.stderr.split())
    assert "lower --target-recall" in err and "raise --max-defer" not in err
    assert "the judge's own recall on these texts is" in err


# ---- what can be checked without the model is checked first --------------------------
def test_a_split_without_both_kinds_is_refused_before_the_guard_scores_it():
    """A one-class --valid was refused only after every text was scored (~15 s for 1,000
    texts with the MiniLM guard)."""
    from guardrail_dro.errors import DataError
    from guardrail_dro.serve.escalation import calibration_arrays

    scored: list[int] = []

    class Counting(FakeScorer):
        def logits(self, rows):
            scored.append(len(rows))
            return super().logits(rows)

    guard = Guard.from_scorer(Counting(lambda t: {}, labels=LABELS), safe_classes=SCHEMA.safe)

    def split(golds, judged=None):
        judged = judged or golds
        return AnnotatedDataset([
            Item(item_id=str(i), text=f"t{i}", gold=g,
                 annotations=(Annotation(annotator="j", label=j),) if j else ())
            for i, (g, j) in enumerate(zip(golds, judged, strict=True))
        ], SCHEMA, name="valid")  # fmt: skip

    with pytest.raises(DataError, match="0 toxic and 30 safe"):
        calibration_arrays(guard, split(["safe"] * 30), "j")
    # Both kinds, but the judge labelled the safe texts only: one kind left.
    golds = ["safe", "toxic"] * 15
    with pytest.raises(DataError, match="0 toxic and 15 safe"):
        calibration_arrays(guard, split(golds, [g if g == "safe" else None for g in golds]), "j")
    with pytest.raises(DataError, match="1 texts labelled by .j."):
        calibration_arrays(guard, split(golds, ["safe"] + [None] * 29), "j")
    assert scored == []  # not one text scored


# ---- a judged result is about the judge's class -------------------------------------
def test_a_judged_result_names_the_judges_class():
    """The judge said harmful class '3'; the result's label (and so the moderation
    categories of `serve`) named the guard's likeliest harmful class '0'."""
    from annotators.openai_annotator import OpenAIAnnotator
    from annotators.testing import FakeLLMServer
    from annotators.testing.rules import FakeReply
    from guardrail_dro.serve.escalation import EscalatingGuard

    band = EscalationBand(
        low=0.3, high=0.8, judge="j", target_recall=0.9, max_defer=0.2,
        valid={"recall": 0.9, "fpr": 0.2, "deferred": 0.1, "items": 100},
    )  # fmt: skip
    scorer = FakeScorer(lambda t: {"0": 0.3, "3": 0.2}, labels=("safe", "0", "3", "chat"))
    guard = Guard.from_scorer(
        scorer, safe_classes=("safe", "chat"), descriptions={"3": "fraud", "chat": "small talk"}
    )
    says = {"3": FakeReply("3", "asks for card numbers", 0.9),
            "chat": FakeReply("chat", "small talk", 0.9)}  # fmt: skip
    with FakeLLMServer(lambda text: says[text.split()[0]]) as srv:
        judge = OpenAIAnnotator("m", api_key="k", base_url=srv.openai_base_url)
        with EscalatingGuard(guard, judge, band) as cascade:
            blocked, allowed = cascade.check_many(["3 text", "chat text"])
            again = cascade.check("3 text")  # from the memo: the same
    assert blocked.escalated and not blocked.allowed and not blocked.result.degraded
    assert (blocked.result.label, blocked.result.label_name) == ("3", "fraud")
    assert blocked.result.to_openai_moderation()["categories"] == {"0": False, "3": True}
    assert again.remembered and again.result == blocked.result
    assert blocked.guard_label == "0"  # the guard's own likeliest harmful class, kept
    assert allowed.allowed and allowed.result.label == "chat"  # a safe class, the judge's
    assert allowed.result.label_name == "small talk"
