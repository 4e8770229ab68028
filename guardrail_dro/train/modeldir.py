"""The trained model directory: what ``train`` writes and ``evaluate`` / ``export`` read.

Layout (manifest version 2: a Hugging Face model folder, see ``hf_format``)::

    DIR/
      config.json           GuardrailDroConfig: encoder config, id2label / label2id, auto_map
      model.safetensors     encoder.* + classifier.* (the whole classifier, standard names)
      modeling_guardrail_dro.py   the model code, for ``trust_remote_code=True``
      tokenizer.json, tokenizer_config.json   the encoder's tokenizer
      README.md             the model card (``model_card.py``), generated from the manifest
      estimator.safetensors the soft-label weight estimator (methods ours, ours-agree)
      schema.json           the label schema
      manifest.json         TrainManifest: config, data hashes, valid metrics, learned
                            group weights and annotator weights, versions, file sha256

So ``AutoModelForSequenceClassification.from_pretrained(DIR)`` and
``pipeline("text-classification", model=DIR)`` load it (after ``import
guardrail_dro.train.hf_format``, or with ``trust_remote_code=True`` anywhere) and score
like ``TrainedModel.predict_proba``.

Version 1 directories (``encoder/`` Hugging Face folder + ``head.safetensors``, before
the Hugging Face format) still load; ``TrainedModel.load(old).save(new)`` rewrites one as
version 2. Saved as state, never as pickled objects; loading uses safetensors only.
"""

from __future__ import annotations

import datetime as _dt
import platform
import shutil
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, Field

from guardrail_dro.checksums import file_sha256, new_folder
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ArtifactError
from guardrail_dro.leftovers import sweep_leftovers
from guardrail_dro.outputs import as_path, replace_text
from guardrail_dro.train.background import BackgroundChoice
from guardrail_dro.train.estimator_state import load_estimator
from guardrail_dro.train.features import clone_embedder
from guardrail_dro.train.metrics import Metrics
from guardrail_dro.train.model import (
    ClassifierHead,
    GuardClassifier,
    WeightEstimator,
    load_backbone,
)
from guardrail_dro.train.result import SeedRun
from guardrail_dro.train.toxic_score import ToxicScoreChoice

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from guardrail_dro.train.result import TrainResult

__all__ = [
    "MANIFEST_VERSION",
    "READABLE_VERSIONS",
    "DistillRecord",
    "TrainManifest",
    "TrainedModel",
    "check_save_target",
    "package_versions",
]

MANIFEST_VERSION = 2
# Versions ``TrainedModel.load`` reads: 1 = encoder/ folder + head.safetensors.
READABLE_VERSIONS = (1, 2)


def package_versions(
    names: Sequence[str] = ("guardrail-dro", "torch", "transformers", "tokenizers", "numpy"),
) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


class DistillRecord(BaseModel):
    """``manifest.json`` ``distilled_from``: where a student came from and how.

    A student's manifest carries its teacher's method, data and background (the
    original trained model's, copied down a chain of students); this record says what
    the student itself learned from. Fields added later default to "not recorded", so
    older manifests load unchanged (``record_version`` 1)."""

    teacher_dir: str
    teacher_manifest_sha256: str
    teacher_layers: int
    teacher_valid_metrics: dict
    layers: list[int] = Field(description="Teacher layer indices the student started from.")
    config: dict
    texts: dict[str, int] = Field(description="Distillation texts per source.")
    epoch_valid: list[dict] = Field(default_factory=list, description="Per epoch, on valid.")
    best_epoch: int
    seconds: float
    record_version: int = Field(1, description="2: the chain and text hashes are recorded.")
    teacher_distilled_from: DistillRecord | None = Field(
        None, description="The teacher's own record when it was itself a student."
    )
    texts_sha256: str | None = Field(None, description="sha256 of the texts, JSON lines.")
    train_data_sha256: str | None = Field(
        None, description="Content hash of the labelled split the train texts came from."
    )
    valid_sha256: str | None = Field(None, description="Content hash of the valid split.")


class TrainManifest(BaseModel):
    """manifest.json of a trained model directory."""

    manifest_version: int = MANIFEST_VERSION
    created: str
    method: str
    config: dict
    backbone: str
    normalize: bool
    max_length: int
    num_classes: int
    head_hidden: int
    annotators: list[str]
    groups: list[str]
    data_hashes: dict[str, str]
    data_names: dict[str, str] = Field(
        default_factory=dict, description="split -> what it was read from (for the card)"
    )
    data_sizes: dict[str, int] = Field(default_factory=dict, description="split -> items")
    train_items: int | None = Field(
        None,
        description="Items trained on: train less those left out (also in valid, no "
        "usable label), plus any generated copies; None: not recorded (older manifests).",
    )
    valid_metrics: Metrics
    test_metrics: Metrics | None = Field(
        None, description="Set by `guardrail-dro evaluate --record` (never used to select)."
    )
    best_epoch: int
    group_weights: dict[str, float] | None = None
    annotator_weight_by_group: dict[str, dict[str, float]] | None = None
    background: BackgroundChoice | None = None
    """Background-safe text: sources, chosen weight and amount, grid, held-out block rate."""
    toxic_score: ToxicScoreChoice | None = None
    """The guard's toxic score, chosen on valid (train/toxic_score.py); None: 1 - P(safe)."""
    averaged_seeds: list[SeedRun] | None = None
    """The seeds whose heads the model's head averages (``train/seed_average.py``)."""
    distilled_from: DistillRecord | None = None
    """A distilled student's teacher and how it was taught (``train/distill.py``)."""
    notes: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    machine: str = Field(default_factory=platform.platform)
    files: dict[str, str] = Field(default_factory=dict, description="relative path -> sha256")


class TrainedModel:
    """A trained guard classifier with its tokenizer, schema and manifest."""

    def __init__(
        self,
        model: GuardClassifier,
        tokenizer: PreTrainedTokenizerBase,
        schema: LabelSchema,
        manifest: TrainManifest,
        estimator: WeightEstimator | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.schema = schema
        self.manifest = manifest
        self.estimator = estimator

    @classmethod
    def from_result(
        cls,
        result: TrainResult,
        data_hashes: dict[str, str],
        *,
        data_names: dict[str, str] | None = None,
        data_sizes: dict[str, int] | None = None,
    ) -> TrainedModel:
        """Assemble from a ``trainer.TrainResult``; names and sizes of the splits go to
        the manifest and the model card."""
        src = result.source
        emb = clone_embedder(src)
        mix = result.toxic_mix.to("cpu").eval() if result.toxic_mix is not None else None
        model = GuardClassifier(
            emb.encoder, result.head.to("cpu").eval(), normalize=emb.normalize, toxic=mix
        )
        cfg = result.config
        manifest = TrainManifest(
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            method=cfg.method,
            config=cfg.model_dump(mode="json"),
            backbone=src.backbone,
            normalize=emb.normalize,
            max_length=cfg.max_length,
            num_classes=result.schema.num_classes,
            head_hidden=result.head.hidden,  # an average of k seeds: k x cfg's
            annotators=list(result.annotators),
            groups=list(result.groups),
            data_hashes=data_hashes,
            data_names=data_names or {},
            data_sizes=data_sizes or {},
            train_items=result.train_items_used,
            valid_metrics=result.valid_metrics,
            best_epoch=result.best_epoch,
            group_weights=result.group_weights,
            annotator_weight_by_group=result.annotator_weight_by_group,
            background=result.background,
            toxic_score=result.toxic_score,
            averaged_seeds=result.averaged_seeds,
            notes=result.notes,
            versions=package_versions(),
        )
        est = result.estimator.to("cpu") if result.estimator is not None else None
        return cls(model, src.tokenizer, result.schema, manifest, est)

    # ---- io --------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        """Write the model directory, replacing an earlier model there as a whole.

        The files go to a fresh folder beside ``out_dir`` that is then swapped in, so no
        file of an earlier model (an old ``estimator.safetensors``) survives into the new
        one, and an interrupted save leaves the earlier model as it was.

        Raises:
            ArtifactError: ``out_dir`` is a file, or a non-empty folder that is not a
                model directory (no ``manifest.json``): it is never replaced.
        """
        out = check_save_target(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_folder(out.parent, f".{out.name}.new-")
        try:
            self._write(tmp)
            if out.exists():
                old = new_folder(out.parent, f".{out.name}.old-")
                out.rename(old / "model")
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return Path(out_dir)

    def _write(self, out: Path) -> None:
        """Write every file and the manifest into the empty folder ``out``."""
        from safetensors.torch import save

        from guardrail_dro.train.hf_format import write_hf_layout
        from guardrail_dro.train.model_card import model_card

        self.manifest.manifest_version = MANIFEST_VERSION
        write_hf_layout(
            out,
            self.model,
            self.tokenizer,
            self.schema,
            max_length=self.manifest.max_length,
            head_hidden=self.manifest.head_hidden,
            dropout=float(self.manifest.config.get("dropout") or 0.0),
        )
        (out / "README.md").write_text(model_card(self.manifest, self.schema), encoding="utf-8")
        if self.estimator is not None:
            # as bytes, written with open()'s mode: save_file writes 0600 (hf_format)
            state = {k: v.contiguous() for k, v in self.estimator.state_dict().items()}
            (out / "estimator.safetensors").write_bytes(save(state))
        self.schema.save(out / "schema.json")
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
        self.manifest.files = {str(p.relative_to(out)): file_sha256(p) for p in files}
        (out / "manifest.json").write_text(self.manifest.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, model_dir: str | Path, *, verify: bool = True) -> TrainedModel:
        """Load a model directory, checking that every file is there and unchanged.

        Raises:
            ArtifactError: missing file, unknown manifest version, checksum mismatch.
        """
        from safetensors.torch import load_file

        d = as_path(model_dir, "model_dir")
        mpath = d / "manifest.json"
        if not mpath.is_file():
            raise ArtifactError(f"{d} is not a trained model directory: no manifest.json")
        try:
            manifest = TrainManifest.model_validate_json(mpath.read_text())
        except ValueError as exc:
            raise ArtifactError(f"{mpath}: not a valid manifest: {exc}") from None
        if manifest.manifest_version not in READABLE_VERSIONS:
            newer = manifest.manifest_version > MANIFEST_VERSION
            raise ArtifactError(
                f"{mpath}: manifest version {manifest.manifest_version}, this "
                f"guardrail-dro reads versions {list(READABLE_VERSIONS)}"
                f"{' (written by a newer guardrail-dro: upgrade this one)' * newer}"
            )
        for rel, digest in manifest.files.items():
            p = d / rel
            if not p.is_file():
                raise ArtifactError(f"{d}: missing file {rel}")
            if verify and file_sha256(p) != digest:
                raise ArtifactError(
                    f"{d}: {rel} does not match its sha256 in manifest.json (changed or corrupted)"
                )
        schema = LabelSchema.load(d / "schema.json")
        if manifest.manifest_version == 1:
            tok, enc = load_backbone(d / "encoder")
            head = ClassifierHead(
                enc.config.hidden_size, manifest.num_classes, manifest.head_hidden
            )
            head.load_state_dict(load_file(d / "head.safetensors"))
            model = GuardClassifier(enc, head, normalize=manifest.normalize)
        else:
            from guardrail_dro.train.hf_format import read_hf_layout

            tok, model = read_hf_layout(
                d,
                num_classes=manifest.num_classes,
                head_hidden=manifest.head_hidden,
                normalize=manifest.normalize,
                safe=schema.safe_mask(),
            )
        dim = model.encoder.config.hidden_size
        estimator = None
        if "estimator.safetensors" in manifest.files:  # checked above like every file
            estimator = load_estimator(load_file(d / "estimator.safetensors"), dim, manifest)
        return cls(model, tok, schema, manifest, estimator)

    @classmethod
    def record_test_metrics(
        cls,
        model_dir: str | Path,
        metrics: Metrics,
        *,
        data_name: str | None = None,
        data_hash: str | None = None,
    ) -> TrainManifest:
        """Add test metrics to a model directory's manifest and regenerate its card.

        The directory is verified first. ``manifest.json`` pins ``README.md``'s sha256,
        and two files cannot be replaced in one atomic step: replaced one after the
        other (the card, then the manifest), a crash or a full disk between the two left
        the new card beside the old manifest's sha256, and the model no longer loaded.
        So there are three writes, each whole or not at all (``replace_text``), and the
        directory loads after any of them:

        1. the manifest with the test metrics and without the card's entry (the card is
           derived from the manifest; an unlisted file is not verified);
        2. the new card;
        3. the manifest again, now pinning the new card.

        Cut off after 1 or 2, the metrics are recorded and the card is unverified (after
        1 still the old one) until ``record_test_metrics`` runs again. Test numbers are
        reported, never used to select.

        Returns:
            The updated manifest.
        """
        from guardrail_dro.train.model_card import model_card

        d = as_path(model_dir, "model_dir")
        trained = cls.load(d)
        man = trained.manifest
        man.test_metrics = metrics
        if data_hash is not None:
            man.data_hashes["test"] = data_hash
        if data_name is not None:
            man.data_names["test"] = data_name
        man.data_sizes["test"] = metrics.n
        card, manifest = d / "README.md", d / "manifest.json"
        files = dict(man.files)
        files.setdefault("README.md", "")  # its place in the list kept (or added last)
        man.files = {rel: digest for rel, digest in files.items() if rel != "README.md"}
        replace_text(manifest, man.model_dump_json(indent=2) + "\n")
        replace_text(card, model_card(man, trained.schema))
        files["README.md"] = file_sha256(card)
        man.files = files
        replace_text(manifest, man.model_dump_json(indent=2) + "\n")
        return man

    # ---- inference -------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(
        self, texts: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """(class head's, exported model's) class probabilities (N, C), batched by length,
        in input order, as ``TrainResult.probabilities``: the first's argmax is the class
        the model was selected and reported on, the second's 1 - P(safe) the toxic score
        (the two differ where a binary head's mix was chosen, ``train/toxic_score.py``)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((2, len(texts), self.schema.num_classes), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            enc = self.tokenizer(
                [texts[j] for j in idx],
                padding=True,
                truncation=True,
                max_length=self.manifest.max_length,
                return_tensors="pt",
            )
            x = self.model.embed(enc["input_ids"], enc["attention_mask"])
            logits = self.model.head(x)
            out[0, idx] = torch.softmax(logits, -1).numpy()
            mix = self.model.toxic
            out[1, idx] = out[0, idx] if mix is None else mix(x, logits).exp().numpy()
        return out[0], out[1]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The exported model's class probabilities (``probabilities``' second)."""
        return self.probabilities(texts, batch_size)[1]


def check_save_target(out_dir: str | Path) -> Path:
    """``out_dir`` resolved, when ``TrainedModel.save`` may write there: new, empty, or
    an earlier model directory it replaces whole; checked again by ``save`` and first by
    the commands that train or distill for minutes before saving. Then clears what a
    killed save to ``out_dir`` left beside it (``guardrail_dro.leftovers``).

    Raises:
        ArtifactError: a file, or a non-empty folder that is not a model directory.
    """
    out = as_path(out_dir, "out_dir").resolve()
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out} is a file, not a model directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise ArtifactError(
            f"{out} is a non-empty folder that is not a model directory (no "
            "manifest.json): refusing to replace it; pass an empty or new folder"
        )
    sweep_leftovers(out, ("new", "old"))
    return out
