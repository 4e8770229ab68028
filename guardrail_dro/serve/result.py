"""``GuardResult``: the answer of every check, whatever happened.

A plain frozen value with no model and no policy in it, so the rails, the HTTP server
and user code can read, compare and serialise it (``to_dict``, ``to_openai_moderation``)
without loading anything. ``guardrail_dro.serve.policy`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

__all__ = ["GuardResult"]


@dataclass(frozen=True, slots=True)
class GuardResult:
    """The answer of every check, whatever happened (compare two with ``==``: the
    latency is left out of the comparison).

    Attributes:
        allowed: False when the content must not pass (violation under block / replace,
            or fail-closed degraded).
        label: the class the decision is about, in the deciding window: on a violation
            (``action`` is not ``allow``) the most probable class that is not safe, never
            a safe one; otherwise the most probable class ("" when nothing was scored).
        label_name: ``label``'s readable name: its description in the label schema
            (``guard.json``), or ``label`` itself when the schema has none.
        scores: class -> probability in the deciding (worst) window.
        triggered: categories over their threshold in any window, in schema order.
        toxic_score: 1 - P(safe classes) in the deciding window.
        action: ``allow``, ``flag``, ``block`` or ``replace``: what the hooks do.
        replacement: text the hooks put in place of the content: the refusal (replace),
            "" (block), None (allow, flag).
        degraded: the decision came from ``Policy.on_error``, not from the model.
        error: why it is degraded (None otherwise).
        windows: windows scored (0 for an empty or whitespace-only text).
        worst_window: index of the deciding window.
        provider: the ONNX Runtime provider that ran the model (cpu, cuda, tensorrt).
        latency_ms: wall time of the call, tokenization included.
        categories: the guard's classes that are not safe, in schema order (the keys of
            ``to_openai_moderation``).
    """

    allowed: bool
    label: str
    scores: Mapping[str, float]
    triggered: tuple[str, ...]
    toxic_score: float
    action: str
    replacement: str | None = None
    degraded: bool = False
    error: str | None = None
    windows: int = 1
    worst_window: int = 0
    provider: str = "cpu"
    latency_ms: float = field(default=0.0, compare=False)
    label_name: str = ""
    categories: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickling and ``copy`` (process pools, task queues): the read-only ``scores``
        travel as a dict and come back read-only."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["scores"] = dict(self.scores)
        return (_rebuilt, (values,))

    def __hash__(self) -> int:
        """A result can key a dict or join a set like any frozen value (the read-only
        ``scores`` mapping hashes by its items)."""
        return hash(
            tuple(
                frozenset(self.scores.items()) if f.name == "scores" else getattr(self, f.name)
                for f in fields(self)
                if f.compare
            )
        )

    @property
    def violation(self) -> bool:
        """The model (or the error policy) found something: any action but ``allow``."""
        return self.action != "allow"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the CLI prints this)."""
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["scores"] = dict(self.scores)
        d["triggered"] = list(self.triggered)
        d["categories"] = list(self.categories)
        return d

    def to_openai_moderation(self) -> dict[str, Any]:
        """The result in the shape of one OpenAI moderation result, for code that
        already reads it.

        ``flagged`` is ``violation`` (the same as ``not allowed`` under block and
        replace; under ``flag`` the content passes but is still flagged). A category is
        true when it triggered, and the result's ``label`` is true whenever the result
        is flagged, so a violation of the summed toxic threshold alone still names a
        category. Only classes that are not safe appear; a class not scored (an empty
        text, a model error) scores 0.

        Example:
            >>> m = guard.check("how do I hurt someone with a knife").to_openai_moderation()
            >>> m["flagged"], m["categories"]
            (True, {'violence': True, 'hate': False})
            >>> {c: round(s, 3) for c, s in m["category_scores"].items()}
            {'violence': 0.9, 'hate': 0.0}
        """
        flagged = self.violation
        return {
            "flagged": flagged,
            "categories": {
                c: c in self.triggered or (flagged and c == self.label) for c in self.categories
            },
            "category_scores": {c: float(self.scores.get(c, 0.0)) for c in self.categories},
        }


def _rebuilt(values: dict[str, Any]) -> GuardResult:
    return GuardResult(**{**values, "scores": MappingProxyType(values["scores"])})
