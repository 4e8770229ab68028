"""Prompt templates: a team's own wording, guidelines and few-shot examples.

A ``PromptTemplate`` is two Jinja2 templates (the system text and the user turn),
rendered in Jinja's sandbox (a config file is data: it can read the variables it is
given, never call into Python), with ``StrictUndefined`` so a misspelt variable is an
error instead of an empty string. The item reaches the user template only as ``text``,
already fenced and defused by ``prompts.fence``: however the template is written, the
text cannot close the fence early. ``text`` must be used exactly once, as a bare
``{{ text }}`` (no filter, test, ``if`` or ``for`` on it: checked when the template is
built), so that every item's user turn is the same wording around its fenced text.

Few-shot examples are sent as earlier turns of the chat: the user template with the
example's (fenced) text, then the example's answer as the reply JSON. That is the
format the model must answer in, shown rather than described.

Why a ``cache_tag``: cached answers were asked with some prompt; a changed template (or
guideline, or example) must not reuse them. The tag is the sha256 of the prompt the
template renders for a fixed probe text, and is part of the cache key, except for the
built-in template (``DEFAULT_TEMPLATE``), whose prompt is byte-for-byte that of
``PROMPT_VERSION`` 3 and keeps the keys of caches made before templates existed.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from annotators.base import Prompt
from annotators.fence import TEXT_TAG, fence
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError

__all__ = ["DEFAULT_TEMPLATE", "FewShotExample", "PromptTemplate", "default_config_text"]

_PROBE = "\x00probe text\x00"
_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                            keep_trailing_newline=False)
# Random text: a prompt using it differs at every render, so its cache key (the rendered
# probe's digest) changed every run and every item was asked, and paid, again.
del _ENV.globals["lipsum"]


def _template_error(part: str, exc: Exception) -> ConfigError:
    """``exc`` (any error a template raised: Jinja's, ``{% include %}`` without a loader,
    ``{{ 1/0 }}``...) as a ConfigError naming the template and the line in it."""
    line = exc.lineno if isinstance(exc, TemplateSyntaxError) else None
    tb = exc.__traceback__
    while tb is not None:  # Jinja rewrites a render error's frames to the template's lines
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    at = f", line {line}" if line else ""
    return ConfigError(f"prompt template (prompt.{part}{at}): {type(exc).__name__}: {exc}")


def _bare_text_uses(source: str) -> tuple[int, int]:
    """(uses of ``text`` anywhere, uses as a bare top-level ``{{ text }}``) in ``source``.

    Only a bare one is the same for every item: ``{{ text | replace(...) }}`` can undo the
    fence, and ``{% if text ... %}`` makes the prompt depend on the text in ways the probe
    text behind the cache key never sees (a changed branch reused cached answers)."""
    tree = _ENV.parse(source)
    anywhere = sum(1 for n in tree.find_all(nodes.Name) if n.name == "text")
    bare = sum(1 for o in tree.body if isinstance(o, nodes.Output)
               for n in o.nodes if isinstance(n, nodes.Name) and n.name == "text")
    return anywhere, bare


@dataclass(frozen=True)
class FewShotExample:
    """A labelled example shown to the model before the item."""

    text: str
    label: str
    rationale: str = "Labelled by the task guidelines."
    confidence: float = 1.0

    def reply(self) -> str:
        return json.dumps({"label": self.label, "rationale": self.rationale,
                           "confidence": self.confidence}, ensure_ascii=False)


@dataclass(frozen=True)
class PromptTemplate:
    """How one item's prompt is written.

    Args:
        system: Jinja2 source of the system text; variables ``guidelines``, ``labels``
            (dicts with ``name``, ``quoted``, ``description``, ``safe``) and ``tag``.
        user: Jinja2 source of the user turn; its one variable is ``text`` (fenced).
        guidelines: the task guidelines (may be empty).
        examples: few-shot examples, in order.

    Raises:
        ConfigError: a template that does not parse, uses an unknown variable, or does
            not use ``text`` exactly once.
    """

    system: str
    user: str
    guidelines: str = ""
    examples: tuple[FewShotExample, ...] = ()
    _tags: dict[str, str] = field(default_factory=dict, init=False, repr=False,
                                  compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            self._system_t  # noqa: B018 - parse now, fail at load time
        except Exception as exc:
            raise _template_error("system", exc) from None
        try:
            anywhere, bare = _bare_text_uses(self.user)
            probe = self._render_user(fence(_PROBE))
        except Exception as exc:
            raise _template_error("user", exc) from None
        if (anywhere, bare) != (1, 1):
            raise ConfigError(
                "prompt template (prompt.user): the user template must contain {{ text }} "
                f"exactly once, as is: no filter, test, {{% if %}} or {{% for %}} on it (it "
                f"uses text {anywhere} time(s), {bare} of them as a bare {{{{ text }}}}); the "
                "fenced text must reach the prompt unchanged, and the same way for every item")
        if probe.count(_PROBE) != 1:
            raise ConfigError("prompt template: the user template must contain {{ text }} "
                              f"exactly once (it renders the text {probe.count(_PROBE)} times)")

    @cached_property
    def _system_t(self) -> Any:
        return _ENV.from_string(self.system)

    @cached_property
    def _user_t(self) -> Any:
        return _ENV.from_string(self.user)

    def _render_user(self, fenced: str) -> str:
        return str(self._user_t.render(text=fenced))

    def render_system(self, schema: LabelSchema) -> str:
        labels = [{"name": c, "quoted": repr(c), "description": schema.describe(c),
                   "safe": c in schema.safe} for c in schema.classes]
        try:
            return str(self._system_t.render(guidelines=self.guidelines.strip(),
                                              labels=labels, tag=TEXT_TAG))
        except Exception as exc:
            raise _template_error("system", exc) from None

    def check(self, schema: LabelSchema) -> None:
        """Raise ``ConfigError`` if a few-shot label is not a class of ``schema``."""
        bad = [ex.label for ex in self.examples if ex.label not in schema]
        if bad:
            raise ConfigError(f"few-shot example label(s) {bad} not in the label schema "
                              f"{list(schema.classes)}")
        self.render_system(schema)

    def build(self, text: str, schema: LabelSchema, system: str | None = None) -> Prompt:
        """The prompt asking for the label of ``text`` (``system``: pre-rendered)."""
        turns: list[dict[str, str]] = []
        for ex in self.examples:
            turns.append({"role": "user", "content": self._render_user(fence(ex.text))})
            turns.append({"role": "assistant", "content": ex.reply()})
        turns.append({"role": "user", "content": self._render_user(fence(text))})
        return Prompt(system=system if system is not None else self.render_system(schema),
                      messages=tuple(turns))

    def builder(self, schema: LabelSchema) -> Callable[[str], Prompt]:
        """``text -> Prompt`` with the system text rendered once (for a whole run)."""
        system = self.render_system(schema)
        return lambda text: self.build(text, schema, system)

    def fingerprint(self, schema: LabelSchema) -> str:
        """sha256 of the prompt rendered for a probe text: any change of wording,
        guidelines, examples or labels changes it."""
        key = schema.model_dump_json()
        if key not in self._tags:
            p = self.build(_PROBE, schema)
            blob = json.dumps([p.system, list(p.messages)], ensure_ascii=False)
            self._tags[key] = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self._tags[key]

    def cache_tag(self, schema: LabelSchema) -> str | None:
        """What the cache key adds for this template: None for the built-in prompt."""
        tag = self.fingerprint(schema)
        return None if tag == DEFAULT_TEMPLATE.fingerprint(schema) else tag

    def with_examples(self, examples: Sequence[FewShotExample]) -> PromptTemplate:
        return PromptTemplate(self.system, self.user, self.guidelines, tuple(examples))


def default_config_text() -> str:
    """The shipped default labeling config, commented: a starting point to copy."""
    return resources.files("annotators").joinpath("configs/default.toml").read_text("utf-8")


_DEFAULT_PROMPT = tomllib.loads(default_config_text())["prompt"]
DEFAULT_TEMPLATE = PromptTemplate(_DEFAULT_PROMPT["system"], _DEFAULT_PROMPT["user"])
"""The built-in prompt (``PROMPT_VERSION`` 3), from ``annotators/configs/default.toml``."""
