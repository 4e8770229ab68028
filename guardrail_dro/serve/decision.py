"""The decision rule: a text's logits -> ``GuardResult`` under a ``Policy``.

``DecisionRule`` holds a guard's thresholds as arrays in class order (``guard.json``'s,
overridden by the policy) and applies the rule ``serve/policy.py`` describes. Pure
Python and numpy, no model: the scorer gives the logits, this gives the decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.calibration import OperatingCurve, softmax
from guardrail_dro.serve.policy import Policy, threshold_for_target
from guardrail_dro.serve.result import GuardResult

__all__ = ["DecisionRule"]

_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DecisionRule:
    """Thresholds as arrays in class order, and the policy: logits -> GuardResult.

    No model: ``decide`` takes the logits of every window of one text (numpy for
    several windows, plain Python floats for the usual one).
    """

    labels: tuple[str, ...]
    thresholds: np.ndarray  # per class; inf where a class has none
    safe: np.ndarray  # bool per class
    toxic_threshold: float
    policy: Policy
    provider: str = "cpu"
    names: tuple[str, ...] = ()  # readable name per class; () reads as the labels
    # 1 / threshold, floored: severity is probs * this on every check, so computed once.
    inv_thresholds: np.ndarray = field(init=False, repr=False, compare=False)
    categories: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # The same thresholds as Python floats and index tuples, for the one-window path.
    _fast: tuple[list[float], tuple[int, ...], tuple[int, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "inv_thresholds", 1.0 / np.maximum(self.thresholds, 1e-9))
        safe_idx = tuple(i for i, s in enumerate(self.safe) if s)
        unsafe_idx = tuple(i for i, s in enumerate(self.safe) if not s)
        fast = (self.thresholds.tolist(), safe_idx, unsafe_idx)
        object.__setattr__(self, "_fast", fast)
        cats = tuple(c for c, s in zip(self.labels, self.safe, strict=True) if not s)
        object.__setattr__(self, "categories", cats)
        if not self.names:
            object.__setattr__(self, "names", self.labels)

    @classmethod
    def build(
        cls,
        *,
        labels: Sequence[str],
        safe: Sequence[str],
        toxic: float,
        per_class: Mapping[str, float],
        policy: Policy,
        provider: str = "cpu",
        descriptions: Mapping[str, str] | None = None,
        curve: OperatingCurve | None = None,
    ) -> DecisionRule:
        """Defaults (``guard.json``) overridden by ``policy``; ``descriptions`` gives
        classes their readable names (``GuardResult.label_name``; a class without one
        is named by its label); ``curve``: the validation operating curve that a
        policy's ``target_recall`` / ``target_fpr`` picks its threshold from.

        Raises:
            ConfigError: the policy names a class the guard does not have, or a safe
                class, or a target the guard has no curve for.
        """
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a Policy, not {type(policy).__name__}")
        labels = tuple(labels)
        unknown = sorted(set(policy.thresholds) - set(labels))
        if unknown:
            raise ConfigError(
                f"Policy.thresholds names classes this guard does not have: {unknown} "
                f"(classes: {list(labels)})"
            )
        safe_named = sorted(set(policy.thresholds) & set(safe))
        if safe_named:  # a safe class over its threshold would block safe text
            raise ConfigError(
                f"Policy.thresholds names safe classes: {safe_named}; its keys must be "
                f"classes that are not safe ({[c for c in labels if c not in safe]})"
            )
        merged = {**per_class, **policy.thresholds}
        if policy.target_recall is not None or policy.target_fpr is not None:
            toxic = threshold_for_target(curve, policy.target_recall, policy.target_fpr)
        elif policy.toxic_threshold is not None:
            toxic = policy.toxic_threshold
        return cls(
            labels=labels,
            thresholds=np.array([merged.get(c, np.inf) for c in labels], dtype=np.float64),
            safe=np.array([c in safe for c in labels], dtype=bool),
            toxic_threshold=toxic,
            policy=policy,
            provider=provider,
            names=tuple((descriptions or {}).get(c) or c for c in labels),
        )

    def decide(
        self,
        logits: np.ndarray,
        *,
        complete: bool = True,
        error: str | None = None,
        latency_ms: float = 0.0,
    ) -> GuardResult:
        """The result for one text from the (windows, classes) logits of the windows
        scored; ``complete=False`` when some were not (then, without a violation among
        those scored, the error policy decides and the result is degraded)."""
        if len(logits) == 1:
            return self._decide_one(
                logits[0].tolist(), complete=complete, error=error, latency_ms=latency_ms
            )
        return self._decide_windows(logits, complete=complete, error=error, latency_ms=latency_ms)

    def _decide_windows(
        self, logits: np.ndarray, *, complete: bool, error: str | None, latency_ms: float
    ) -> GuardResult:
        """``decide`` for any number of windows, in numpy."""
        probs = softmax(logits)
        hits = probs >= self.thresholds
        # Severity: how far past its threshold each window is; the worst window decides.
        sev = (probs * self.inv_thresholds).max(axis=1)
        if self.safe.any():
            # Never below 0: with several safe classes their summed float64 share can
            # round above 1 (-2.2e-16), and a band or threshold edge is >= 0.
            toxic = np.maximum(1.0 - probs[:, self.safe].sum(axis=1), 0.0)
            bad = hits.any(axis=1) | (toxic >= self.toxic_threshold)
            sev = np.maximum(sev, toxic / max(self.toxic_threshold, 1e-9))
        else:  # no class known safe: 1 - P(safe) would always be 1
            toxic = np.zeros(len(probs))
            bad = hits.any(axis=1)
        w = int(np.argmax(sev)) if len(sev) > 1 else 0
        triggered = tuple(
            c for c, h in zip(self.labels, np.asarray(hits.any(axis=0)), strict=True) if h
        )
        return self._result(
            probs[w].tolist(), triggered, float(toxic[w]), bool(bad.any()), complete, error,
            latency_ms, windows=len(probs), worst=w,
        )  # fmt: skip

    def _decide_one(
        self, z: list[float], *, complete: bool, error: str | None, latency_ms: float
    ) -> GuardResult:
        """``decide`` for one window (nearly every check), in plain Python floats: the
        same float64 arithmetic as the numpy path, without its ~25 calls on 15-element
        arrays, which cost more than the rest of a check's Python together (measured:
        ~80 us a decision in a warm loop, several times that right after a model run)."""
        thr, safe_idx, _ = self._fast
        m = max(z)
        e = [math.exp(v - m) for v in z]
        total = math.fsum(e)
        p = [v / total for v in e]
        labels = self.labels
        # (No severity: it only picks the deciding window among several.)
        triggered = tuple([c for c, a, b in zip(labels, p, thr, strict=True) if a >= b])
        if safe_idx:
            toxic = max(1.0 - sum([p[i] for i in safe_idx]), 0.0)  # as in _decide_windows
            bad = bool(triggered) or toxic >= self.toxic_threshold
        else:  # no class known safe: 1 - P(safe) would always be 1
            toxic, bad = 0.0, bool(triggered)
        return self._result(p, triggered, toxic, bad, complete, error, latency_ms)

    def _result(
        self,
        p: list[float],
        triggered: tuple[str, ...],
        toxic: float,
        bad: bool,
        complete: bool,
        error: str | None,
        latency_ms: float,
        *,
        windows: int = 1,
        worst: int = 0,
    ) -> GuardResult:
        """The result from the deciding window's probabilities ``p`` (both paths)."""
        pol = self.policy
        degraded = not bad and not complete
        if bad:
            action = pol.action.value
        elif degraded:
            action = pol.error_action()
        else:
            action = "allow"
        # A result that is not "allow" is about harm: name the likeliest harmful class,
        # not "safe" (which may still be the argmax when only the summed score crossed).
        # First on ties, as argmax; 0 where no class is unsafe.
        _, _, unsafe_idx = self._fast
        if action == "allow":
            top = max(range(len(p)), key=p.__getitem__)
        else:
            top = max(unsafe_idx, key=p.__getitem__) if unsafe_idx else 0
        return GuardResult(
            allowed=action in ("allow", "flag"),
            label=self.labels[top],
            label_name=self.names[top],
            categories=self.categories,
            scores=MappingProxyType(dict(zip(self.labels, p, strict=True))),
            triggered=triggered,
            toxic_score=toxic,
            action=action,
            replacement=pol.replacement_for(action),
            degraded=degraded,
            error=error if degraded else None,
            windows=windows,
            worst_window=worst,
            provider=self.provider,
            latency_ms=latency_ms,
        )

    def nothing(self, *, error: str | None = None, latency_ms: float = 0.0) -> GuardResult:
        """Nothing scored: an empty text (allowed), or an error (the error policy)."""
        action = "allow" if error is None else self.policy.error_action()
        return GuardResult(
            allowed=action == "allow",
            label="",
            categories=self.categories,
            scores=_EMPTY,
            triggered=(),
            toxic_score=0.0,
            action=action,
            replacement=self.policy.replacement_for(action),
            degraded=error is not None,
            error=error,
            windows=0,
            provider=self.provider,
            latency_ms=latency_ms,
        )
