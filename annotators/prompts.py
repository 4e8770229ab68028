"""Prompts built from the label schema, with the text to label fenced off as data.

The text is fenced in ``<text_to_label>`` tags with every tag look-alike inside it
defused (``annotators.fence``, re-exported here): the texts we label are exactly the
ones that try to steer a model. The wording of the built-in prompt is the shipped
default labeling config (``annotators/configs/default.toml``), rendered by
``annotators.templates``; ``build_prompt`` renders it.
The label is then constrained by JSON schema (OpenAI) or a forced tool (Anthropic), so
the reply shape cannot be steered either.

``PROMPT_VERSION`` is part of every cache key: change the fencing (or the built-in
wording, ``annotators/configs/default.toml``), bump the version, and old cached answers
are no longer reused. A team's own template adds its hash to the key instead
(``annotators.templates``).
"""

from __future__ import annotations

from typing import Any

from annotators.base import Prompt
from annotators.fence import TEXT_TAG, extract_text, fence
from annotators.templates import DEFAULT_TEMPLATE
from guardrail_dro.data.schema import LabelSchema

__all__ = [
    "PROMPT_VERSION",
    "TEXT_TAG",
    "build_prompt",
    "extract_text",
    "fence",
    "repair_prompt",
    "reply_json_schema",
]

PROMPT_VERSION = "3"
"""2: tag look-alikes with blanks after ``<`` (``< /text_to_label>``) are defused too.
3: and those with format characters, full-width or homoglyph letters (answers cached
for such texts under 2 saw an open fence, so they are asked again)."""
def build_prompt(text: str, schema: LabelSchema) -> Prompt:
    """The prompt that asks for one label of ``text``, in the built-in wording.

    The wording lives in the shipped default config (``annotators/configs/default.toml``,
    rendered by ``annotators.templates``); a team's own config builds its prompts with
    ``LabelingConfig.template().build`` instead.

    Example:
        >>> p = build_prompt("hello", LabelSchema(classes=("safe", "hate")))
        >>> p.messages[0]["content"].splitlines()[-3:]
        ['<text_to_label>', 'hello', '</text_to_label>']
    """
    return DEFAULT_TEMPLATE.build(text, schema)


def repair_prompt(prompt: Prompt, raw: str | None, error: str) -> Prompt:
    """The same conversation plus the invalid reply and what was wrong with it.

    Used once: a model that cannot fix its reply after seeing the validation error is
    recorded as ``invalid`` with its raw text.
    """
    return prompt.followed_by(
        {"role": "assistant", "content": raw or "(empty reply)"},
        {
            "role": "user",
            "content": f"That reply is not valid: {error}\nAnswer again with only the JSON "
            "object, using one of the listed class names.",
        },
    )


def reply_json_schema(schema: LabelSchema) -> dict[str, Any]:
    """JSON schema of the reply, with the label constrained to the schema's classes."""
    return {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(schema.classes)},
            "rationale": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "rationale", "confidence"],
        "additionalProperties": False,
    }
