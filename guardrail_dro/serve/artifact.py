"""The guard artifact directory: what ``export`` writes and the serving ``Guard`` reads.

Layout::

    GUARD_DIR/
      model.onnx            fp32 graph: input_ids, attention_mask (int64, [batch, seq]) -> logits
      model.int8.onnx       optional: dynamic int8 quantization (CPU)
      model.fp16.onnx       optional: float16 weights (CUDA / TensorRT)
      tokenizer.json        Hugging Face fast tokenizer (``tokenizers.Tokenizer.from_file``)
      tokenizer_config.json, special_tokens_map.json, vocab.txt ...  (kept for transformers)
      guard.json            GuardManifest: labels, thresholds (and how they were calibrated),
                            max length, variants, sha256 of every other file, training
                            metrics, versions

``load_artifact(dir)`` reads ``guard.json``, checks its schema version, its own digest
(``manifest_sha256``: the sha256 of the canonical manifest without that field, which
catches a corrupted or hand-edited manifest; pass ``manifest_sha256=`` to pin the exact
manifest you reviewed, which also catches a deliberate edit that recomputed the
digest) and the sha256 of every listed file, and refuses files it does not list (except
under ``ALLOWED_UNLISTED``), raising ``ArtifactError`` with a message that names the
problem. Listed paths must be relative and stay inside the directory, and no path in
it (listed or present, a symlinked file or folder) may resolve outside it.

Nothing here imports torch or onnxruntime: this is the serving side, and
``import guardrail_dro`` stays light. ``GuardArtifact.load_tokenizer`` needs only the
``tokenizers`` library.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guardrail_dro.checksums import file_sha256
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ArtifactError, ConfigError
from guardrail_dro.outputs import as_path
from guardrail_dro.serve.calibration import Calibration
from guardrail_dro.serve.paths import escaping_links, unsafe_path

__all__ = [
    "ALLOWED_UNLISTED",
    "GUARD_MANIFEST",
    "GUARD_SCHEMA_VERSION",
    "VARIANT_FILES",
    "GuardArtifact",
    "GuardManifest",
    "ModelVariant",
    "Precision",
    "Thresholds",
    "load_artifact",
    "manifest_digest",
    "write_manifest",
]

GUARD_SCHEMA_VERSION = 1
GUARD_MANIFEST = "guard.json"

Precision = Literal["fp32", "int8", "fp16"]
VARIANT_FILES: dict[str, str] = {
    "fp32": "model.onnx",
    "int8": "model.int8.onnx",
    "fp16": "model.fp16.onnx",
}
# Top-level folders of a guard directory that may hold files guard.json does not list:
# a TensorRT engine cache (``SessionConfig(trt_engine_cache_dir=GUARD_DIR / "trt_cache")``).
# Nothing in them is ever read as a model or tokenizer file.
ALLOWED_UNLISTED: tuple[str, ...] = ("trt_cache",)
_DIGEST_FIELD = "manifest_sha256"


def manifest_digest(raw: dict[str, Any]) -> str:
    """The sha256 of a manifest (a JSON object) without its ``manifest_sha256`` field,
    serialised canonically (sorted keys, no whitespace)."""
    body = {k: v for k, v in raw.items() if k != _DIGEST_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Thresholds(BaseModel):
    """Default decision thresholds; a guard may override them at load time."""

    model_config = ConfigDict(frozen=True)

    toxic: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Block when the summed probability of the non-safe classes reaches this.",
    )
    per_class: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="A class is a triggered category when its probability reaches this.",
    )

    @classmethod
    def default_for(cls, schema: LabelSchema, value: float = 0.5) -> Thresholds:
        """``value`` for every non-safe class (every class when no class is known safe)."""
        toxic = [c for c in schema.classes if c not in schema.safe]
        return cls(toxic=value, per_class={c: value for c in toxic})


class ModelVariant(BaseModel):
    """One ONNX file of the artifact and what its export check measured."""

    model_config = ConfigDict(frozen=True)

    file: str
    precision: Precision
    providers: tuple[str, ...] = Field(
        description="Runtimes it is meant for, best first: tensorrt, cuda, cpu."
    )
    parity: dict[str, float] = Field(
        default_factory=dict,
        description="Export check numbers: max_abs_diff (fp32), agreement, "
        "worst_group_accuracy_drop (int8)...",
    )
    gate: Literal["validation", "probes"] | None = Field(
        None,
        description="What the export's parity gate ran on (int8): the validation split, or "
        "only the built-in probe texts (a weak gate: no --valid at export).",
    )


class GuardManifest(BaseModel):
    """``guard.json``: everything a guard needs to know about its model besides weights."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = GUARD_SCHEMA_VERSION
    created: str = Field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )
    label_schema: LabelSchema
    safe_classes: tuple[str, ...]
    thresholds: Thresholds
    calibration: Calibration | None = Field(
        None,
        description="How thresholds.toxic was chosen: objective, validation metrics and "
        "operating curve. None: an export from before calibration (uncalibrated).",
    )
    max_length: int = Field(ge=1, description="Tokens per text; longer texts are truncated.")
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    output_name: str = "logits"
    opset: int
    variants: dict[str, ModelVariant] = Field(description="precision -> variant; fp32 always.")
    tokenizer_files: tuple[str, ...]
    pad_token: str = Field("[PAD]", description="Padding token of the tokenizer.")
    train_metrics: dict[str, Any] = Field(
        default_factory=dict, description="Validation metrics recorded by the trainer."
    )
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="Training facts: method, backbone, groups, data hashes, created.",
    )
    versions: dict[str, str] = Field(
        default_factory=dict, description="Versions of the packages that made the artifact."
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="relative path -> sha256, every file but guard.json"
    )
    manifest_sha256: str | None = Field(
        None,
        description="sha256 of this manifest without this field (``manifest_digest``); "
        "written by ``write_manifest``, required by ``load_artifact``.",
    )

    @model_validator(mode="after")
    def _check(self) -> GuardManifest:
        if "fp32" not in self.variants:
            raise ValueError("variants must include fp32 (model.onnx)")
        for name, v in self.variants.items():
            if v.precision != name:
                raise ValueError(f"variant {name!r} has precision {v.precision!r}")
        unknown = [c for c in self.safe_classes if c not in self.label_schema.classes]
        if unknown:
            raise ValueError(f"safe_classes {unknown} are not in the label schema")
        toxic = [c for c in self.label_schema.classes if c not in self.safe_classes]
        if not toxic:
            raise ValueError("the label schema needs at least one class that is not safe")
        stray = [c for c in self.thresholds.per_class if c not in toxic]
        if stray:
            raise ValueError(
                f"thresholds.per_class has {stray}; its keys must be non-safe classes {toxic}"
            )
        paths = [*self.files, *(v.file for v in self.variants.values()), *self.tokenizer_files]
        unsafe = sorted({p for p in paths if unsafe_path(p)})
        if unsafe:
            raise ValueError(f"paths must be relative and inside the directory, not {unsafe}")
        return self

    def variant_file(self, precision: str) -> str:
        """The file name of a variant; ConfigError naming the variants that exist."""
        try:
            return self.variants[precision].file
        except KeyError:
            raise ConfigError(
                f"this guard artifact has no {precision!r} model; it has: "
                f"{', '.join(self.variants)}"
            ) from None


def write_manifest(directory: str | Path, manifest: GuardManifest) -> GuardManifest:
    """Record the sha256 of every file under ``directory`` and write ``guard.json``.

    Returns:
        The manifest with ``files`` and ``manifest_sha256`` filled in (the one written);
        its ``manifest_sha256`` is the value to pin in ``Guard.load(manifest_sha256=...)``.
    Raises:
        ArtifactError: a variant or tokenizer file named by the manifest is missing.
    """
    d = Path(directory)
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.name != GUARD_MANIFEST)
    digests = {p.relative_to(d).as_posix(): file_sha256(p) for p in files}
    missing = [
        f
        for f in (*(v.file for v in manifest.variants.values()), *manifest.tokenizer_files)
        if f not in digests
    ]
    if missing:
        raise ArtifactError(f"{d}: cannot seal the guard artifact, missing {missing}")
    sealed = manifest.model_copy(update={"files": digests, _DIGEST_FIELD: None})
    raw = json.loads(sealed.model_dump_json())
    sealed = sealed.model_copy(update={_DIGEST_FIELD: manifest_digest(raw)})
    (d / GUARD_MANIFEST).write_text(sealed.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return sealed


@dataclass(frozen=True)
class GuardArtifact:
    """A loaded (and verified) guard artifact directory."""

    path: Path
    manifest: GuardManifest

    @property
    def schema(self) -> LabelSchema:
        return self.manifest.label_schema

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.manifest.variants)

    def model_path(self, precision: str = "fp32") -> Path:
        """Path of the ONNX file for ``precision`` (fp32, int8, fp16)."""
        return self.path / self.manifest.variant_file(precision)

    def best_variant(self, provider: str) -> str:
        """The variant to run on a provider: int8 on CPU, fp16 on CUDA / TensorRT, else
        fp32. A variant the export could not check (no parity numbers) is never chosen
        here; name it explicitly (``precision="fp16"``) to run it."""
        prefer = ("int8", "fp32") if provider == "cpu" else ("fp16", "fp32")
        variants = self.manifest.variants
        return next(p for p in prefer if p in variants and (p == "fp32" or variants[p].parity))

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    def load_tokenizer(self, *, pad: bool = True):
        """A ``tokenizers.Tokenizer`` truncating to ``max_length`` and padding batches.

        Needs only the ``tokenizers`` library (no transformers, no torch).
        """
        from guardrail_dro.errors import require

        tokenizers = require("tokenizers", "cpu")
        tok = tokenizers.Tokenizer.from_file(str(self.tokenizer_path))
        tok.enable_truncation(max_length=self.manifest.max_length)
        if pad:
            pad_token = self.manifest.pad_token
            pad_id = tok.token_to_id(pad_token)
            if pad_id is None:
                raise ArtifactError(f"{self.tokenizer_path}: no padding token {pad_token!r}")
            tok.enable_padding(pad_id=pad_id, pad_token=pad_token)
        else:
            tok.no_padding()
        return tok


def _verify_files(d: Path, files: dict[str, str], required: Iterable[str], verify: bool) -> None:
    escaping = escaping_links(d, [*files, *required])
    if escaping:
        raise ArtifactError(
            f"{d}: guard artifact is not intact: paths that lead outside the directory "
            f"(symlinks are refused; copy the files in and re-export): {escaping}"
        )
    problems: list[str] = []
    for rel in required:
        if rel not in files:
            problems.append(f"{rel} is used but has no sha256 in {GUARD_MANIFEST}")
    present = (p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    unlisted = sorted(
        rel
        for rel in present
        if rel != GUARD_MANIFEST and rel not in files and rel.split("/")[0] not in ALLOWED_UNLISTED
    )
    if unlisted:
        problems.append(f"files not listed in {GUARD_MANIFEST}: {unlisted}")
    for rel, digest in files.items():
        p = d / rel
        if not p.is_file():
            problems.append(f"missing file {rel}")
        elif verify and file_sha256(p) != digest:
            problems.append(f"{rel} does not match its sha256 (changed or corrupted)")
    if problems:
        raise ArtifactError(f"{d}: guard artifact is not intact: " + "; ".join(problems))


def load_artifact(
    directory: str | Path, *, verify: bool = True, manifest_sha256: str | None = None
) -> GuardArtifact:
    """Read a guard artifact directory and verify it.

    Args:
        directory: the directory ``guardrail-dro export --out`` wrote.
        verify: check the sha256 of every file (about 0.2 s for a 90 MB model).
        manifest_sha256: the manifest digest you expect (printed by ``guardrail-dro
            export``); a manifest with any other digest is refused, even one whose
            stored digest was recomputed after an edit.

    Raises:
        ArtifactError: no directory or no ``guard.json``, a manifest that is not valid
            (thresholds outside [0, 1] or on safe classes, paths outside the directory),
            a schema version this guardrail-dro does not read, a manifest whose digest is
            not the stored one or the pinned one, a missing or unlisted file, a file
            whose bytes changed since export, or a path in the directory (a symlinked
            file or folder) that resolves outside it.

    Example:
        >>> art = load_artifact("guard/")
        >>> art.model_path("int8"), art.manifest.max_length
    """
    wrote = "the path (str or Path) of the folder `guardrail-dro export --out` wrote"
    d = as_path(directory, "guard_dir", wrote)
    mpath = d / GUARD_MANIFEST
    if d.is_file():
        raise ArtifactError(f"{d} is a file: guard_dir must be the guard artifact's folder")
    if not d.is_dir():
        raise ArtifactError(f"{d}: guard artifact directory not found")
    if not mpath.is_file():
        raise ArtifactError(
            f"{d} is not a guard artifact directory: no {GUARD_MANIFEST} "
            "(make one with `guardrail-dro export --model MODEL_DIR --out DIR`)"
        )
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{mpath}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{mpath}: expected a JSON object, got {type(raw).__name__}")
    version = raw.get("schema_version")
    if version != GUARD_SCHEMA_VERSION:
        fix = "re-export the model with this version"
        if isinstance(version, int) and version > GUARD_SCHEMA_VERSION:
            fix = "written by a newer guardrail-dro: upgrade this one"
        raise ArtifactError(
            f"{mpath}: guard.json schema version {version!r}; this guardrail-dro reads "
            f"version {GUARD_SCHEMA_VERSION} ({fix})"
        )
    digest = manifest_digest(raw)
    if _DIGEST_FIELD not in raw:
        raise ArtifactError(
            f"{mpath}: no manifest_sha256 (an export older than manifest digests, or a "
            "hand-written manifest): re-export the model"
        )
    if raw[_DIGEST_FIELD] != digest:
        raise ArtifactError(
            f"{mpath}: the manifest does not match its manifest_sha256 (edited or "
            f"corrupted; stored {raw.get(_DIGEST_FIELD)!r}, computed {digest!r})"
        )
    if manifest_sha256 is not None and manifest_sha256.lower() != digest:
        raise ArtifactError(
            f"{mpath}: manifest_sha256 is {digest}, not the pinned {manifest_sha256}"
        )
    try:
        manifest = GuardManifest.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{mpath}: not a valid guard manifest: {exc}") from None
    required = [v.file for v in manifest.variants.values()] + list(manifest.tokenizer_files)
    _verify_files(d, manifest.files, required, verify)
    return GuardArtifact(path=d, manifest=manifest)
