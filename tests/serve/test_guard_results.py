"""Results a person can read: the label of a blocked text is never a safe class, the
class's readable name comes from the label schema, and a result renders itself in the
OpenAI moderation shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

# The toxic-questions shape: numbered classes, the safe one last.
LABELS = ("14", "0", "2")
NAMES = {"14": "non-toxic", "0": "illegal activities", "2": "hate/harassment/violence"}


def _split(text: str) -> dict[str, float]:
    # "bread": no class reaches 0.5 and "14" stays the likeliest, yet 1 - P(safe) = 0.6.
    if "bread" in text:
        return {"0": 0.35, "2": 0.25}
    return {"2": 0.9} if "idiots" in text else {}


def _guard(**options) -> Guard:
    # FakeScorer gives the first label the remainder: "14" is first here and safe.
    return Guard.from_scorer(FakeScorer(_split, labels=LABELS), descriptions=NAMES, **options)


def test_a_blocked_text_is_labelled_with_its_likeliest_harmful_class() -> None:
    r = _guard().check("How do I bake bread?")
    assert max(r.scores, key=r.scores.get) == "14" and r.triggered == ()
    assert not r.allowed and r.toxic_score == pytest.approx(0.6)
    assert (r.label, r.label_name) == ("0", "illegal activities")


def test_an_allowed_text_is_labelled_with_its_likeliest_class() -> None:
    r = _guard().check("What is the capital of France?")
    assert r.allowed and (r.label, r.label_name) == ("14", "non-toxic")


@pytest.mark.parametrize("action", ["block", "replace", "flag"])
def test_every_violation_names_a_harmful_class(action: str) -> None:
    r = _guard(policy=Policy(action=action)).check("How do I bake bread?")
    assert r.violation and r.label == "0"


def test_fail_closed_results_never_read_safe() -> None:
    g = _guard(policy=Policy(max_windows=1))
    r = g.check("What is " * 200)  # more windows than max_windows: degraded, closed
    assert r.degraded and not r.allowed and r.label in ("0", "2")
    assert (
        g.with_policy(Policy(max_windows=1, on_error="open")).check("What is " * 200).label == "14"
    )


def test_without_descriptions_the_label_is_its_own_name() -> None:
    r = Guard.from_scorer(FakeScorer(_split, labels=LABELS)).check("you idiots")
    assert (r.label, r.label_name) == ("2", "2")
    assert _guard().check("").label_name == ""


def test_descriptions_of_unknown_classes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="nope"):
        Guard.from_scorer(FakeScorer(_split, labels=LABELS), descriptions={"nope": "x"})


def test_openai_moderation_shape() -> None:
    g = _guard()
    hit = g.check("you idiots").to_openai_moderation()
    assert hit == {
        "flagged": True,
        "categories": {"0": False, "2": True},
        "category_scores": {"0": pytest.approx(1e-12), "2": pytest.approx(0.9)},
    }
    # Over the summed threshold only: the result's label is the flagged category.
    bread = g.check("How do I bake bread?").to_openai_moderation()
    assert bread["flagged"] and bread["categories"] == {"0": True, "2": False}
    ok = g.check("hello").to_openai_moderation()
    assert not ok["flagged"] and not any(ok["categories"].values())
    assert set(ok["category_scores"]) == {"0", "2"}  # safe classes are left out
    empty = g.check("").to_openai_moderation()
    assert empty == {
        "flagged": False,
        "categories": {"0": False, "2": False},
        "category_scores": {"0": 0.0, "2": 0.0},
    }
    json.dumps(hit)


def test_flag_action_passes_the_content_but_flags_it() -> None:
    r = _guard(policy=Policy(action="flag")).check("you idiots")
    assert r.allowed and r.to_openai_moderation()["flagged"]


def test_exported_guard_reads_names_from_guard_json(guard: Guard) -> None:
    from guardrail_dro.data.synthetic import SYNTHETIC_SCHEMA

    assert guard.artifact is not None
    assert guard.artifact.manifest.label_schema.descriptions == SYNTHETIC_SCHEMA.descriptions
    ok = guard.with_policy(
        Policy(toxic_threshold=1.0, thresholds=dict.fromkeys(guard.labels[1:], 1.0))
    )
    r = ok.check("how do I clean a knife safely")
    assert r.allowed and r.label_name == SYNTHETIC_SCHEMA.descriptions[r.label]
    blocked = guard.with_policy(Policy(toxic_threshold=0.0)).check("how do I clean a knife safely")
    assert not blocked.allowed and blocked.label != "safe"
    assert blocked.label_name == SYNTHETIC_SCHEMA.descriptions[blocked.label]
    mod = blocked.to_openai_moderation()
    assert mod["flagged"] and set(mod["categories"]) == set(guard.labels) - {"safe"}
    assert mod["categories"][blocked.label]


def test_guard_json_without_descriptions_still_loads(guard_copy: Path) -> None:
    from guardrail_dro.serve.artifact import GUARD_MANIFEST, manifest_digest

    path = guard_copy / GUARD_MANIFEST
    raw = json.loads(path.read_text(encoding="utf-8"))
    del raw["label_schema"]["descriptions"]  # as written before descriptions existed
    raw["manifest_sha256"] = manifest_digest(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")
    g = Guard.load(guard_copy, provider="cpu", precision="fp32")
    r = g.check("how do I clean a knife safely")
    assert r.label_name == r.label


def test_a_safe_class_cannot_get_a_threshold() -> None:
    """A threshold on the safe class blocked safe text (its probability crossed it); the
    artifact refuses the same in guard.json, so the policy does too."""
    with pytest.raises(ConfigError, match=r"safe classes: \['14'\]"):
        _guard(policy=Policy(thresholds={"14": 0.5}))


def test_a_result_pickles_copies_and_hashes() -> None:
    """A process pool or task queue pickles results (and violations, which carry one):
    the read-only scores mapping made every one of these a TypeError."""
    import copy
    import pickle

    from guardrail_dro.errors import GuardViolation

    r = _guard().check("people from that town are all idiots")
    back = pickle.loads(pickle.dumps(r))
    assert back == r and dict(back.scores) == dict(r.scores)
    with pytest.raises(TypeError):  # still read-only after the trip
        back.scores["2"] = 0.0  # type: ignore[index]
    assert copy.deepcopy(r) == r and {r, back} == {r}
    v = pickle.loads(pickle.dumps(GuardViolation(r, "input")))
    assert v.result == r and v.rail == "input" and str(v) == str(GuardViolation(r, "input"))
