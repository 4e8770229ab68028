"""The quickstart's LLM annotation pass: live against the providers, or offline through
the real runner and the real OpenAI SDK against a local endpoint that replays the labels
one real (or simulated) annotator gave. The replayed annotator is removed from the data
first, so its labels come back only through the runner, the SDK and the cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from guardrail_dro.data.items import AnnotatedDataset

__all__ = ["annotation_pass", "replay_handler"]


def _strip(ds: AnnotatedDataset, annotator: str) -> AnnotatedDataset:
    items = [
        it.model_copy(
            update={"annotations": tuple(a for a in it.annotations if a.annotator != annotator)}
        )
        for it in ds
    ]
    return AnnotatedDataset(items, ds.schema, name=ds.name)


def replay_handler(splits: Sequence[AnnotatedDataset], annotator: str):
    """A handler answering each text with the label, rationale and confidence that
    ``annotator`` gave it: a deterministic, offline stand-in for an LLM."""
    from annotators.testing import FakeReply

    answers = {}
    for ds in splits:
        for it in ds:
            for a in it.annotations:
                if a.annotator == annotator:
                    answers[it.text] = FakeReply(
                        a.label, a.rationale or "replayed", a.confidence or 0.9
                    )

    def handler(text: str):
        return answers.get(text, FakeReply())

    return handler


def annotation_pass(
    splits: dict[str, AnnotatedDataset],
    out: Path,
    *,
    live: bool,
    specs: Sequence[str],
    console: Console,
    replay: str,
    batch: bool = False,
) -> dict[str, AnnotatedDataset]:
    """The LLM annotation pass over train and valid: live, or replaying the labels of
    annotator ``replay`` (removed from the data first, so they come back only through
    the runner, the SDK and the cache). ``batch``: the replay goes through the OpenAI
    Batch API (files + batches) of the local endpoint, one upload for a split instead
    of one HTTP call per text (toxic-questions' 7,941 texts: the per-call path alone
    took over 7 minutes on a loaded 2-core machine)."""
    from annotators import OpenAIAnnotator, annotate_with_report
    from annotators.batch import batch_annotate_with_report
    from annotators.specs import make_annotator

    cache = out / "cache" / "annotations.sqlite"
    to_label = {k: v for k, v in splits.items() if k in ("train", "valid")}
    server = None
    if live:
        annotators = [make_annotator(s) for s in specs]
    else:
        from annotators.testing import FakeLLMServer

        class ReplayAnnotator(OpenAIAnnotator):
            # The replay server takes a new port each run; its answers are the same, so
            # key the cache by what it is, not where it listens (resume needs the hits).
            def cache_params(self) -> dict:
                return {**super().cache_params(), "base_url": "local-replay"}

        server = FakeLLMServer(replay_handler(list(splits.values()), replay)).start()
        annotators = [
            ReplayAnnotator(
                f"sim-{replay}", base_url=server.openai_base_url, api_key="local-replay"
            )
        ]
        to_label = {k: _strip(v, replay) for k, v in to_label.items()}
    try:
        done = dict(splits)
        for name, ds in to_label.items():
            if batch and not live:
                run = batch_annotate_with_report(
                    ds, annotators, cache=cache, poll_interval=0.1, progress=False
                )
            else:
                run = annotate_with_report(ds, annotators, cache=cache, concurrency=16)
            for line in run.report.summary_lines():
                console.print(f"  {name}: {line}", highlight=False, markup=False)
            done[name] = run.dataset
        return done
    finally:
        if server is not None:
            server.stop()
