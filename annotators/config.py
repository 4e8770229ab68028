"""The labeling config: one TOML file with everything a labeling team tunes.

Why TOML: the standard library reads it (``tomllib``, no dependency), it has comments
(a config is where a team writes down why), and multi-line literal strings, so that
guidelines and prompt templates read as prose rather than as JSON-escaped lines. YAML
would need PyYAML and types scalars by guessing (a label ``no`` becomes ``False``).

Sections (all optional; ``annotators/configs/default.toml`` is the built-in prompt,
documented, to copy with ``guardrail-dro annotate --print-config``):

- ``[task] guidelines``: shown in the system prompt.
- ``[[labels]]`` (``name``, ``description``, ``safe``): the label set.
- ``[prompt] system / user``: Jinja2 templates (see ``annotators.templates``).
- ``[few_shot]``: fixed ``examples``, or ``draw`` N from labelled items
  (``draw_from``: a dataset with gold labels or annotations), with ``seed``.
- ``[[annotators]]``: ``spec`` (``openai:MODEL``) and its parameters
  (``temperature``, ``max_tokens``, and for OpenAI reasoning models ``reasoning_effort``:
  their hidden reasoning is paid from ``max_tokens``, so a reply cut at that budget is
  fixed here, by a larger budget or a lower effort; for Claude ``thinking_budget``, the
  tokens of extended thinking asked for on top of ``max_tokens``, or ``thinking =
  "adaptive"``, Claude deciding how much to think within ``thinking_room`` tokens on top
  of ``max_tokens``, and ``effort``, how much effort Claude spends on a reply; for OpenAI
  ``api``: ``"chat"``, ``"responses"``, the Responses API, or ``"auto"``, the default).
- ``[run]``: ``concurrency``, ``rpm``, ``tpm``, ``max_attempts``, ``timeout``.

Unknown keys are errors (a misspelt ``guidlines`` would otherwise be silently ignored).
"""

from __future__ import annotations

import random
import tomllib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from annotators.anthropic_annotator import THINKING_MIN_BUDGET, Effort, ThinkingMode
from annotators.openai_annotator import Api, ReasoningEffort
from annotators.templates import (
    DEFAULT_TEMPLATE,
    FewShotExample,
    PromptTemplate,
    default_config_text,
)
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError

__all__ = ["DEFAULT_CONFIG", "DEFAULT_TEMPLATE", "LabelingConfig", "default_config_text",
           "draw_examples", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSection(_Strict):
    guidelines: str = ""


class LabelEntry(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    safe: bool = False


class PromptSection(_Strict):
    system: str
    user: str


class ExampleEntry(_Strict):
    text: str = Field(min_length=1)
    label: str = Field(min_length=1)
    rationale: str = "Labelled by the task guidelines."
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)


class FewShotSection(_Strict):
    examples: tuple[ExampleEntry, ...] = ()
    draw: int = Field(default=0, ge=0)
    draw_from: str | None = None
    seed: int = 0


class AnnotatorEntry(_Strict):
    spec: str = Field(min_length=3)
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: ReasoningEffort | None = None
    """OpenAI reasoning models only (checked by ``make_annotator``); None: not sent."""
    thinking_budget: int | None = None
    """Claude only (checked by ``make_annotator``): tokens of extended thinking, at least
    ``THINKING_MIN_BUDGET``; None: no thinking, nothing sent."""
    thinking: ThinkingMode | None = None
    """Claude only: ``"adaptive"``: Claude decides how much to think (with no
    ``thinking_budget``); ``"enabled"``: what a ``thinking_budget`` alone means."""
    thinking_room: int | None = Field(default=None, ge=1)
    """Claude's adaptive thinking only: ``max_tokens`` room for the thinking, on top of
    ``max_tokens`` (None: ``ADAPTIVE_THINKING_ROOM``)."""
    effort: Effort | None = None
    """Claude only (checked by ``make_annotator``): ``output_config.effort``; None: not
    sent."""
    api: Api | None = None
    """OpenAI only (checked by ``make_annotator``): ``"responses"`` labels through the
    Responses API (models served only there); None: ``"auto"``."""

    @field_validator("thinking_budget")
    @classmethod
    def _thinking_minimum(cls, v: int | None) -> int | None:
        # Checked here too, so that the error names the file's entry before any work.
        if v is not None and v < THINKING_MIN_BUDGET:
            raise ValueError(f"{v} is below Anthropic's minimum of {THINKING_MIN_BUDGET} "
                             "tokens of extended thinking: give at least "
                             f"{THINKING_MIN_BUDGET}, or leave thinking_budget out for no "
                             "thinking")
        return v


class RunSection(_Strict):
    concurrency: int | None = Field(default=None, ge=1)
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)


class LabelingConfig(_Strict):
    """A parsed labeling config (see the module docstring for its sections)."""

    task: TaskSection = TaskSection()
    labels: tuple[LabelEntry, ...] = ()
    prompt: PromptSection | None = None
    few_shot: FewShotSection = FewShotSection()
    annotators: tuple[AnnotatorEntry, ...] = ()
    run: RunSection = RunSection()

    def label_schema(self) -> LabelSchema | None:
        """The ``[[labels]]`` as a schema, or None when the config lists none."""
        if not self.labels:
            return None
        return LabelSchema(classes=tuple(lb.name for lb in self.labels),
                           safe=tuple(lb.name for lb in self.labels if lb.safe),
                           descriptions={lb.name: lb.description for lb in self.labels
                                         if lb.description})

    def template(self, examples: tuple[FewShotExample, ...] | None = None) -> PromptTemplate:
        """The prompt template: this config's wording (or the built-in one), guidelines and
        fixed examples (``examples`` replaces them, e.g. with drawn ones)."""
        prompt = self.prompt or DEFAULT_CONFIG.prompt
        assert prompt is not None  # the shipped default has one
        fixed = tuple(FewShotExample(e.text, e.label, e.rationale, e.confidence)
                      for e in self.few_shot.examples)
        return PromptTemplate(prompt.system, prompt.user, self.task.guidelines,
                              fixed if examples is None else examples)


def _parse(raw: dict[str, Any], where: str) -> LabelingConfig:
    try:
        return LabelingConfig.model_validate(raw)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors())
        raise ConfigError(f"{where}: {errs}") from None


def load_config(path: str | Path) -> LabelingConfig:
    """Read and check a labeling config (TOML).

    Raises:
        ConfigError: unreadable file, bad TOML (with its line), an unknown key or a bad
            value (named), or a template that does not render.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the labeling config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    cfg = _parse(raw, str(path))
    cfg.template()  # templates parse and use {{ text }} once
    return cfg


DEFAULT_CONFIG = _parse(tomllib.loads(default_config_text()), "built-in default config")
"""The shipped default config (its prompt is ``DEFAULT_TEMPLATE``)."""


def _majority(item: Any) -> str | None:
    if item.gold is not None:
        return str(item.gold)
    votes = Counter(a.label for a in item.annotations)
    if not votes:
        return None
    (top, n), *rest = [*votes.most_common(2), ("", 0)]
    return top if n > rest[0][1] else None  # a tie is no label


def draw_examples(source: AnnotatedDataset, k: int, seed: int,
                  exclude: set[str] = frozenset()) -> tuple[FewShotExample, ...]:  # type: ignore[assignment]
    """``k`` labelled examples from ``source``, spread over the classes, reproducibly.

    An item's label is its gold label, else the strict majority of its annotations;
    items without one, and texts in ``exclude`` (the items being labelled), are skipped.
    Classes take turns (in schema order), each drawing from its items shuffled by
    ``seed``, so 3 examples of a 2-class task are 2 + 1, not 3 of the common class.

    Raises:
        ConfigError: fewer than ``k`` labelled items.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    excluded = 0
    for it in source.items:
        label = _majority(it)
        if label is not None and it.text in exclude:
            excluded += 1
        elif label is not None:
            by_class[label].append(it.text)
    rng = random.Random(seed)
    for texts in by_class.values():
        rng.shuffle(texts)
    order = [c for c in source.schema.classes if by_class.get(c)]
    out: list[FewShotExample] = []
    while len(out) < k and any(by_class[c] for c in order):
        for c in order:
            if by_class[c] and len(out) < k:
                out.append(FewShotExample(by_class[c].pop(), c, f"An example of {c!r}."))
    if len(out) < k:
        why = (f" ({excluded} more are texts being labelled, left out so that no item is "
               "shown its own answer)" if excluded else "")
        raise ConfigError(f"few_shot.draw = {k}, but {source.name or 'the source'} has only "
                          f"{len(out)} labelled item(s) to draw from{why}")
    return tuple(out)
