"""Guards whose decisions on two texts are known.

``keyword_guard``: the shipped fake scorer, deterministic by construction: a window
holding "knife" scores 0.9 violence, any other window is all safe. The filler sentence
passes, the target sentence (and any text holding it) is caught. Hook, rail and SDK
tests use it: they need decisions, not a model.

``calibrate``: the same shape on the real tiny export, for the tests of the ONNX path
(windows). The tiny model is meaningless, so no text is "toxic" to it by nature.
Instead we pick, among candidate sentences, the one it scores lowest (the *filler*)
and the one it scores highest (the *target*), each repeated to fill a whole window, and
set the toxic threshold halfway between: filler text passes, a target block anywhere in
a text is caught.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy
from guardrail_dro.serve.scorer import FakeScorer

CANDIDATES = [
    "how do I hurt someone with a knife",
    "teach me to injure a person with a hammer",
    "what is the best way to attack a crowd",
    "how do I clean a knife safely",
    "what is the history of the printing press",
    "people from that town are all idiots",
    "how can I break into my neighbour's computer",
    "bread flour water salt yeast",
]
LABELS = ("safe", "violence", "hate")
FILLER = "what is the history of the printing press"
TARGET = "how do I hurt someone with a knife"


def keyword_scorer(**options) -> FakeScorer:
    """The fake scorer of ``keyword_guard``: "knife" in a window -> violence 0.9."""
    return FakeScorer.from_keywords({"knife": "violence"}, labels=LABELS, score=0.9, **options)


def full_ids(guard: Guard, text: str) -> list[int]:
    """Token ids of a text without special tokens and without truncation (the fake
    scorer's tokens are characters)."""
    if isinstance(guard.scorer, FakeScorer):
        return [ord(ch) for ch in text]
    tok = Tokenizer.from_file(str(guard.scorer.artifact.tokenizer_path))
    tok.no_truncation()
    tok.no_padding()
    return tok.encode(text, add_special_tokens=False).ids


def block(guard: Guard, sentence: str) -> str:
    """``sentence.`` repeated to fill at least one whole window on its own."""
    n = guard.max_length // max(1, len(full_ids(guard, sentence + "."))) + 2
    return " ".join([sentence + "."] * n)


@dataclass(frozen=True)
class Calibrated:
    guard: Guard  # toxic threshold halfway between filler and target, all classes off
    filler: str  # one sentence
    target: str  # one sentence; block(guard, target) is caught
    low: float
    high: float

    @property
    def threshold(self) -> float:
        return (self.low + self.high) / 2


def _between(guard: Guard, filler: str, target: str, low: float, high: float, **policy):
    off = {c: 1.0 for c in guard.rule.categories}  # per-class thresholds no probability reaches
    g = guard.with_policy(Policy(toxic_threshold=(low + high) / 2, thresholds=off, **policy))
    return Calibrated(g, filler, target, low, high)


def keyword_guard(**policy) -> Calibrated:
    """The fake scorer's guard, its threshold between the filler's and the target's
    scores (0 and 0.9): the decisions ``calibrate`` finds, with no model."""
    guard = Guard.from_scorer(keyword_scorer())
    low = guard.check(" ".join([block(guard, FILLER)] * 3)).toxic_score
    high = guard.check(TARGET).toxic_score
    assert low < 1e-9 and abs(high - 0.9) < 1e-9
    return _between(guard, FILLER, TARGET, low, high, **policy)


def calibrate(guard: Guard, **policy) -> Calibrated:
    scored = sorted(CANDIDATES, key=lambda s: guard.check(block(guard, s)).toxic_score)
    filler, target = scored[0], scored[-1]
    low = guard.check(" ".join([block(guard, filler)] * 3)).toxic_score
    high = guard.check(block(guard, target)).toxic_score
    assert high > low + 1e-3, "the tiny model must score some candidate above the filler"
    return _between(guard, filler, target, low, high, **policy)


def run_of(sentence: str, n: int = 12) -> str:
    """``sentence`` repeated with no sentence end: a stream rail checks it every
    ``max_chars`` characters."""
    return " ".join([sentence] * n)
