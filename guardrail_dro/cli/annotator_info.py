"""Who the annotators of a test split are, and what 1,000 texts cost with their models:
the reference rows of ``guardrail-dro bench`` (``train.judges`` scores them).

Here, in the command line, because the cost needs ``annotators`` (our prompt, the
price table), which ``guardrail_dro.train`` never imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.train.judges import JudgeInfo

__all__ = ["annotator_info"]


def annotator_info(test_path: str | Path, test: AnnotatedDataset) -> dict[str, JudgeInfo]:
    """Who each annotator of ``test`` is and what 1,000 texts would cost with its model.

    Names and models come from the bundled dataset's annotator table when ``test_path``
    names a bundled split, else from the ``model`` the annotations carry. The cost is our
    annotation prompt for the test texts at ``annotators.pricing`` list prices (None for
    people, for unpriced models, and without the ``annotate`` extra).
    """
    from guardrail_dro.data.bundled import parse_spec
    from guardrail_dro.train.judges import JudgeInfo

    spec = parse_spec(test_path)
    table = spec[0].annotators if spec else {}
    out = {}
    for a in test.annotators:
        who, model = table.get(a, (None, None))
        if model is None and not spec:
            model = next(
                (x.model for it in test for x in it.annotations if x.annotator == a and x.model),
                None,
            )
        out[a] = JudgeInfo(who=who, model=model, usd_per_1k=_usd_per_1k(model, test))
    return out


def _usd_per_1k(model: str | None, test: AnnotatedDataset) -> float | None:
    if model is None:
        return None
    try:
        from annotators.base import Usage
        from annotators.pricing import EXPECTED_OUTPUT_TOKENS, cost_of, estimate_tokens
        from annotators.prompts import build_prompt
    except ImportError:  # no annotate extra: the cost stays unknown
        return None
    prompts = [build_prompt(t, test.schema) for t in test.texts]
    tokens = sum(
        estimate_tokens(p.system + "".join(m["content"] for m in p.messages)) for p in prompts
    )
    usage = Usage(input_tokens=tokens, output_tokens=EXPECTED_OUTPUT_TOKENS * len(prompts))
    usd = cost_of(model, usage)
    return None if usd is None else usd * 1000 / len(prompts)
