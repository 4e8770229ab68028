"""Long texts: every token lands in a window, and the worst window decides."""

from __future__ import annotations

from guardrail_dro.serve.guard import Guard
from guardrail_dro.serve.policy import Policy

from .guard_helpers import block, calibrate, full_ids


def test_windows_cover_every_token_in_order(guard: Guard) -> None:
    text = " ".join(f"sentence number {i} says something about bread." for i in range(300))
    windows = guard.scorer.encode(text)
    stride = guard.scorer.stride
    assert len(windows) > 5
    assert all(len(w) <= guard.max_length for w in windows)
    inner = [w[1:-1] for w in windows]  # [CLS] ... [SEP]
    rebuilt = list(inner[0])
    for w in inner[1:]:
        assert w[:stride] == rebuilt[-stride:]  # consecutive windows overlap
        rebuilt += w[stride:]
    assert rebuilt == full_ids(guard, text)


def test_a_toxic_tail_is_caught(guard: Guard) -> None:
    cal = calibrate(guard, action="block", max_windows=None)
    body = " ".join([block(guard, cal.filler)] * 6)  # several windows of the mildest text
    tail = block(guard, cal.target)

    assert cal.guard.check(body).allowed
    r = cal.guard.check(body + " " + tail)
    assert not r.allowed and r.windows > 4
    assert r.worst_window >= r.windows - 3  # decided at the end, not in the first window
    assert r.toxic_score >= cal.threshold
    # Scoring only the first window (plain truncation) would have let it through.
    first_only = cal.guard.with_policy(
        Policy(toxic_threshold=cal.threshold, max_windows=1, on_error="open")
    )
    assert first_only.check(body + " " + tail).allowed
