"""claude-fable-5 answers ``thinking.type=enabled`` with a 400 (Amazon Bedrock's adaptive
thinking page: Claude Fable 5 "only supports adaptive thinking"; manual extended thinking
"will return a 400 error"), as Fable 5.1 does: its ``thinking_budget`` is refused before
any request, naming ``thinking="adaptive"``, not sent as a 400 on every item. Before, it
was listed as thinking by default with nothing said of a budget, and a budget was sent.
"""

from __future__ import annotations

import pytest

from annotators.specs import make_annotator
from guardrail_dro.errors import ConfigError


def test_a_budget_on_claude_fable_5_is_refused_before_any_request() -> None:
    with pytest.raises(ConfigError, match='claude-fable-5 takes no thinking_budget.*"adaptive"'):
        make_annotator("anthropic:claude-fable-5", need_key=False, thinking_budget=2048)
    ann = make_annotator("anthropic:claude-fable-5", need_key=False)
    assert ann.thinking == "adaptive"  # still thinks by default
