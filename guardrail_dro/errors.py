"""The exception tree of guardrail-dro.

Every error the library raises on purpose derives from ``GuardrailError``::

    GuardrailError
    ├── DataError                 bad input data: the message names what was wrong
    │   ├── ReaderError           a file could not be read: carries path, line, column
    │   └── SchemaError           a label outside the label schema, or a bad schema
    ├── ConfigError               a configuration value that cannot work
    ├── DependencyError           an optional dependency is missing (also an ImportError)
    └── ArtifactError             a model or guard directory is missing files or tampered

``DataError`` and ``ConfigError`` subclass ``ValueError`` so that callers that
already catch ``ValueError`` keep working; ``DependencyError`` subclasses
``ImportError`` for the same reason.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "GuardrailError",
    "ReaderError",
    "SchemaError",
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


def require(module: str, extra: str):
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
