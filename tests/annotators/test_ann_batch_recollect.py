"""A job collected part way (a Ctrl-C or SIGTERM while its results were judged) is
collected again by the next run: the answers judged already are kept, not judged again.

Before: an invalid answer judged from the job was judged again on the resume (the rule
that lets a ``--reask`` job's answer replace an older cached invalid one took it for
one), paying its live repair call a second time.
"""

from __future__ import annotations

from pathlib import Path

from annotators import OpenAIAnnotator
from annotators.batch import batch_annotate_with_report
from annotators.cache import AnnotationCache
from annotators.retry import RetryPolicy
from annotators.testing import FakeLLMServer, Fault
from guardrail_dro.data.schema import LabelSchema
from tests.annotators.ann_helpers import KEY, TEXTS, make_dataset

IDIOT = "you idiot"


def test_a_job_collected_again_pays_no_repair_twice(
    server: FakeLLMServer, schema: LabelSchema, fast: RetryPolicy, tmp_path: Path
) -> None:
    ds, db = make_dataset(TEXTS, schema), tmp_path / "c.sqlite"
    ann = OpenAIAnnotator("gpt-fake", api_key=KEY, base_url=server.openai_base_url)
    server.add_fault(Fault("malformed", match=IDIOT, times=2))  # the reply and its repair
    kw = dict(cache=db, policy=fast, progress=False, poll_interval=0.01)
    first = batch_annotate_with_report(ds, [ann], **kw)
    assert first.report.outcomes[ann.name]["invalid"] == 1 and server.calls[IDIOT] == 1
    # What a stop part way through the collection leaves: every result judged so far
    # cached, the job still open (the cache's own verbs, as batch_jobs uses them).
    cache = AnnotationCache(db)
    try:
        (job_id,) = first.report.batch_jobs
        cache.set_job_status(job_id, "submitted")
    finally:
        cache.close()
    server.reset_counts()
    again = batch_annotate_with_report(ds, [ann], **kw)
    assert server.calls[IDIOT] == 0, "the repair call was paid again"
    assert again.report.calls == 0 and again.report.outcomes[ann.name]["invalid"] == 1
