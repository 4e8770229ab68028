"""A guard whose decisions on two texts are known: calibrated on the tiny random model.

The tiny model is meaningless, so no text is "toxic" to it by nature. Instead we pick,
among candidate sentences, the one it scores lowest (the *filler*) and the one it scores
highest (the *target*), each repeated to fill a whole window, and set the toxic threshold
halfway between: filler text passes, a target block anywhere in a text is caught.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy

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


def full_ids(guard: Guard, text: str) -> list[int]:
    """Token ids of a text without special tokens and without truncation."""
    tok = Tokenizer.from_file(str(guard.artifact.tokenizer_path))
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


def calibrate(guard: Guard, **policy) -> Calibrated:
    scored = sorted(CANDIDATES, key=lambda s: guard.check(block(guard, s)).toxic_score)
    filler, target = scored[0], scored[-1]
    low = guard.check(" ".join([block(guard, filler)] * 3)).toxic_score
    high = guard.check(block(guard, target)).toxic_score
    assert high > low + 1e-3, "the tiny model must score some candidate above the filler"
    off = {c: 1.0 for c in guard.labels}  # per-class thresholds no probability reaches
    g = guard.with_policy(Policy(toxic_threshold=(low + high) / 2, thresholds=off, **policy))
    return Calibrated(g, filler, target, low, high)


def run_of(sentence: str, n: int = 12) -> str:
    """``sentence`` repeated with no sentence end: a stream rail checks it every
    ``max_chars`` characters."""
    return " ".join([sentence] * n)


def calibrate_stream(guard: Guard, **policy) -> Calibrated:
    """As ``calibrate``, for streamed replies checked sentence by sentence: filler
    sentences (and their partial continuations) pass, any stretch of a ``run_of(target)``
    of 150 characters or more is caught."""
    filler = min(CANDIDATES, key=lambda s: guard.check(s + ".").toxic_score)
    target = max(CANDIDATES, key=lambda s: guard.check(run_of(s, 5)).toxic_score)
    low = max(guard.check(f"{filler}. {filler[:k]}").toxic_score for k in range(0, len(filler), 3))
    run = run_of(target)
    high = min(guard.check(run[:n]).toxic_score for n in range(150, len(run) + 1, 25))
    assert high > low + 0.02, "the tiny model must score the target run above the filler"
    off = {c: 1.0 for c in guard.labels}
    g = guard.with_policy(Policy(toxic_threshold=(low + high) / 2, thresholds=off, **policy))
    return Calibrated(g, filler, target, low, high)
