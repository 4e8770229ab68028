"""The int8 gate: does the quantized guard DECIDE like the fp32 one, on real data?

What a user deploys is a decision (blocked or allowed at the guard's operating point),
so that is what is gated: each validation text scored alone by int8 (as the guard
serves it) and by fp32 must get the same decision on >= 99% of texts
(``Tolerances.int8_min_decision_agreement``), and the binary worst-group accuracy (gold
toxic = the gold class is not safe, against blocked) may drop at most 1 point
(``Tolerances.int8_max_worst_group_drop``). The 15-class argmax agreement and the max
|logit diff| are recorded beside them, not gated: a flip between two toxic classes
changes no decision.

Without a validation split the gate can only compare decisions on the built-in probe
texts, far too few to see a 1% flip rate; the report then says the gate was weak
(``GATE_PROBES``, ``WEAK_GATE_NOTE``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from export.spec import Tolerances
from guardrail_dro.errors import ConfigError, Mismatch
from guardrail_dro.serve.calibration import softmax

__all__ = [
    "GATE_PROBES",
    "GATE_VALIDATION",
    "MIN_GATE_TEXTS",
    "SMALL_GATE_NOTE",
    "WEAK_GATE_NOTE",
    "Decide",
    "decisions",
    "int8_gate",
    "toxic_decision",
]

#: logits (N, C) -> blocked (N,) bool: the guard's decision at its operating point.
Decide = Callable[[np.ndarray], np.ndarray]

#: ``ParityReport.gates`` values: what a variant's gate ran on.
GATE_VALIDATION, GATE_PROBES = "validation", "probes"


def toxic_decision(safe_mask: Sequence[bool], threshold: float = 0.5) -> Decide:
    """The decision of a guard with flat thresholds (``Thresholds.default_for``):
    blocked when the toxic score 1 - P(safe classes) reaches ``threshold``, or, for a
    schema with no safe class, when any class probability does."""
    safe = np.asarray(safe_mask, dtype=bool)

    def decide(logits: np.ndarray) -> np.ndarray:
        p = softmax(logits)
        if not safe.any():
            return np.asarray(p.max(axis=1) >= threshold)
        return np.asarray((1.0 - p[:, safe].sum(axis=1)) >= threshold)

    return decide


def decisions(decide: Decide, logits: np.ndarray) -> np.ndarray:
    out = np.asarray(decide(logits))
    if out.shape != (len(logits),) or out.dtype != np.bool_:
        raise ConfigError(
            f"Validator.decide must map logits {logits.shape} to a bool array of shape "
            f"({len(logits)},); it returned {out.dtype} {out.shape}"
        )
    return out


def int8_gate(report, valid, fp32_logits, logits, decide: Decide, tol: Tolerances, what: str):
    """Decision agreement and binary worst-group accuracy drop of int8 vs fp32."""
    b32, b8 = decisions(decide, fp32_logits), decisions(decide, logits)
    agree = float(np.mean(b32 == b8))
    flips = int(np.sum(b32 != b8))
    stats = report.stats.setdefault("int8", {})
    stats.update(
        decision_agreement=agree,
        decision_flips=float(flips),
        gate_texts=float(len(logits)),
        argmax_agreement=float(np.mean(fp32_logits.argmax(1) == logits.argmax(1))),
        max_abs_diff_vs_fp32=float(np.abs(fp32_logits - logits).max()),
    )
    if agree < tol.int8_min_decision_agreement:
        report.mismatches.append(
            Mismatch(
                "int8",
                "decision agreement with fp32 (blocked or not)",
                agree,
                tol.int8_min_decision_agreement,
                f"{flips} of {len(logits)} {what} changed decision "
                f"({int(np.sum(b8 & ~b32))} newly blocked, {int(np.sum(b32 & ~b8))} newly allowed)",
            )
        )
    if valid is None:
        return
    from guardrail_dro.train.metrics import compute_metrics

    if not (valid.has_gold and valid.has_groups):
        report.notes.append(
            "validation split lacks gold or groups: binary worst-group drop not checked"
        )
        return
    safe = np.asarray(valid.schema.safe_mask(), dtype=bool)
    gold_toxic = (~safe[valid.gold_array()]).astype(np.int64)
    groups, names = valid.group_array(), list(valid.groups)

    def worst(blocked: np.ndarray):
        return compute_metrics(
            gold_toxic, blocked.astype(np.int64), num_classes=2, groups=groups, group_names=names
        )

    m32, m8 = worst(b32), worst(b8)
    if m8.worst_group_accuracy is None or m32.worst_group_accuracy is None:
        report.notes.append("no validation group has items: binary worst-group drop not checked")
        return
    drop = float(m32.worst_group_accuracy - m8.worst_group_accuracy)
    stats.update(
        binary_worst_group_accuracy=float(m8.worst_group_accuracy),
        fp32_binary_worst_group_accuracy=float(m32.worst_group_accuracy),
        binary_worst_group_accuracy_drop=drop,
    )
    if drop > tol.int8_max_worst_group_drop:
        report.mismatches.append(
            Mismatch(
                "int8",
                "binary worst-group accuracy drop vs fp32",
                drop,
                tol.int8_max_worst_group_drop,
                f"{m32.worst_group_accuracy:.4f} (group {m32.worst_group!r}) -> "
                f"{m8.worst_group_accuracy:.4f} (group {m8.worst_group!r})",
            )
        )


#: Below this many validation texts an int8 gate is noted as weak too: a 1% flip rate
#: is under one text, and the worst group holds a handful (a 6-text --valid passed a
#: recipe that flipped 10 of 400 other valid texts).
MIN_GATE_TEXTS = 100
SMALL_GATE_NOTE = (
    "int8 gate was WEAK: {n} validation texts only (under {min}), too few to show a 1% "
    "flip rate or a worst-group drop; export with a larger --valid to gate int8 on it."
)

WEAK_GATE_NOTE = (
    "int8 gate was WEAK: no validation split, so its decisions were compared with fp32 on "
    "{n} built-in probe texts only (too few to show a 1% flip rate; no worst-group check). "
    "Export with --valid to gate int8 on real data."
)
