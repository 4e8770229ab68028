"""Scoring texts window by window: how a ``Guard`` turns texts into results with any
``Scorer`` and a ``DecisionRule``.

Every window of a text is scored, in batches of the scorer's ``batch_size``, until the
policy's latency budget or ``max_windows`` stops it; the worst window decides (the
rule's maths). A result that could not see every window is degraded, never a silent
truncation. Any exception of the scorer (ONNX Runtime's own pybind types included)
becomes a degraded result: the policy's ``on_error`` decides, not a traceback.

Functions of their arguments only (the scorer, the rule, the texts, the start time),
so the guard's sync and async paths share them and tests can call them directly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from guardrail_dro.serve.policy import DecisionRule, GuardResult
from guardrail_dro.serve.scorer import Scorer

__all__ = ["decide_text", "decide_texts", "nothing"]


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


def decide_text(scorer: Scorer, rule: DecisionRule, text: str, start: float) -> GuardResult:
    """The result for one str (``start``: ``time.perf_counter()`` when the call began)."""
    if not text or text.isspace():
        return nothing(rule, start)
    try:
        windows = scorer.encode(text)
        if len(windows) == 1:
            logits = scorer.logits(windows)
            late = _over_budget(rule, start)
            return _decided(rule, logits, start, complete=late is None, error=late)
        return _decide_windows(scorer, rule, windows, start)
    except Exception as exc:  # ORT's pybind errors: the error policy decides
        return nothing(rule, start, error=f"{type(exc).__name__}: {exc}")


def _decide_windows(
    scorer: Scorer, rule: DecisionRule, windows: list[list[int]], start: float
) -> GuardResult:
    pol = rule.policy
    limit = len(windows) if pol.max_windows is None else min(pol.max_windows, len(windows))
    deadline = _deadline(rule, start)
    parts: list[np.ndarray] = []
    done, error = 0, None
    while done < limit:
        if deadline is not None and done and time.perf_counter() > deadline:
            error = f"latency budget {pol.latency_budget_ms} ms spent after {done} windows"
            break
        chunk = windows[done : min(done + scorer.batch_size, limit)]
        parts.append(scorer.logits(chunk))
        done += len(chunk)
    if error is None and done < len(windows):
        error = f"text has {len(windows)} windows, Policy.max_windows is {pol.max_windows}"
    if error is None:
        error = _over_budget(rule, start)
    return _decided(rule, np.concatenate(parts), start, complete=error is None, error=error)


def decide_texts(
    scorer: Scorer, rule: DecisionRule, texts: Sequence[str], start: float
) -> list[GuardResult]:
    """The results for several strs, windows of similar length batched together (fewer
    pad tokens); each result's latency is the whole call's."""
    todo = [i for i, t in enumerate(texts) if t and not t.isspace()]
    windows: dict[int, list[list[int]]] = {}
    try:
        for i in todo:
            windows[i] = scorer.encode(texts[i])
        flat = [(i, k) for i in todo for k in range(len(windows[i]))]
        flat.sort(key=lambda ik: len(windows[ik[0]][ik[1]]))
        logits: dict[tuple[int, int], np.ndarray] = {}
        deadline = _deadline(rule, start)
        for s in range(0, len(flat), scorer.batch_size):
            if deadline is not None and s and time.perf_counter() > deadline:
                break
            chunk = flat[s : s + scorer.batch_size]
            out = scorer.logits([windows[i][k] for i, k in chunk])
            logits.update(zip(chunk, out, strict=True))
    except Exception as exc:
        err = f"{type(exc).__name__}: {exc}"
        live = set(todo)
        return [nothing(rule, start, error=err if i in live else None) for i in range(len(texts))]
    results = []
    for i in range(len(texts)):
        if i not in windows:
            results.append(nothing(rule, start))
            continue
        got = [logits[(i, k)] for k in range(len(windows[i])) if (i, k) in logits]
        if not got:
            results.append(nothing(rule, start, error="latency budget spent"))
            continue
        complete = len(got) == len(windows[i])
        error = None if complete else "latency budget spent"
        results.append(_decided(rule, np.stack(got), start, complete=complete, error=error))
    return results
