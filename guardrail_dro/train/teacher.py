"""``teacher:<model dir>``: a trained model's class probabilities as the targets.

Why: the encoder, not the labels, is what holds the default guard back on
toxic-questions (README, "A linear probe on frozen MiniLM, given gold labels"):
all-mpnet-base-v2 trained with ``ours`` reaches accuracy 0.72, MiniLM 0.69, and a
guard on the larger encoder is 5.5 times slower. A classifier on the fast encoder
trained to match the larger one's predictions (knowledge distillation, Hinton et al.
2015) learns from the teacher's whole distribution over the classes, not from six
noisy votes, and it learns it on texts the annotators never saw: ``AUGMENT`` word-noise
copies of each training text (``augment.word_noise``), which only a teacher can label.
``distill`` does the same inside one architecture (fewer layers); this source crosses
encoders and tokenizers, and the student is then trained, selected on valid (worst
group) and exported like any other model.

The teacher is any model directory ``guardrail-dro train`` wrote (frozen or full mode,
any backbone), with the same label classes. Its probabilities go through the shared
embedding cache (``distill.teacher_embeddings``), so a second run with the same teacher
pays for the student only. A copy never repeats a validation text (valid selects the
student's epoch; texts compared as ``drop_overlap`` compares them); training items that
repeat one are left out as for every method, unless ``drop_overlap`` is off.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import torch

from guardrail_dro.data.items import AnnotatedDataset, normalise_text
from guardrail_dro.errors import ConfigError
from guardrail_dro.train.augment import word_noise
from guardrail_dro.train.run import Run, Settings
from guardrail_dro.train.targets import FixedTargets

if TYPE_CHECKING:
    from guardrail_dro.train.modeldir import TrainedModel

__all__ = ["AUGMENT", "TeacherTargets", "teacher_probabilities"]

AUGMENT = 2
"""Word-noise copies of each training text the teacher labels. MiniLM full mode on
toxic-questions (top 2 layers, mpnet frozen ``ours`` as the teacher, seeds 0 and 1):
with two, test accuracy 0.711 / 0.709 (the bench, README "A larger teacher for
MiniLM"; ``ours`` 0.692 mean); without, 0.706 / 0.698 (a one-off script). Each copy
costs one more pass of the student over train. Raise ``TeacherTargets.version`` when
this changes, so the bench retrains its stored teacher runs."""


def teacher_probabilities(
    teacher: TrainedModel,
    texts: list[str],
    *,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(N, C) float32 class probabilities of ``teacher`` for ``texts``: its guard's
    outputs (the class head, or the class head mixed with its binary toxic head)."""
    from guardrail_dro.train.distill import teacher_embeddings
    from guardrail_dro.train.student import model_outputs

    emb = teacher_embeddings(teacher, texts, cache_dir=cache_dir, progress=progress)
    with torch.no_grad():
        out = model_outputs(teacher.model.eval(), torch.from_numpy(emb))
        return torch.softmax(out, -1).numpy().astype(np.float32)


class TeacherTargets(FixedTargets):
    """A trained model's class probabilities on the training texts and on word-noise
    copies of them (module docstring)."""

    needs_annotators: ClassVar[bool] = False

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self.folder = Path(model_dir).expanduser()

    @classmethod
    def from_argument(cls, argument: str | None) -> Self:
        if not argument:
            raise ConfigError("a teacher method needs a model directory: teacher:<model dir>")
        return cls(argument)

    def check(self, classes: tuple[str, ...]) -> None:
        """A trained model with the data's classes is there (its schema only: the
        weights are loaded once, by ``compute``, and checked against the manifest)."""
        from guardrail_dro.data.schema import LabelSchema

        if not (self.folder / "manifest.json").is_file():
            guard = (self.folder / "guard.json").is_file()  # export's output, not a model
            raise ConfigError(
                f"teacher:{self.model_dir}: no trained model there (no manifest.json"
                + ("; it is a guard artifact: name the model directory it was exported from"
                   if guard else "")
                + "); train one first with guardrail-dro train --out DIR"
            )  # fmt: skip
        theirs = tuple(LabelSchema.load(self.folder / "schema.json").classes)
        if theirs != tuple(classes):
            raise ConfigError(
                f"teacher:{self.model_dir}: the teacher's classes {list(theirs)} are not "
                f"the data's {list(classes)}"
            )

    def check_data(self, train: AnnotatedDataset) -> None:
        self.check(tuple(train.schema.classes))

    def key_part(self) -> str:
        """The teacher's manifest sha256 (it lists every file's): a bench run stored
        with another model in the same folder is trained again."""
        from guardrail_dro.checksums import file_sha256

        manifest = self.folder / "manifest.json"
        return f"teacher={file_sha256(manifest) if manifest.is_file() else 'missing'}"

    def split(
        self,
        train: AnnotatedDataset,
        valid: AnnotatedDataset,
        settings: Settings,
        rng: np.random.Generator,
        notes: list[str],
    ) -> tuple[AnnotatedDataset, AnnotatedDataset]:
        """The training items plus ``AUGMENT`` word-noise copies of each (no annotator
        labels; the teacher labels them), none of them a validation text."""
        self.check(tuple(train.schema.classes))
        train, select = super().split(train, valid, settings, rng, notes)
        held = {normalise_text(t) for t in valid.texts}
        seen = set(train.texts)
        copies = []
        for i, it in enumerate(train.items):
            for k, text in enumerate(word_noise([it.text], AUGMENT, seed=settings.seed + i)):
                if normalise_text(text) in held or text in seen:
                    continue
                seen.add(text)
                copies.append(
                    it.model_copy(
                        update={
                            "item_id": f"{it.item_id}~{k}",
                            "text": text,
                            "annotations": (),
                            "gold": None,  # a copy is not the labelled text
                        }
                    )
                )
        notes.append(
            f"teacher {self.model_dir}: {len(train)} training texts and {len(copies)} "
            "word-noise copies, labelled by the teacher's class probabilities"
        )
        name = f"{train.name or 'train'}+copies"
        return AnnotatedDataset([*train.items, *copies], train.schema, name=name), select

    def compute(self, run: Run) -> np.ndarray:
        from guardrail_dro.train.modeldir import TrainedModel

        cfg = run.settings
        teacher = TrainedModel.load(self.folder)  # dropped on return: not held in training
        return teacher_probabilities(
            teacher, run.train.texts, cache_dir=cfg.cache_dir, progress=cfg.progress
        )
