"""A reask job's request that fails, collected by a run without ``--reask``.

A ``--reask invalid`` batch run stopped while its job ran, resumed by a plain run; the
job's request for the invalid item errored. With ``max_resubmits=0`` the report said
"error" while the cache kept the invalid answer (and with resubmits left, the same run
reported the invalid answer): now the invalid answer stands in both, and its failure
line says the re-ask failed. The real OpenAI SDK talks to the fake server over HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from annotators import BatchPendingError, OpenAIAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.cache import AnnotationCache, key_for
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY, TEXTS, make_dataset

IDIOT = "you idiot"


@pytest.mark.parametrize("max_resubmits", [0, 1])
def test_a_failed_reask_request_leaves_the_invalid_answer_in_report_and_cache(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path,
    max_resubmits: int,
) -> None:
    ds, db = make_dataset(TEXTS, schema), tmp_path / "c.sqlite"
    ann = OpenAIAnnotator("gpt-fake", api_key=KEY, base_url=server.openai_base_url)
    server.add_fault(Fault("malformed", match=IDIOT, times=2))  # reply and repair: invalid
    kw = dict(cache=db, policy=fast, progress=False, poll_interval=0.01)
    assert batch_annotate_with_report(ds, [ann], **kw).report.outcomes[ann.name]["invalid"] == 1
    server.hold_batches = True
    with pytest.raises(BatchPendingError):  # the --reask run stops while its job runs
        batch_annotate_with_report(ds, [ann], reask=["invalid"], max_wait=0.05, **kw)
    server.hold_batches = False
    server.add_fault(Fault("batch_errored", match=IDIOT, times=1))
    server.reset_counts()

    plain = batch_annotate_with_report(ds, [ann], max_resubmits=max_resubmits, **kw)

    assert server.endpoints["batches.create"] == 0, "the plain run asked the item again"
    key = key_for(ann, IDIOT, schema)
    with AnnotationCache(db) as cache:
        cached = cache.get(key)
    assert cached is not None and cached.outcome == "invalid"
    counts = plain.report.outcomes[ann.name]
    assert (counts["invalid"], counts["error"]) == (1, 0), counts  # as the cache says
    (fail,) = [f for f in plain.report.failures if f.item_id == "i1"]
    assert fail.outcome == "invalid" and fail.raw == cached.raw
    assert "asked again in batch" in (fail.error or "") and "stands" in (fail.error or "")
    assert (fail.error or "").startswith(cached.error or "")
