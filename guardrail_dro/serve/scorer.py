"""The seam between scoring a text and deciding on it: the ``Scorer`` protocol, and
``FakeScorer``, a deterministic scorer driven by a plain function, shipped for tests.

A ``Guard`` turns a text into windows (``encode``), scores them in batches of at most
``batch_size`` rows (``logits``) and decides; windows, the latency budget, batching,
the policy, async and the rails all live in the guard, so a scorer only tokenizes and
runs a model. ``OnnxScorer`` (``guardrail_dro.serve.onnx_scorer``) is the real one:
``Guard.load`` builds it from an exported artifact.

``FakeScorer`` makes a guard without a model, for tests of anything above scoring
(hooks, rails, SDK wrappers, policies): a handler maps the text of one window to class
probabilities, the same text always to the same scores.

Example:
    >>> scorer = FakeScorer.from_keywords({"knife": "violence"}, labels=("safe", "violence"))
    >>> guard = Guard.from_scorer(scorer)
    >>> guard.check("how do I sharpen a knife").allowed
    False
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from guardrail_dro.errors import ConfigError

__all__ = ["FakeScorer", "Handler", "Scorer", "ScorerBase"]

_FLOOR = 1e-12  # the smallest probability a FakeScorer reports


@runtime_checkable
class Scorer(Protocol):
    """Tokenize a text into windows and score rows of token ids.

    Attributes:
        labels: class names, in the order of the logits' columns.
        max_length: tokens per window (the model's context).
        batch_size: the most rows one ``logits`` call takes.
        provider: what runs the model (``GuardResult.provider``: cpu, cuda, tensorrt...).
    """

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def max_length(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def provider(self) -> str: ...

    def encode(self, text: str) -> list[list[int]]:
        """Token id windows of a non-empty text: one unless it is longer than
        ``max_length``; consecutive windows overlap, so no token is left out."""
        ...

    def logits(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits, shape (len(rows), len(labels)), for at most ``batch_size`` windows
        (rows of any lengths up to ``max_length``). May raise: the guard's error policy
        turns any exception into a degraded result."""
        ...

    def last_window(self, text: str) -> str:
        """The end of ``text`` that fills one window (a stream rail's rolling window
        over an accumulating reply)."""
        ...


#: A ``FakeScorer`` handler: the text of one window -> class probabilities.
Handler = Callable[[str], Mapping[str, float]]


class ScorerBase:
    """The Scorer attributes both shipped scorers hold the same way (set ``_labels``,
    ``_max_length`` and ``_batch_size`` in ``__init__``); ``provider`` and the methods
    are each scorer's own."""

    _labels: tuple[str, ...]
    _max_length: int
    _batch_size: int

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def batch_size(self) -> int:
        return self._batch_size


class FakeScorer(ScorerBase):
    """A deterministic scorer without a model: ``handler(window_text)`` gives the class
    probabilities of each window.

    A token is one character (its code point), so windows are ``max_length``
    characters overlapping by ``stride``, and the handler sees each window's exact
    text. The handler names probabilities for some classes; the first label (put the
    safe class first) gets what is left of 1. As from a real softmax, no probability
    comes back exactly 0 or 1 (a zero becomes 1e-12), so a threshold of 1.0 is never
    reached. A handler that raises makes the guard's error policy decide, as a failing
    model would.

    Args:
        handler: window text -> {class: probability}; probabilities in [0, 1],
            summing to at most 1, classes among ``labels``.
        labels: class names; the first one takes the remaining probability.
        max_length: characters per window.
        stride: characters shared by consecutive windows (default a quarter of
            ``max_length``): a phrase no longer than this always lies whole in a window.
        batch_size: the most windows one ``logits`` call takes.
        provider: reported in ``GuardResult.provider``.

    Raises:
        ConfigError: fewer than two labels, or a window length / stride / batch size
            out of range.

    Example:
        >>> scorer = FakeScorer(lambda t: {"hate": 0.9} if "idiots" in t else {},
        ...                     labels=("safe", "hate"))
        >>> Guard.from_scorer(scorer).check("you are all idiots").label
        'hate'
    """

    def __init__(
        self,
        handler: Handler,
        *,
        labels: Sequence[str] = ("safe", "toxic"),
        max_length: int = 512,
        stride: int | None = None,
        batch_size: int = 32,
        provider: str = "fake",
    ) -> None:
        self.handler = handler
        self._labels = tuple(labels)
        if len(self._labels) < 2 or len(set(self._labels)) != len(self._labels):
            raise ConfigError(f"FakeScorer needs two or more distinct labels, not {labels!r}")
        if max_length < 2:
            raise ConfigError(f"FakeScorer max_length must be >= 2, not {max_length}")
        self.stride = max_length // 4 if stride is None else stride
        if not 0 <= self.stride < max_length:
            raise ConfigError(f"FakeScorer stride must be in [0, {max_length}), not {stride}")
        if batch_size < 1:
            raise ConfigError(f"FakeScorer batch_size must be >= 1, not {batch_size}")
        self._max_length, self._batch_size, self._provider = max_length, batch_size, provider
        self._index = {c: i for i, c in enumerate(self._labels)}

    @classmethod
    def from_keywords(
        cls,
        rules: Mapping[str, str],
        *,
        score: float = 0.9,
        labels: Sequence[str] = ("safe", "toxic"),
        max_length: int = 512,
        stride: int | None = None,
        batch_size: int = 32,
        provider: str = "fake",
    ) -> FakeScorer:
        """A scorer whose handler gives ``score`` to ``rules[keyword]`` for the first
        keyword (in ``rules``' order) found in a window, case-insensitively; a window
        with none is all first label. The other arguments are the constructor's.

        Raises:
            ConfigError: a rule names a class not in ``labels``, or ``score`` is not
                in [0, 1].
        """
        unknown = sorted(set(rules.values()) - set(labels))
        if unknown:
            raise ConfigError(f"keyword rules name classes {unknown} not in labels {list(labels)}")
        if not 0 <= score <= 1:
            raise ConfigError(f"FakeScorer score must be in [0, 1], not {score!r}")
        lowered = [(k.lower(), c) for k, c in rules.items()]

        def handler(text: str) -> Mapping[str, float]:
            low = text.lower()
            return next(({c: score} for k, c in lowered if k in low), {})

        return cls(
            handler,
            labels=labels,
            max_length=max_length,
            stride=stride,
            batch_size=batch_size,
            provider=provider,
        )

    @property
    def provider(self) -> str:
        return self._provider

    def encode(self, text: str) -> list[list[int]]:
        ids = [ord(ch) for ch in text]
        size, step = self._max_length, self._max_length - self.stride
        return [ids[i : i + size] for i in range(0, max(len(ids) - self.stride, 1), step)]

    def logits(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        if len(rows) > self._batch_size:
            raise ValueError(f"{len(rows)} rows, more than batch_size {self._batch_size}")
        out = np.empty((len(rows), len(self._labels)), dtype=np.float64)
        for i, row in enumerate(rows):
            out[i] = self._log_probs("".join(map(chr, row)))
        return out

    def last_window(self, text: str) -> str:
        return text[-self._max_length :]

    def _log_probs(self, text: str) -> list[float]:
        given = self.handler(text)
        probs = [0.0] * len(self._labels)
        for name, p in given.items():
            if name not in self._index:
                raise ValueError(f"FakeScorer handler named class {name!r}, not in {self._labels}")
            if isinstance(p, bool) or not 0 <= p <= 1:
                raise ValueError(f"FakeScorer handler gave {name!r} probability {p!r}")
            probs[self._index[name]] = float(p)
        rest = 1.0 - sum(probs)
        if rest < -1e-6:
            raise ValueError(f"FakeScorer handler probabilities sum to {1 - rest:.6f} > 1")
        probs[0] += max(rest, 0.0)
        # softmax(log p) == p. Like a real softmax, never exactly 0 or 1: a threshold of
        # 1.0 ("off", as policies and tests write it) must stay out of reach.
        return [math.log(max(p, _FLOOR)) for p in probs]

    def __repr__(self) -> str:
        return (
            f"FakeScorer(labels={list(self._labels)}, max_length={self._max_length}, "
            f"stride={self.stride})"
        )
