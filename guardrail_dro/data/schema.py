"""The label schema: class names, which of them are safe, and what each means.

Labels are strings everywhere (``"14"``, ``"hate"``), so a schema read from a
file and labels read from a CSV compare without any coercion. The order of
``classes`` fixes the class index used by models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from guardrail_dro.data.names import natural_key
from guardrail_dro.data.rows import DuplicateKeyError, json_object_pairs, not_utf8_encoding
from guardrail_dro.errors import SchemaError

__all__ = ["LabelSchema"]


class LabelSchema(BaseModel):
    """The classes a guard predicts.

    Example:
        >>> s = LabelSchema(classes=("safe", "hate"), safe=("safe",))
        >>> s.index("hate"), s.num_classes, s.is_binary_decision
        (1, 2, True)
    """

    # forbid: a misspelt key ("safe_classes") was ignored, leaving no class safe.
    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[str, ...] = Field(min_length=2, description="Class names, in index order.")
    safe: tuple[str, ...] = Field(
        default=(), description="Classes that are not toxic; empty when unknown."
    )
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="Optional meaning of each class, used in LLM prompts."
    )

    @field_validator("classes", "safe", mode="before")
    @classmethod
    def _names_to_str(cls, v: object, info: ValidationInfo) -> object:
        # A schema JSON may name classes by number ({"classes": [0, 1, 2]}); labels are
        # strings everywhere, so 0 is the class "0". Anything else is refused by name.
        if not isinstance(v, list | tuple):
            return v
        out = []
        for x in v:
            if isinstance(x, bool) or not isinstance(x, str | int):
                raise SchemaError(
                    f"label schema field {info.field_name!r}: class names are strings (or "
                    f"integers), not {x!r} ({type(x).__name__})"
                )
            out.append(str(x))
        return tuple(out)

    @model_validator(mode="after")
    def _check(self) -> LabelSchema:
        if len(set(self.classes)) != len(self.classes):
            dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise SchemaError(f"label schema lists classes more than once: {dup}")
        if any(not c.strip() for c in self.classes):
            raise SchemaError("label schema has an empty class name")
        for field, names in (("safe", self.safe), ("descriptions", tuple(self.descriptions))):
            unknown = [n for n in names if n not in self.classes]
            if unknown:
                raise SchemaError(
                    f"label schema field {field!r} names classes that are not in 'classes': "
                    f"{unknown} (classes: {list(self.classes)})"
                )
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_binary_decision(self) -> bool:
        """True when the safe classes are known, so toxic-vs-safe metrics make sense."""
        return 0 < len(self.safe) < len(self.classes)

    def index(self, label: str) -> int:
        """The index of ``label``; raises SchemaError naming the known classes."""
        try:
            return self._index_map[label]
        except KeyError:
            raise SchemaError(
                f"label {label!r} is not in the label schema {list(self.classes)}"
            ) from None

    def __contains__(self, label: object) -> bool:
        return label in self._index_map

    @cached_property
    def _index_map(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def safe_mask(self) -> list[bool]:
        """Per class index, whether that class is safe."""
        return [c in self.safe for c in self.classes]

    def describe(self, label: str) -> str:
        return self.descriptions.get(label, "")

    @classmethod
    def from_labels(cls, labels: Iterable[str], *, safe: Iterable[str] = ()) -> LabelSchema:
        """The sorted set of labels seen (natural order). No class is assumed safe."""
        seen = sorted({str(x) for x in labels}, key=natural_key)
        if len(seen) < 2:
            raise SchemaError(
                f"cannot infer a label schema from fewer than two distinct labels (saw {seen}); "
                "pass --labels or --schema"
            )
        return cls.build(classes=tuple(seen), safe=tuple(safe))

    @classmethod
    def build(cls, **fields: object) -> LabelSchema:
        """Construct, raising SchemaError (not pydantic's ValidationError) with the reason
        and the field it is about (``safe: Input should be a valid list``)."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise SchemaError("; ".join(map(_reason, exc.errors()))) from None

    @classmethod
    def parse_list(cls, text: str, *, safe: str | None = None) -> LabelSchema:
        """From ``--labels a,b,c`` and ``--safe a``."""
        classes = tuple(x.strip() for x in text.split(",") if x.strip())
        safe_t = tuple(x.strip() for x in (safe or "").split(",") if x.strip())
        return cls.build(classes=classes, safe=safe_t)

    @classmethod
    def load(cls, path: str | Path) -> LabelSchema:
        """Read a schema JSON file: ``{"classes": [...], "safe": [...], "descriptions": {...}}``."""
        path = Path(path)
        try:
            data = path.read_bytes()
            if (other := not_utf8_encoding(data)) is not None:
                raise SchemaError(f"{path}: {other}, not UTF-8; save the label schema as UTF-8")
            # utf-8-sig: a byte-order mark (Windows editors write one) is skipped.
            raw = json.loads(data.decode("utf-8-sig"), object_pairs_hook=json_object_pairs)
        except DuplicateKeyError as exc:
            raise SchemaError(
                f"{path}: the key {exc.key!r} appears twice in one object (JSON would keep "
                "the last silently): keep one"
            ) from None
        except FileNotFoundError:
            raise SchemaError(f"label schema file not found: {path}") from None
        except OSError as exc:
            raise SchemaError(f"{path}: cannot read the label schema: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise SchemaError(
                f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                f"{exc.start}); save the label schema as UTF-8"
            ) from None
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise SchemaError(f"{path}: a label schema is a JSON object with 'classes'")
        try:
            return cls.build(**raw)
        except SchemaError as exc:
            raise SchemaError(f"{path}: not a valid label schema: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def _reason(error: ErrorDetails) -> str:
    """One pydantic error as ``field: what was wrong``; our own validators' messages
    already name their field and are kept as they are."""
    if error["type"] == "value_error":
        return error["msg"].removeprefix("Value error, ")
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        known = ", ".join(LabelSchema.model_fields)
        return f"{where}: not a label schema field (the fields are {known})"
    msg = error["msg"]
    if error["type"] == "tuple_type":  # a JSON array, whatever pydantic calls it
        msg = f"Input should be a valid list, not {error['input']!r}"
    return f"{where}: {msg}" if where else msg
