"""Review of ``api="responses"``: a Responses reply stopped by the content filter is a
refusal (as chat's ``finish_reason`` ``"content_filter"``), and a batch job is read in the
format of the endpoint it was created for, not the annotator's current ``api`` (a job
submitted before ``api`` changed, or before the option existed, is a chat job).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from annotators import BatchPendingError, OpenAIAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.openai_annotator import parse_response
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import EXPECTED, KEY, TEXTS, make_dataset


def test_an_incomplete_reply_for_the_content_filter_is_a_refusal() -> None:
    body = {"object": "response", "model": "gpt-4o-mini", "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
            "output": [{"type": "message", "role": "assistant", "status": "incomplete",
                        "content": [{"type": "output_text", "text": '{"lab'}]}],
            "usage": {"input_tokens": 40, "output_tokens": 3}}
    reply = parse_response(body)
    assert reply.refusal == '{"lab' and type(reply).__name__ == "RawReply"
    body["output"] = []
    assert parse_response(body).refusal == "content_filter"


def _run(server: FakeLLMServer, schema: LabelSchema, policy: RetryPolicy, db: Path, api: str,
         **kw: object):
    ann = OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=server.openai_base_url,
                          api=api)  # type: ignore[arg-type]
    return batch_annotate_with_report(make_dataset(TEXTS, schema), [ann], poll_interval=0.01,
                                      policy=policy, cache=db, progress=False, **kw)


def test_a_chat_job_collected_after_api_changed_is_read_as_chat(
        server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    server.hold_batches = True
    with pytest.raises(BatchPendingError):  # a chat job left open, as before `api` existed
        _run(server, schema, fast, db, "chat", max_wait=0.05)
    server.hold_batches = False
    _run(server, schema, fast, db, "responses")  # collects the chat job too (same name)
    server.reset_counts()
    back = _run(server, schema, fast, db, "chat")
    assert back.report.from_cache == len(TEXTS) and server.endpoints.total() == 0
    name = back.report.annotators[0]
    got = {it.text: it.label_of(name) for it in back.dataset}
    assert {t: got[t] for t in EXPECTED} == EXPECTED
