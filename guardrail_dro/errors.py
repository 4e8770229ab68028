"""The exception tree of guardrail-dro, every class of it in this one module.

Every error the library raises on purpose derives from ``GuardrailError``::

    GuardrailError
    ├── DataError                 bad input data: the message names what was wrong
    │   ├── ReaderError           a file could not be read: carries path, line, column
    │   └── SchemaError           a label outside the label schema, or a bad schema
    ├── ConfigError               a configuration value that cannot work
    ├── DependencyError           an optional dependency is missing (also an ImportError)
    ├── ArtifactError             a model or guard directory is missing files or tampered
    │   └── ExportParityError     an exported model disagrees with its reference:
    │                             ``mismatches`` lists every failed check (``Mismatch``)
    ├── AnnotatorError            an annotation run that cannot go on
    │   ├── RepeatedAPIError      the same non-transient API error for many items in a
    │   │                         row: carries annotator, HTTP status, message, count
    │   └── BatchPendingError     a batch job still running: carries the job ids
    ├── GuardViolation            a blocked text when ``Policy.raise_on_violation``:
    │                             carries the ``GuardResult`` and the rail
    └── UnguardedPathError        a guarded SDK client's path that would pass a prompt
                                  or a reply unchecked: carries the path

``DataError`` and ``ConfigError`` subclass ``ValueError`` so that callers that
already catch ``ValueError`` keep working; ``DependencyError`` subclasses
``ImportError`` for the same reason, and ``UnguardedPathError`` subclasses
``NotImplementedError``.

The classes live here, below every other module, so any floor may raise any of them;
``annotators``, ``export`` and ``guardrail_dro.serve`` re-export the ones they raise,
and ``guardrail_dro`` re-exports them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: errors.py imports nothing of the package
    from guardrail_dro.serve.policy import GuardResult

__all__ = [
    "UNCHECKED",
    "AnnotatorError",
    "ArtifactError",
    "BatchPendingError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "ExportParityError",
    "GuardViolation",
    "GuardrailError",
    "Mismatch",
    "ReaderError",
    "RepeatedAPIError",
    "SchemaError",
    "UnguardedPathError",
    "require",
]


class GuardrailError(Exception):
    """Base class of every error raised on purpose by guardrail-dro."""


class DataError(GuardrailError, ValueError):
    """Input data that cannot be used as given."""


class ReaderError(DataError):
    """A dataset file with a problem at a known place.

    Attributes:
        path: the file.
        line: 1-based line number in the file (the header is line 1), or None.
        column: the column or field name involved, or None.
        reason: the message without the place.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = message
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


class SchemaError(DataError):
    """A label that is not in the label schema, or a schema that is inconsistent."""


class ConfigError(GuardrailError, ValueError):
    """A configuration value that cannot work."""


class DependencyError(GuardrailError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ArtifactError(GuardrailError):
    """A model or guard directory is missing a file, has a wrong version, or fails its checksum."""


UNCHECKED = "unchecked"  # Mismatch.check of a variant whose parity could not be measured


@dataclass(frozen=True)
class Mismatch:
    """One failed export check: what, on which variant, the number measured and its limit."""

    variant: str
    check: str
    measured: float
    limit: float
    detail: str = ""

    def __str__(self) -> str:
        if self.check == UNCHECKED:
            return f"{self.variant}: parity not measured; {self.detail}"
        s = f"{self.variant}: {self.check} = {self.measured:.6g} (limit {self.limit:g})"
        return f"{s}; {self.detail}" if self.detail else s


class ExportParityError(ArtifactError):
    """An exported model does not match its reference; ``mismatches`` lists every failure."""

    def __init__(self, mismatches: Sequence[Mismatch], *, hint: str = "") -> None:
        self.mismatches = list(mismatches)
        lines = "\n".join(f"  - {m}" for m in self.mismatches)
        msg = f"export parity check failed ({len(self.mismatches)} mismatch(es)):\n{lines}"
        super().__init__(msg + (f"\n{hint}" if hint else ""))


class AnnotatorError(GuardrailError):
    """An annotation run that cannot go on (bad annotator spec, unusable reply shape)."""


class RepeatedAPIError(AnnotatorError):
    """The same non-transient API error came back for many items in a row: the run stops
    instead of making one failing (and often billed) call per item.

    Attributes:
        annotator: whose calls failed.
        status: the HTTP status (401, 400, 404...); 0 when no answer came at all.
        message: the error as the last call reported it.
        count: how many calls in a row failed with it.
    """

    def __init__(
        self, *, annotator: str, status: int, message: str, count: int, where: str | None = None
    ) -> None:
        self.annotator, self.status, self.message, self.count = annotator, status, message, count
        if where is None and status == 200:  # answered, but unusable (a cut reply)
            super().__init__(
                f"{annotator}: stopped after {count} replies in a row came back unusable "
                f"(the calls succeeded, so retrying cannot help): {message}"
            )
        elif where is None:
            super().__init__(
                f"{annotator}: stopped after {count} calls in a row failed with HTTP {status} "
                f"(not transient, so retrying cannot help): {message}"
            )
        else:  # no HTTP answer at all: say where the calls went
            super().__init__(
                f"{annotator}: stopped after {count} calls in a row got no answer from "
                f"{where}, each after its retries: {message}. Is the server running, and "
                "is --base-url right? What finished is cached; run again to resume"
            )


class BatchPendingError(AnnotatorError):
    """A batch job is still running when the caller stopped waiting.

    Attributes:
        job_ids: the provider's ids of the jobs still running; they are kept in the
            cache, so running the same command again polls them instead of paying twice.
    """

    def __init__(self, message: str, *, job_ids: list[str]) -> None:
        self.job_ids = job_ids
        super().__init__(message)


class GuardViolation(GuardrailError):
    """Raised instead of returning a disallowed result when ``Policy.raise_on_violation``.

    Attributes:
        result: the GuardResult (``degraded`` tells a model decision from fail-closed).
        rail: ``input``, ``output`` or None for a plain check.
    """

    def __init__(self, result: GuardResult, rail: str | None = None) -> None:
        self.result, self.rail = result, rail
        what = f"the {rail}" if rail else "the text"
        why = (
            f"degraded ({result.error})"
            if result.degraded
            else f"{result.label} (toxic {result.toxic_score:.2f}; "
            f"triggered: {', '.join(result.triggered) or 'none'})"
        )
        super().__init__(f"guard blocked {what}: {why}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its result, not its message (a process pool pickles it).
        return (type(self), (self.result, self.rail))


class UnguardedPathError(GuardrailError, NotImplementedError):
    """A call on a client from ``guard.wrap`` that the guard does not check (e.g.
    ``chat.completions.with_raw_response.create``): refused rather than let through.

    Attributes:
        path: the refused path on the client, e.g. ``responses.create``.
    """

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or raise a DependencyError naming the extra.

    Args:
        module: dotted module name, e.g. ``"torch"``.
        extra: the extra of guardrail-dro that installs it, e.g. ``"train"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{module!r} is needed here but is not installed: pip install 'guardrail-dro[{extra}]'"
        ) from exc
