"""The provider's error code travels on the result (``AnnotationResult.error_code``).

The runner read it back out of the error's text (``HTTP 429 (insufficient_quota): ...``)
to tell an account out of credit from a rate limit: a wording change of that text, or a
code the text does not carry, turned a hopeless error into one retried item by item.
The field is never stored: errors are not cached, and cache rows keep their old shape.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from annotators import OpenAIAnnotator
from annotators.base import AnnotationResult
from annotators.cache import AnnotationCache
from annotators.labelling import label_text
from annotators.retry import RetryPolicy
from annotators.runner import _non_transient
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY


def test_an_out_of_quota_error_result_carries_its_code(
    schema: LabelSchema, fast: RetryPolicy
) -> None:
    with FakeLLMServer() as srv:
        srv.add_fault(Fault("insufficient_quota", times=1))
        ann = OpenAIAnnotator("gpt-4o-mini", api_key=KEY, base_url=srv.openai_base_url)
        res = asyncio.run(label_text(ann, "some text", schema, policy=fast))
        asyncio.run(ann.aclose())
    assert (res.outcome, res.status, res.error_code) == ("error", 429, "insufficient_quota")
    assert _non_transient(res)


def test_the_runner_judges_by_the_code_not_the_text() -> None:
    quota = AnnotationResult(outcome="error", annotator="a", status=429,
                             error="You exceeded your current quota",
                             error_code="insufficient_quota")
    limit = AnnotationResult(outcome="error", annotator="a", status=429,
                             error="HTTP 429 (insufficient_quota): quoted by the server",
                             error_code="rate_limit_exceeded")
    assert _non_transient(quota) and not _non_transient(limit)


def test_cache_rows_keep_their_shape_and_old_rows_load(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    old_row = {"outcome": "invalid", "annotator": "a", "raw": "{", "error": "not JSON",
               "status": None, "input_tokens": 3, "output_tokens": 1, "calls": 2}
    with AnnotationCache(db) as cache:
        cache.put("new", "openai", "m", AnnotationResult(outcome="labelled", annotator="a",
                                                         label="safe", rationale="r",
                                                         confidence=0.5))
        error = AnnotationResult(outcome="error", annotator="a", status=429,
                                 error_code="insufficient_quota")
        assert not cache.put("err", "openai", "m", error)
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO results VALUES ('old', 'openai', 'm', 'invalid', ?, 0)",
                    (json.dumps(old_row),))
        (blob,) = con.execute("SELECT result FROM results WHERE key = 'new'").fetchone()
    assert "error_code" not in json.loads(blob)  # an older version reads the row
    with AnnotationCache(db) as cache:
        got = cache.get_many(["old", "new", "err"])
    assert set(got) == {"old", "new"}
    assert got["old"].error_code is None and got["old"].error == "not JSON"
