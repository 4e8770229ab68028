"""What a run did: outcomes, calls, tokens, cost, and every item left unlabelled.

The live runner and the batch runner fill the same ``RunReport`` and end the same way
(``results_to_annotations``: labels into the dataset, every other outcome into
``failures``), so the CLI prints one summary whatever way the labels were bought. A dry
run fills the estimates instead (``estimate_into``), at live or batch prices. Output
tokens are assumed (``EXPECTED_OUTPUT_TOKENS`` a reply); for an OpenAI reasoning model,
whose hidden reasoning is billed as output, that can be far below the bill, so its lines
also give the ceiling: every reply at its full budget (``max_tokens``), and what it costs.

Nothing is dropped silently: refusals, invalid replies and errors are counted and
listed with their raw text (``write_failures`` saves them as JSONL).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from annotators.base import AnnotationResult, Annotator, Usage
from annotators.cache import key_for
from annotators.openai_annotator import is_reasoning_model
from annotators.pricing import EXPECTED_OUTPUT_TOKENS, Price, cost_of, price_for
from annotators.prompts import build_prompt
from annotators.redact import redact
from annotators.templates import PromptTemplate
from annotators.tokens import counter_for, request_tokens
from guardrail_dro.data.items import AnnotatedDataset, Annotation
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.outputs import replace_file

__all__ = ["AnnotationRun", "AnnotatorEstimate", "Failure", "RunReport", "estimate_into",
           "results_to_annotations"]


@dataclass
class AnnotatorEstimate:
    """A dry run's forecast for one annotator: requests, tokens, USD, how tokens were
    counted (a tokenizer, or an estimate), and the model's price (None: unknown)."""

    requests: int = 0
    tokens: Usage = field(default_factory=Usage)
    cost: float | None = 0.0
    method: str = ""
    price: Price | None = None
    budget: int | None = None
    """For a reasoning model: its reply budget, hidden reasoning included (else None)."""
    ceiling: Usage = field(default_factory=Usage)
    """Tokens with every reply at ``budget`` (the assumed ones for other models)."""
    ceiling_cost: float | None = 0.0


@dataclass(frozen=True)
class Failure:
    """An item an annotator did not label, and why."""

    item_id: str
    annotator: str
    outcome: str
    error: str | None
    raw: str | None


@dataclass
class RunReport:
    """What a run did: per-annotator outcomes, calls, tokens, cost, and every failure.

    Attributes:
        outcomes: annotator -> outcome -> number of items.
        from_cache: (annotator, item) results taken from the cache without a call.
        reask / reasked: the cached outcomes asked again (``reask``), and how many
            (annotator, item) answers that set aside to ask again (a dry run: would).
        calls: requests made by this run (retries and repairs included); a batch run's
            are the requests it submitted plus its live repair calls (not the results
            it collected from jobs an earlier run submitted: ``collected_earlier``).
        submitted / collected / collected_earlier: a batch run's requests put into
            new jobs, results collected, and how many of those came from jobs an
            earlier (stopped) run submitted.
        usage: tokens billed by this run.
        cost: USD of this run; None if some model has no price.
        estimated_cost: for a dry run, USD the missing items would cost (None: no price);
            at batch prices for a batch dry run.
        to_ask: (annotator, text) requests a run has to make (after the cache).
        in_batch_jobs: for a batch dry run, requests already in submitted jobs (paid).
        estimated_ceiling / estimated_ceiling_cost: for a dry run with a reasoning model,
            tokens and USD with its replies at their full budget (None: no such model).
    """

    annotators: list[str]
    items: int
    dry_run: bool = False
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    from_cache: int = 0
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float | None = 0.0
    estimated_tokens: Usage = field(default_factory=Usage)
    estimated_cost: float | None = None
    estimated_ceiling: Usage | None = None
    estimated_ceiling_cost: float | None = None
    to_ask: int = 0
    reask: tuple[str, ...] = ()
    reasked: int = 0
    submitted: int = 0
    collected: int = 0
    collected_earlier: int = 0
    in_batch_jobs: int = 0
    batch: bool = False
    failures: list[Failure] = field(default_factory=list)
    batch_jobs: list[str] = field(default_factory=list)
    estimates: dict[str, AnnotatorEstimate] = field(default_factory=dict)
    """For a dry run: annotator -> its share of the estimate."""
    sample_requests: dict[str, dict] = field(default_factory=dict)
    """For a dry run: provider -> one fully rendered request body it would be sent."""

    @property
    def failed(self) -> int:
        return len(self.failures)

    def add_cost(self, usd: float | None) -> None:
        self.cost = None if usd is None or self.cost is None else self.cost + usd

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the end of a run."""
        if self.dry_run:
            cost = "unknown (no price for a model; pass --prices)" if self.estimated_cost is None \
                else f"${self.estimated_cost:.4f}"
            jobs = f", {self.in_batch_jobs} in submitted batch job(s)" if self.in_batch_jobs \
                else ""
            prices = " at batch prices" if self.batch else ""
            lines = [
                f"dry run: {self.items} items x {len(self.annotators)} annotator(s); "
                f"{self.from_cache} answer(s) already cached{jobs}, {self.to_ask} request(s) "
                f"to make{self._reasked('would be')}",
            ]
            for name, est in self.estimates.items():
                usd = "unknown (no price; pass --prices)" if est.cost is None \
                    else f"${est.cost:.4f}"
                reasoning = "" if est.budget is None else \
                    f", up to {est.budget} a reply with hidden reasoning"
                lines.append(
                    f"  {name}: {est.requests} request(s), {est.tokens.input_tokens} tokens "
                    f"in + {est.tokens.output_tokens} out (input tokens: {est.method}; "
                    f"output: {EXPECTED_OUTPUT_TOKENS} a reply assumed{reasoning}); "
                    f"cost{prices} {usd}{_up_to(est.budget, est.cost, est.ceiling_cost)}")
            ceiling = self.estimated_ceiling
            most = "" if ceiling is None else \
                f" (up to {ceiling.output_tokens} out with reasoning)"
            lines.append(
                f"estimated tokens: {self.estimated_tokens.input_tokens} in, "
                f"{self.estimated_tokens.output_tokens} out{most}; estimated cost{prices} "
                f"{cost}{_up_to(ceiling, self.estimated_cost, self.estimated_ceiling_cost)}")
            return lines
        lines = []
        for name in self.annotators:
            c = self.outcomes.get(name, Counter())
            lines.append(
                f"{name}: {c['labelled']} labelled, {c['refused']} refused, "
                f"{c['invalid']} invalid, {c['error']} error(s)"
            )
        cost = "unknown (no price for a model)" if self.cost is None else f"${self.cost:.4f}"
        lines.append(
            f"{self.calls} call(s) made, {self.from_cache} answer(s) from the cache; tokens "
            f"{self.usage.input_tokens} in / {self.usage.output_tokens} out; cost {cost}"
            f"{self._reasked('were')}"
        )
        if self.batch and (self.submitted or self.collected):  # else: all from the cache
            earlier = (f" ({self.collected_earlier} from job(s) an earlier run submitted)"
                       if self.collected_earlier else "")
            lines.append(
                f"batch: {self.submitted} request(s) submitted by this run, {self.collected} "
                f"result(s) collected{earlier}, {self.calls - self.submitted} live repair "
                "call(s)")
        return lines

    def _reasked(self, verb: str) -> str:
        """``"; 3 cached invalid answer(s) {verb} asked again"`` when ``reask`` was asked."""
        if not self.reask:
            return ""
        return f"; {self.reasked} cached {' or '.join(self.reask)} answer(s) {verb} asked again"

    def write_failures(self, path: str | Path) -> Path:
        """Write every failure as one JSON line (item_id, annotator, outcome, error, raw),
        whole or not at all (``replace_file``): a file cut off at a line end reads as
        complete, and ``agreement`` and ``merge`` would take its refusal rates as the
        run's."""
        path = Path(path)

        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8") as f:
                for fail in self.failures:
                    row = {k: redact(v) if isinstance(v, str) else v for k, v in vars(fail).items()}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")

        replace_file(path, write)
        return path


def _up_to(reasoning: object, cost: float | None, ceiling: float | None) -> str:
    """``", up to $X"`` after a cost when a reasoning model may cost more (and is priced)."""
    if reasoning is None or cost is None or ceiling is None:
        return ""
    return f", up to ${ceiling:.4f}"


def _reasoning_budget(annotator: Annotator) -> int | None:
    """The reply budget of an OpenAI reasoning model (its hidden reasoning is billed as
    output, up to this many tokens a reply), or of Claude that thinks (a ``thinking_budget``
    or adaptive thinking: the request's ``max_tokens``, thinking plus answer); None for any
    other annotator."""
    if annotator.provider == "anthropic" and getattr(annotator, "thinking", None):
        most = getattr(annotator, "request_max_tokens", None)
        return most if isinstance(most, int) else None
    budget = getattr(annotator, "max_tokens", None)
    if annotator.provider != "openai" or not is_reasoning_model(annotator.model):
        return None
    return budget if isinstance(budget, int) else None


@dataclass(frozen=True)
class AnnotationRun:
    """The annotated dataset and the report of the run that made it."""

    dataset: AnnotatedDataset
    report: RunReport


def results_to_annotations(
    dataset: AnnotatedDataset, annotators: Sequence[Annotator],
    results: Mapping[tuple[int, str], AnnotationResult], report: RunReport,
    template: PromptTemplate | None = None,
) -> AnnotatedDataset:
    """Add labelled results to the dataset and record every other outcome as a failure.

    ``results`` maps (annotator index, cache key) to a result; a missing one is reported
    as an error rather than skipped.
    """
    extra: dict[str, list[Annotation]] = {}
    for j, ann in enumerate(annotators):
        counts = report.outcomes.setdefault(ann.name, Counter())
        for it in dataset.items:
            res = results.get((j, key_for(ann, it.text, dataset.schema, template)))
            if res is None:
                res = AnnotationResult(outcome="error", annotator=ann.name,
                                       error="no result (the run stopped before this item)")
            counts[res.outcome] += 1
            if res.outcome == "labelled" and res.label is not None:
                extra.setdefault(it.item_id, []).append(Annotation(
                    annotator=ann.name, kind="llm", label=res.label, rationale=res.rationale,
                    confidence=res.confidence, model=res.model or ann.model,
                ))
            else:
                report.failures.append(Failure(it.item_id, ann.name, res.outcome, res.error,
                                               res.raw))
    return dataset.with_annotations(extra)


def estimate_into(report: RunReport, annotators: Sequence[Annotator], schema: LabelSchema,
                  todo: Sequence[tuple[int, str]], prices: Mapping[str, Price] | None, *,
                  batch: bool = False, template: PromptTemplate | None = None) -> None:
    """Fill a dry run's estimate for ``todo`` (annotator index, text), per annotator and
    in total, and keep one rendered request per provider to show.

    Input tokens are counted on the request each item would send (the provider's
    tokenizer where one works offline, see ``annotators.tokens``); output tokens are
    ``EXPECTED_OUTPUT_TOKENS`` a reply, and for a reasoning model (``_reasoning_budget``)
    also its full budget a reply: the ceiling, which its reasoning may well approach.
    """
    build = template.builder(schema) if template is not None else \
        (lambda text: build_prompt(text, schema))
    total: float | None = 0.0
    tokens = Usage()
    most, reasoning = Usage(), False
    most_usd: float | None = 0.0
    for j, ann in enumerate(annotators):
        server = ann.cache_params().get("base_url") is None
        counter = counter_for(ann.provider, ann.model, default_server=server)
        budget = _reasoning_budget(ann)
        reasoning = reasoning or budget is not None
        est = report.estimates.setdefault(ann.name, AnnotatorEstimate(
            method=counter.method, price=price_for(ann.model, prices), budget=budget))
        render = getattr(ann, "request_body", None)
        texts = [text for jj, text in todo if jj == j]
        for text in texts:
            prompt = build(text)
            if render is not None:
                body = render(prompt, schema)
                report.sample_requests.setdefault(ann.provider, body)
                n_in = request_tokens(body, counter)
            else:  # an adapter of another kind: its prompt's text
                n_in = counter.count(prompt.system + "".join(m["content"]
                                                             for m in prompt.messages))
            u = Usage(n_in, EXPECTED_OUTPUT_TOKENS)
            usd = cost_of(ann.model, u, prices, batch=batch)
            est.requests += 1
            est.tokens = est.tokens + u
            est.cost = None if usd is None or est.cost is None else est.cost + usd
            tokens = tokens + u
            total = None if usd is None or total is None else total + usd
            top = u if budget is None else Usage(n_in, budget)
            top_usd = usd if budget is None else cost_of(ann.model, top, prices, batch=batch)
            est.ceiling = est.ceiling + top
            est.ceiling_cost = _plus(est.ceiling_cost, top_usd)
            most, most_usd = most + top, _plus(most_usd, top_usd)
    report.to_ask = len(todo)
    report.batch = batch
    report.estimated_tokens = tokens
    report.estimated_cost = total
    report.estimated_ceiling = most if reasoning else None
    report.estimated_ceiling_cost = most_usd if reasoning else None


def _plus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b
