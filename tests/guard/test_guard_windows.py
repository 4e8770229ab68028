"""Long texts: every token lands in a window, and the worst window decides."""

from __future__ import annotations

from tokenizers import Tokenizer

from guardrail_dro.guard import Guard
from guardrail_dro.policy import Policy

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


def _full_ids(guard: Guard, text: str) -> list[int]:
    tok = Tokenizer.from_file(str(guard.artifact.tokenizer_path))
    tok.no_truncation()
    tok.no_padding()
    return tok.encode(text, add_special_tokens=False).ids


def test_windows_cover_every_token_in_order(guard: Guard) -> None:
    text = " ".join(f"sentence number {i} says something about bread." for i in range(300))
    windows = guard._encode(text)
    assert len(windows) > 5
    assert all(len(w) <= guard.max_length for w in windows)
    inner = [w[1:-1] for w in windows]  # [CLS] ... [SEP]
    rebuilt = list(inner[0])
    for w in inner[1:]:
        assert w[: guard.stride] == rebuilt[-guard.stride :]  # consecutive windows overlap
        rebuilt += w[guard.stride :]
    assert rebuilt == _full_ids(guard, text)


def _block(guard: Guard, sentence: str) -> str:
    """The sentence repeated to fill at least one whole window on its own."""
    n = guard.max_length // max(1, len(_full_ids(guard, sentence))) + 2
    return " ".join([sentence] * n)


def test_a_toxic_tail_is_caught(guard: Guard) -> None:
    scored = sorted(CANDIDATES, key=lambda s: guard.check(_block(guard, s)).toxic_score)
    filler, target = scored[0], scored[-1]
    body = " ".join([_block(guard, filler)] * 6)  # several windows of the mildest text
    tail = _block(guard, target)
    low, high = guard.check(body).toxic_score, guard.check(tail).toxic_score
    assert high > low + 1e-3, "the tiny model must score some candidate above the filler"
    g = guard.with_policy(Policy(toxic_threshold=(low + high) / 2, action="block"))

    assert g.check(body).allowed
    r = g.check(body + " " + tail)
    assert not r.allowed and r.windows > 4
    assert r.worst_window >= r.windows - 3  # decided at the end, not in the first window
    assert r.toxic_score >= (low + high) / 2
    # Scoring only the first window (plain truncation) would have let it through.
    first_only = g.with_policy(
        Policy(toxic_threshold=(low + high) / 2, max_windows=1, on_error="open")
    )
    assert first_only.check(body + " " + tail).allowed
