"""Guard.load given something that is not a guard folder: the error names ``guard_dir``;
check_output given an SDK message whose content is None."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_dro.errors import ArtifactError
from guardrail_dro.serve.guard import Guard


@pytest.mark.parametrize("value", [None, 3, ""], ids=["none", "int", "empty-str"])
def test_load_names_guard_dir_when_it_is_not_a_path(value: object) -> None:
    # None gave "expected str, bytes or os.PathLike object, not NoneType"; "" loaded the
    # working directory and said it was not a guard.
    with pytest.raises(TypeError, match="guard_dir must be the path"):
        Guard.load(value)  # type: ignore[arg-type]


def test_load_of_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "guard.json"
    file.write_text("{}")
    with pytest.raises(ArtifactError, match="is a file: guard_dir must be"):
        Guard.load(file)  # it said "guard artifact directory not found", yet it exists


def test_check_output_reads_a_message_without_content() -> None:
    """An OpenAI assistant message holding tool calls or speech has ``content`` None:
    check_output raised "message content must be a str or a list of blocks, not
    ChatCompletionMessage" for it, though it takes messages. It reads it as the rails
    read such a reply: its speech's transcript, else no text."""
    from openai.types.chat import ChatCompletionMessage

    from guardrail_dro.serve.scorer import FakeScorer

    scorer = FakeScorer.from_keywords({"knife": "toxic"}, labels=("safe", "toxic"), score=0.9)
    guard = Guard.from_scorer(scorer)
    call = {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    tools = ChatCompletionMessage(role="assistant", content=None, tool_calls=[call])
    assert guard.check_output(None, tools).allowed
    said = {"id": "a", "data": "AA", "expires_at": 1, "transcript": "grab a knife"}
    speech = ChatCompletionMessage(role="assistant", content=None, audio=said)
    assert not guard.check_output(None, speech).allowed
    with pytest.raises(TypeError, match="must be a str or a list of blocks"):
        guard.check_output(None, 42)
