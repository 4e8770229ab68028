"""Scoring texts window by window: how a ``Guard`` turns texts into results with any
``Scorer`` and a ``DecisionRule``.

Every window of a text is scored, in batches of the scorer's ``batch_size``, until the
policy's latency budget stops it; the worst window decides (the rule's maths). The cost
of a check is bounded before the model runs: ``Policy.max_chars`` caps the characters
tokenized and ``Policy.max_windows`` the windows scored (both on by default; a 1 MB
text tokenizes a few thousand characters, ``bounded_windows``). A result that could not
see every window is degraded and says why, never a silent truncation. Any exception of
the scorer (ONNX Runtime's own pybind types included) becomes a degraded result of the
texts it belongs to: the policy's ``on_error`` decides, not a traceback.

Functions of their arguments only (the scorer, the rule, the texts, the start time),
so the guard's sync and async paths share them and tests can call them directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from guardrail_dro.serve.decision import DecisionRule
from guardrail_dro.serve.policy import GuardResult, Policy
from guardrail_dro.serve.scorer import Scorer

__all__ = ["bounded_windows", "decide_text", "decide_texts", "nothing"]


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def nothing(rule: DecisionRule, start: float, error: str | None = None) -> GuardResult:
    """The result when nothing was scored: an empty text, or an error (then degraded)."""
    return rule.nothing(error=error, latency_ms=_elapsed_ms(start))


def _decided(
    rule: DecisionRule,
    logits: np.ndarray,
    start: float,
    *,
    complete: bool = True,
    error: str | None = None,
) -> GuardResult:
    return rule.decide(logits, complete=complete, error=error, latency_ms=_elapsed_ms(start))


def _over_budget(rule: DecisionRule, start: float) -> str | None:
    """Why the result must be degraded when the latency budget ran out during the
    model call itself (the decision came too late to be trusted as on time)."""
    budget = rule.policy.latency_budget_ms
    if budget is None:
        return None
    ms = _elapsed_ms(start)
    return f"latency budget {budget} ms spent ({ms:.1f} ms)" if ms > budget else None


def _deadline(rule: DecisionRule, start: float) -> float | None:
    budget = rule.policy.latency_budget_ms
    return None if budget is None else start + budget / 1e3


def bounded_windows(
    scorer: Scorer, policy: Policy, text: str
) -> tuple[list[list[int]], str | None]:
    """The windows of ``text`` to score and, when they are not the whole text, why.

    The cost of a check is bounded before any model call: a text over
    ``policy.max_chars`` characters is not scored at all (no windows: the caller's result
    is degraded, saying so, at the cost of a length check: a 1 MB text returns in
    microseconds), and of a shorter one only the prefix the first ``max_windows`` windows
    need (a guess of 4 characters per token, grown 4x while it yields too few windows):
    a 1 MB text costs a few thousand characters of tokenization, not seconds. The first
    ``max_windows`` windows of a prefix that yields more than ``max_windows + 1`` are
    those of the whole text (a cut word can only change the last window).
    """
    if policy.max_chars is not None and len(text) > policy.max_chars:
        return [], (
            f"text has {len(text):,} characters, over Policy.max_chars="
            f"{policy.max_chars:,}: not scored (a larger max_chars, or None, scores its "
            f"first {policy.max_windows or 'all'} windows)"
        )
    cap = len(text)
    limit = policy.max_windows
    if limit is None:
        windows = scorer.encode(text[:cap])
    else:
        size = min(cap, (limit + 2) * scorer.max_length * 4)
        while True:
            windows = scorer.encode(text[:size])
            if size >= cap or len(windows) > limit + 1:
                break
            size = min(cap, size * 4)
        if len(windows) > limit:
            return windows[:limit], (
                f"text is longer than Policy.max_windows={limit} windows of "
                f"{scorer.max_length} tokens: only the first {limit} were scored"
            )
    return windows, None


def decide_text(scorer: Scorer, rule: DecisionRule, text: str, start: float) -> GuardResult:
    """The result for one str (``start``: ``time.perf_counter()`` when the call began)."""
    if not text or text.isspace():
        return nothing(rule, start)
    try:
        windows, cut = bounded_windows(scorer, rule.policy, text)
        if not windows:  # over max_chars: not scored
            return nothing(rule, start, error=cut)
        if len(windows) == 1 and cut is None:
            logits = scorer.logits(windows)
            late = _over_budget(rule, start)
            return _decided(rule, logits, start, complete=late is None, error=late)
        return _decide_windows(scorer, rule, windows, start, cut)
    except Exception as exc:  # ORT's pybind errors: the error policy decides
        return nothing(rule, start, error=f"{type(exc).__name__}: {exc}")


def _decide_windows(
    scorer: Scorer, rule: DecisionRule, windows: list[list[int]], start: float, cut: str | None
) -> GuardResult:
    pol = rule.policy
    deadline = _deadline(rule, start)
    # Under a budget, one window per call: the deadline is checked between windows, not
    # only between batches (the int8 model runs one row at a time anyway).
    step = scorer.batch_size if deadline is None else 1
    parts: list[np.ndarray] = []
    done, error = 0, None
    while done < len(windows):
        if deadline is not None and done and time.perf_counter() > deadline:
            error = f"latency budget {pol.latency_budget_ms} ms spent after {done} windows"
            break
        chunk = windows[done : done + step]
        parts.append(scorer.logits(chunk))
        done += len(chunk)
    error = error or cut or _over_budget(rule, start)
    return _decided(rule, np.concatenate(parts), start, complete=error is None, error=error)


def _score_rows(
    scorer: Scorer, rows: list[tuple[int, int]], windows: dict[int, list[list[int]]]
) -> tuple[dict[tuple[int, int], np.ndarray], dict[int, str]]:
    """Logits of some (text, window) rows in one model call; when the call fails, each
    row again alone, so that only the texts whose own windows fail are lost.

    Returns the logits by row, and an error per text that failed.
    """
    try:
        out = scorer.logits([windows[i][k] for i, k in rows])
        return dict(zip(rows, out, strict=True)), {}
    except Exception as exc:
        if len(rows) == 1:
            return {}, {rows[0][0]: f"{type(exc).__name__}: {exc}"}
    logits: dict[tuple[int, int], np.ndarray] = {}
    failed: dict[int, str] = {}
    for row in rows:
        if row[0] not in failed:
            got, bad = _score_rows(scorer, [row], windows)
            logits.update(got)
            failed.update(bad)
    return logits, failed


def decide_texts(
    scorer: Scorer,
    rule: DecisionRule,
    texts: Sequence[str],
    start: float,
    stop: Callable[[], bool] | None = None,
) -> list[GuardResult]:
    """The results for several strs, windows of similar length batched together (fewer
    pad tokens); each result's latency is the whole call's. ``stop`` is asked between
    model calls: once it answers True, the texts not yet scored in full come back
    degraded (a server stops a batch whose callers have all timed out).

    A failure is confined to the texts it belongs to: a text that does not tokenize, or
    whose window makes the model call fail (the batch is then retried row by row), gets
    the error policy's degraded result; the others keep their own decisions.
    """
    windows: dict[int, list[list[int]]] = {}
    cuts: dict[int, str | None] = {}
    failed: dict[int, str] = {}
    for i, t in enumerate(texts):
        if t and not t.isspace():
            try:
                windows[i], cuts[i] = bounded_windows(scorer, rule.policy, t)
            except Exception as exc:
                failed[i] = f"{type(exc).__name__}: {exc}"
    flat = [(i, k) for i in windows for k in range(len(windows[i]))]
    flat.sort(key=lambda ik: len(windows[ik[0]][ik[1]]))
    logits: dict[tuple[int, int], np.ndarray] = {}
    deadline, spent = _deadline(rule, start), "latency budget spent"
    for s in range(0, len(flat), scorer.batch_size):
        if deadline is not None and s and time.perf_counter() > deadline:
            break
        if stop is not None and s and stop():
            spent = "stopped before every window was scored"
            break
        chunk = [ik for ik in flat[s : s + scorer.batch_size] if ik[0] not in failed]
        if chunk:
            scored, bad = _score_rows(scorer, chunk, windows)
            logits.update(scored)
            failed.update(bad)
    results = []
    for i in range(len(texts)):
        if i in failed:
            results.append(nothing(rule, start, error=failed[i]))
            continue
        if i not in windows:
            results.append(nothing(rule, start))
            continue
        if not windows[i]:  # over max_chars: not scored
            results.append(nothing(rule, start, error=cuts[i]))
            continue
        got = [logits[(i, k)] for k in range(len(windows[i])) if (i, k) in logits]
        if not got:
            results.append(nothing(rule, start, error=spent))
            continue
        complete = len(got) == len(windows[i])
        error = cuts[i] if complete else spent
        results.append(_decided(rule, np.stack(got), start, complete=error is None, error=error))
    return results
