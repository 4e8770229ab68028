"""What a ``Guard`` does with the model's scores: thresholds, actions, errors, latency.

A ``Policy`` is a small frozen value the caller writes once::

    Policy(thresholds={"hate": 0.3}, action="replace", on_error="closed",
           latency_budget_ms=20)

Decision rule (``Guard.check``), per window of the text, the worst window deciding:

- ``toxic_score`` = 1 - P(safe classes); a violation when it reaches ``toxic_threshold``
  (default: ``guard.json``'s ``thresholds.toxic``, chosen on validation data at export;
  ``target_recall`` / ``target_fpr`` pick another point of its validation curve).
  Skipped when the artifact knows no safe class (the score would always be 1).
- a category is *triggered* when its probability reaches its threshold (default:
  ``guard.json``'s ``thresholds.per_class``; ``thresholds`` here overrides per class);
  any triggered category is a violation.
- the result's ``label`` is the likeliest class of the deciding window, except on a
  violation (or a fail-closed degraded result): then the likeliest class that is not
  safe, so a blocked text never reads as blocked for being "safe".

Actions on a violation (``Action``): ``block`` (``allowed=False``; hooks withhold the
content), ``replace`` (``allowed=False``; hooks substitute ``refusal``), ``flag``
(``allowed=True``, the result lists what triggered; hooks pass the content through).
``raise_on_violation`` makes ``check`` raise ``GuardViolation`` (carrying the result)
instead of returning a disallowed result: an opt-in, the return type never changes.

``on_error``: when the model cannot decide (ONNX Runtime failed, the latency budget ran
out before every window was scored, or the text is longer than ``max_windows`` /
``max_chars`` allow, with no violation in the part scored) the result is ``degraded=True`` and
``allowed=False`` (``closed``, the default) or ``allowed=True`` (``open``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from guardrail_dro.errors import ConfigError, GuardViolation
from guardrail_dro.serve.calibration import OperatingCurve
from guardrail_dro.serve.result import GuardResult

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_INPUT_TURNS",
    "DEFAULT_MAX_WINDOWS",
    "DEFAULT_REFUSAL",
    "Action",
    "GuardResult",
    "GuardViolation",
    "InputTurns",
    "OnError",
    "Policy",
    "threshold_for_target",
]

DEFAULT_REFUSAL = "I can't help with that."
#: Windows a check scores by default (``Policy.max_windows``): about 2,400 tokens with
#: the default stride, ~8,400 characters of English; a longer text is degraded, saying
#: so. Why 24: assistant replies are the output rail's texts, and at 8 (~3,200
#: characters) a 4,480-character recipe was refused under the default fail-closed
#: policy, streamed in full first; at 4 a 1,700-character one was. A 1 MB text is
#: bounded by ``max_chars`` (a length check), so this bound only prices a text just
#: under it: 24 windows cost 0.54-0.60 s where 8 cost 0.17-0.21 s (fp32 MiniLM, 2-core
#: CPU, 2026-12-07), and ordinary texts (one window) are unchanged.
DEFAULT_MAX_WINDOWS = 24
#: Characters a check looks at by default (``Policy.max_chars``): a longer text is not
#: scored (degraded, saying so), so a 1 MB text costs a length check, and a text with
#: few tokens per character (one long "word") cannot make the tokenizer's cost grow.
DEFAULT_MAX_CHARS = 16_384
#: Texts an input rail scores for one call by default under ``input_turns`` ``user`` /
#: ``all`` (``Policy.max_input_turns``): more is a degraded result under ``on_error``
#: (closed: refused), never the most recent turns alone, which a caller could pad past
#: an earlier harmful turn. Each text costs one window or more, so without it a 1 MB
#: body of tiny turns was tens of thousands of model windows; 256 short texts cost
#: about 0.3-1 s on a 2-core CPU (the MiniLM guards' batch throughput, 280-940 texts/s).
DEFAULT_MAX_INPUT_TURNS = 256


class Action(enum.StrEnum):
    """What a violation does."""

    BLOCK = "block"
    REPLACE = "replace"
    FLAG = "flag"


class InputTurns(enum.StrEnum):
    """Which turns of a message list the input rail checks, each scored alone.

    ``last`` (the default, as NeMo Guardrails): the last user turn, the one an app adds;
    earlier turns were checked when they were added. That holds only while the app
    writes the history: a caller who sends the whole list (an API client of ``serve
    --upstream``, an app forwarding client-supplied history) can put the request in an
    earlier user turn, or write an assistant turn ("Sure, step 1: ...") and end with
    "continue". ``user`` checks every user turn; ``all`` every turn with text (system /
    developer, user, assistant with its refusal and tool-call arguments, tool results,
    Anthropic's ``system`` parameter). Cost grows with the conversation: each request
    re-checks its history, each turn one text under ``max_chars`` / ``max_windows``.
    """

    LAST = "last"
    USER = "user"
    ALL = "all"


class OnError(enum.StrEnum):
    """The decision when the model could not give one (always ``degraded=True``)."""

    CLOSED = "closed"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class Policy:
    """How a guard turns scores into a decision.

    Attributes:
        thresholds: per-category probability thresholds overriding ``guard.json``'s.
        toxic_threshold: threshold on 1 - P(safe); None: ``guard.json``'s.
        target_recall, target_fpr: instead of a threshold, the point of the guard's
            validation operating curve (``guard.json``) with the lowest FPR at recall >=
            ``target_recall``, or the highest recall at FPR <= ``target_fpr``.
        action: block, replace or flag (see the module docstring).
        refusal: the message ``replace`` substitutes for the content.
        raise_on_violation: ``check`` raises ``GuardViolation`` instead of returning a
            disallowed result (degraded fail-closed results included).
        on_error: ``closed`` (disallow) or ``open`` (allow) when the model cannot decide.
        latency_budget_ms: stop scoring a long text's windows once this is spent (the
            result is then degraded); ``acheck`` also stops waiting for the model. None:
            no budget.
        max_windows: score at most this many windows of a long text (default
            ``DEFAULT_MAX_WINDOWS``); more is a degraded result saying so, never a silent
            truncation, and only the prefix these windows need is tokenized. None: every
            window.
        max_chars: a text longer than this (default ``DEFAULT_MAX_CHARS``) is not
            scored at all: a degraded result saying so, decided by ``on_error``, at the
            cost of a length check (a 1 MB text: microseconds, not minutes). None: any
            length, its first ``max_windows`` windows scored. With both defaults a check
            costs at most ``max_windows`` model windows; set both to None to score every
            window of any text (~10-20 ms a window on an idle CPU).
        input_turns: which turns of a message list the input rail checks: ``last`` (the
            last user turn, the default), ``user`` (every user turn) or ``all`` (every
            turn with text); see ``InputTurns`` for why and what it costs.
        max_input_turns: an input rail given more texts than this (default
            ``DEFAULT_MAX_INPUT_TURNS``: one a turn under ``user`` / ``all``, one a str
            variable of a LangChain prompt) scores none and decides by ``on_error``,
            degraded, saying so. None: no bound. Output and tool rails are not bounded by it.
    """

    thresholds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    toxic_threshold: float | None = None
    target_recall: float | None = None
    target_fpr: float | None = None
    action: Action = Action.REPLACE
    refusal: str = DEFAULT_REFUSAL
    raise_on_violation: bool = False
    on_error: OnError = OnError.CLOSED
    latency_budget_ms: float | None = None
    max_windows: int | None = DEFAULT_MAX_WINDOWS
    max_chars: int | None = DEFAULT_MAX_CHARS
    input_turns: InputTurns = InputTurns.LAST
    max_input_turns: int | None = DEFAULT_MAX_INPUT_TURNS

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "action", Action(self.action))
        except ValueError:
            raise ConfigError(
                f"Policy.action must be one of {[a.value for a in Action]}, not {self.action!r}"
            ) from None
        try:
            object.__setattr__(self, "input_turns", InputTurns(self.input_turns))
        except ValueError:
            raise ConfigError(
                f"Policy.input_turns must be one of {[t.value for t in InputTurns]}, "
                f"not {self.input_turns!r}"
            ) from None
        try:
            object.__setattr__(self, "on_error", OnError(self.on_error))
        except ValueError:
            raise ConfigError(
                f"Policy.on_error must be 'closed' or 'open', not {self.on_error!r}"
            ) from None
        if not isinstance(self.thresholds, Mapping):
            raise ConfigError(
                f"Policy.thresholds must be a mapping class -> threshold, "
                f"not {type(self.thresholds).__name__}"
            )
        if not isinstance(self.raise_on_violation, bool):
            raise ConfigError(
                f"Policy.raise_on_violation must be a bool, not {self.raise_on_violation!r}"
            )
        thr = dict(self.thresholds)
        for name, value in thr.items():
            _check_unit(f"thresholds[{name!r}]", value)
        object.__setattr__(self, "thresholds", MappingProxyType(thr))
        values = (self.toxic_threshold, self.target_recall, self.target_fpr)
        given = {n: v for n, v in zip(_POINT, values, strict=True) if v is not None}
        for name, value in given.items():
            _check_unit(name, value, zero=name == "toxic_threshold")
        if len(given) > 1:
            raise ConfigError(f"Policy takes one of {list(_POINT)}, not {' and '.join(given)}")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise ConfigError(
                f"Policy.latency_budget_ms must be > 0 or None, not {self.latency_budget_ms!r}"
            )
        for name in ("max_windows", "max_chars", "max_input_turns"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"Policy.{name} must be an int >= 1 or None, not {v!r}")
        if not isinstance(self.refusal, str):
            raise ConfigError(f"Policy.refusal must be a str, not {type(self.refusal).__name__}")

    def error_action(self) -> str:
        """The action of a decision the model could not give (``on_error``): allow when
        open, else this policy's block or replace."""
        if self.on_error is OnError.OPEN:
            return "allow"
        return "replace" if self.action is Action.REPLACE else "block"

    def replacement_for(self, action: str) -> str | None:
        """What the hooks put in place of the content under ``action``: the refusal
        (replace), "" (block), None (allow, flag)."""
        if action == "replace":
            return self.refusal
        return "" if action == "block" else None


_POINT = ("toxic_threshold", "target_recall", "target_fpr")  # one at most: the operating point


def _check_unit(name: str, value: object, *, zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"Policy.{name} must be a number in [0, 1], not {value!r}")
    if not zero and value == 0:
        raise ConfigError(f"Policy.{name} must be in (0, 1], not 0")


def threshold_for_target(
    curve: OperatingCurve | None, target_recall: float | None, target_fpr: float | None
) -> float:
    """The threshold of a guard's stored curve for ``Policy(target_recall=...)`` or
    ``Policy(target_fpr=...)`` (exactly one given).

    Raises:
        ConfigError: no curve (a guard exported without validation data, or by a version
            before calibration), both or neither target, a target out of range.
    """
    if (target_recall is None) == (target_fpr is None):
        raise ConfigError("give exactly one of target_recall and target_fpr")
    if curve is None:
        raise ConfigError(
            "target_recall / target_fpr need the guard's validation operating curve, which "
            "its guard.json lacks (exported without --valid, or by an older version): "
            "re-export with --valid, or give toxic_threshold"
        )
    if target_recall is not None:
        return curve.choose("target_recall", target_recall).threshold
    try:
        return curve.choose("target_fpr", target_fpr).threshold
    except ConfigError as exc:  # a floor under the stored curve: say where it comes from
        raise ConfigError(
            f"{exc}. Where guard.json keeps per-class thresholds (calibration.per_class), "
            "they block some safe validation texts whatever the toxic threshold: re-export "
            f"with --target-fpr {target_fpr}, which keeps them only if they help that target"
        ) from None
