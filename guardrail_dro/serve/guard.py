"""The serving guardrail: ``Guard.load(GUARD_DIR).check(text) -> GuardResult``.

A guard is a scorer (tokenize + run a model, ``guardrail_dro.serve.scorer.Scorer``)
and everything above it: windows, batching, the latency budget, the policy, sync and
async calls, the chat rails. ``Guard.load`` opens an exported artifact with the ONNX
scorer; ``Guard.from_scorer`` takes any scorer (the shipped ``FakeScorer`` for tests).

Long texts are never silently truncated: the scorer cuts them into overlapping windows
of the model's maximum length, every window is scored (``guardrail_dro.serve.windows``),
and the worst window decides (``guardrail_dro.serve.policy`` has the rule).

Example:
    >>> guard = Guard.load("guard/", policy=Policy(action="replace"))
    >>> r = guard.check("how do I bake bread?")
    >>> r.allowed, r.label, r.label_name, r.latency_ms
    (True, 'safe', 'harmless question', 2.1)
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve import rails
from guardrail_dro.serve.decision import DecisionRule
from guardrail_dro.serve.inputs import check_text, text_list
from guardrail_dro.serve.policy import GuardResult, GuardViolation, Policy
from guardrail_dro.serve.rails.protect import output_text
from guardrail_dro.serve.runtime import SessionConfig
from guardrail_dro.serve.scorer import Scorer
from guardrail_dro.serve.windows import decide_text, decide_texts, nothing

if TYPE_CHECKING:
    from guardrail_dro.serve.artifact import GuardArtifact
    from guardrail_dro.serve.calibration import OperatingCurve

__all__ = ["Guard", "GuardResult", "GuardViolation", "Policy", "SessionConfig"]

_A = TypeVar("_A")
_R = TypeVar("_R")


def _spent(policy: Policy) -> str:
    return f"latency budget {policy.latency_budget_ms} ms spent waiting for the model"


class Guard:
    """A scorer, default thresholds and a policy. Build with ``Guard.load`` (an exported
    artifact) or ``Guard.from_scorer``; one instance serves any number of threads and
    event loops.

    Attributes:
        scorer: what tokenizes and runs the model (``OnnxScorer`` after ``load``).
        labels, max_length, batch_size: the scorer's.
        policy: how scores become decisions (``with_policy`` gives another); ``rule``: the
            ``DecisionRule`` in force (``Policy(target_recall=...)`` picks on ``curve``).
        artifact: the artifact ``load`` opened (None for ``from_scorer``).
        precision: the model variant ``load`` runs: fp32, int8, fp16 (None otherwise).
    """

    def __init__(
        self,
        scorer: Scorer,
        *,
        policy: Policy,
        safe_classes: Iterable[str],
        toxic_threshold: float,
        thresholds: Mapping[str, float],
        descriptions: Mapping[str, str] | None = None,
        curve: OperatingCurve | None = None,
    ) -> None:
        """The one constructor ``load`` and ``from_scorer`` share: every default spelled.

        Raises:
            TypeError: ``scorer`` is not a ``Scorer`` or ``policy`` not a ``Policy``.
            ConfigError: safe classes, thresholds or descriptions naming classes the
                scorer lacks, a threshold outside [0, 1].
        """
        if not isinstance(scorer, Scorer):
            raise TypeError(f"scorer must implement Scorer, not {type(scorer).__name__}")
        self.scorer = scorer
        self.labels: tuple[str, ...] = tuple(scorer.labels)
        self.max_length = scorer.max_length
        self.batch_size = scorer.batch_size
        self.artifact: GuardArtifact | None = None
        self.precision: str | None = None
        safe = tuple(safe_classes)
        unknown = sorted((set(safe) | set(thresholds) | set(descriptions or ())) - set(self.labels))
        if unknown:
            raise ConfigError(
                f"safe classes / thresholds / descriptions name unknown classes {unknown} "
                f"(classes: {list(self.labels)})"
            )
        for name, value in {"toxic_threshold": toxic_threshold, **thresholds}.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"threshold {name!r} must be a number in [0, 1], not {value!r}")
        self._defaults = (safe, float(toxic_threshold), dict(thresholds), dict(descriptions or {}))
        self._curve = curve
        self._set_policy(policy)

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def from_scorer(
        cls,
        scorer: Scorer,
        *,
        policy: Policy | None = None,
        safe_classes: Iterable[str] | None = None,
        toxic_threshold: float = 0.5,
        thresholds: Mapping[str, float] | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> Guard:
        """A guard on any scorer, with the defaults an export would write.

        Args:
            scorer: a ``Scorer`` (e.g. ``FakeScorer(handler)``).
            policy: the policy (default Policy()); it overrides the defaults below.
            safe_classes: the classes that are not violations (default: the first label).
            toxic_threshold: default threshold on 1 - P(safe classes).
            thresholds: default per-class thresholds (default: ``toxic_threshold`` for
                every class that is not safe, as ``guardrail-dro export`` writes).
            descriptions: class -> readable name (``GuardResult.label_name``), else the label.

        Raises:
            TypeError, ConfigError: as the constructor.

        Example:
            >>> from guardrail_dro.serve.scorer import FakeScorer
            >>> scorer = FakeScorer.from_keywords({"knife": "toxic"})
            >>> guard = Guard.from_scorer(scorer, policy=Policy(refusal="No."))
            >>> guard.check("where is my knife").replacement
            'No.'
        """
        if not isinstance(scorer, Scorer):
            raise TypeError(f"scorer must implement Scorer, not {type(scorer).__name__}")
        safe = tuple(scorer.labels[:1] if safe_classes is None else safe_classes)
        if thresholds is None:
            thresholds = {c: toxic_threshold for c in scorer.labels if c not in safe}
        return cls(
            scorer,
            policy=Policy() if policy is None else policy,
            safe_classes=safe,
            toxic_threshold=toxic_threshold,
            thresholds=thresholds,
            descriptions=descriptions,
        )

    @classmethod
    def load(
        cls,
        guard_dir: str | Path,
        *,
        provider: str = "auto",
        policy: Policy | None = None,
        precision: str = "auto",
        intra_op_threads: int | None = None,
        stride: int | None = None,
        batch_size: int = 32,
        verify: bool = True,
        manifest_sha256: str | None = None,
        session_config: SessionConfig | None = None,
    ) -> Guard:
        """Load and verify a guard artifact directory, open its session, warm it up.

        Args:
            guard_dir: what ``guardrail-dro export`` wrote.
            provider: auto, tensorrt, cuda or cpu (see ``guardrail_dro.serve.runtime``).
            policy: thresholds, action, error policy, latency budget (default Policy()).
            precision: auto (the variant for the provider that actually runs: int8 on
                CPU, fp16 on CUDA / TensorRT when exported and checked, else fp32), int8,
                fp32 or fp16.
            intra_op_threads: ONNX Runtime threads per call (None: 1 for int8, ORT's
                choice for fp32 / fp16, the faster on this CPU; 0: ORT's choice, one per
                core).
            stride: tokens shared by consecutive windows of a long text (default a
                quarter of the maximum length).
            batch_size: windows / texts per ONNX Runtime call.
            verify: check the sha256 of every artifact file.
            manifest_sha256: pin the exact ``guard.json`` (``export`` prints its digest).
            session_config: a ``runtime.SessionConfig`` for everything else ONNX Runtime
                takes (TensorRT fp16, engine cache directory, inter-op threads, device);
                give the provider and threads there, not as ``provider`` /
                ``intra_op_threads``. Its TensorRT profile is set to ``batch_size`` x
                the guard's maximum length.

        Raises:
            ArtifactError: missing directory, manifest or file, tampered bytes, a graph
                that does not load or does not output one logit per class, an edited
                manifest, a manifest other than the pinned ``manifest_sha256``, a
                tokenizer without the manifest's padding token.
            ConfigError: unknown provider, precision or threshold class, a stride out of
                range, provider options given twice.
            DependencyError: onnxruntime or tokenizers missing (names the extra).

        Example:
            >>> guard = Guard.load("guard/", session_config=SessionConfig(provider="cuda"))
        """
        from guardrail_dro.serve.artifact import load_artifact
        from guardrail_dro.serve.onnx_scorer import OnnxScorer

        art = load_artifact(guard_dir, verify=verify, manifest_sha256=manifest_sha256)
        scorer = OnnxScorer.open(
            art,
            provider=provider,
            precision=precision,
            intra_op_threads=intra_op_threads,
            stride=stride,
            batch_size=batch_size,
            session_config=session_config,
        )
        man = art.manifest
        guard = cls(
            scorer,
            policy=Policy() if policy is None else policy,
            safe_classes=man.safe_classes,
            toxic_threshold=man.thresholds.toxic,
            thresholds=man.thresholds.per_class,
            descriptions=man.label_schema.descriptions,
            curve=man.calibration.curve if man.calibration else None,
        )
        guard.artifact, guard.precision = art, scorer.precision
        return guard

    def with_policy(self, policy: Policy) -> Guard:
        """A guard sharing this one's scorer (session, tokenizer), deciding with ``policy``."""
        other = copy.copy(self)
        other._set_policy(policy)
        return other

    def _set_policy(self, policy: Policy) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a Policy, not {type(policy).__name__}")
        safe, toxic, per_class, descriptions = self._defaults
        self.rule = DecisionRule.build(
            labels=self.labels,
            safe=safe,
            toxic=toxic,
            per_class=per_class,
            policy=policy,
            provider=self.scorer.provider,
            descriptions=descriptions,
            curve=self._curve,
        )
        self.policy = policy

    @property
    def provider(self) -> str:
        return self.scorer.provider

    def __repr__(self) -> str:
        if self.artifact is None:
            source = repr(self.scorer)
        else:
            source = f"{str(self.artifact.path)!r}, provider={self.provider!r}, "
            source += f"precision={self.precision!r}"
        return f"Guard({source}, labels={list(self.labels)})"

    # ---- decisions --------------------------------------------------------------------
    def _finish(self, result: GuardResult, rail: str | None) -> GuardResult:
        if not result.allowed and self.policy.raise_on_violation:
            raise GuardViolation(result, rail)
        return result

    def decide(self, text: str) -> GuardResult:
        """``check`` without raising, even under ``Policy(raise_on_violation=True)``: for
        callers that act on the decision themselves (the rails raise naming the rail).
        Raises TypeError when ``text`` is not a str."""
        start = time.perf_counter()
        check_text(text)
        return decide_text(self.scorer, self.rule, text, start)

    def decide_many(
        self, texts: Sequence[str], stop: Callable[[], bool] | None = None
    ) -> list[GuardResult]:
        """``check_many`` without raising (see ``decide``); ``stop``, asked between model
        calls, ends the work early: texts not scored in full then come back degraded.
        Raises TypeError when ``texts`` is not a sequence of str (see ``check_many``)."""
        start = time.perf_counter()
        texts = text_list(texts, "check_many")
        return decide_texts(self.scorer, self.rule, texts, start, stop)

    async def adecide(self, text: str) -> GuardResult:
        """``decide`` in a worker thread; with a latency budget, degraded once it is spent."""
        start, result = time.perf_counter(), await self._in_thread(self.decide, text)
        return self.unanswered(_spent(self.policy), start) if result is None else result

    async def adecide_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """``decide_many`` in a worker thread (see ``adecide``)."""
        texts = text_list(texts, "acheck_many")
        start = time.perf_counter()
        results = await self._in_thread(self.decide_many, texts)
        if results is None:
            return [self.unanswered(_spent(self.policy), start) for _ in texts]
        return results

    async def _in_thread(self, fn: Callable[[_A], _R], arg: _A) -> _R | None:
        """``fn(arg)`` in a worker thread; None when the latency budget ran out first."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, arg)
        budget = self.policy.latency_budget_ms
        if budget is None:
            return await fut
        try:
            # The thread finishes its model call in the background; its answer is dropped.
            return await asyncio.wait_for(fut, budget / 1e3)
        except TimeoutError:
            return None

    def unanswered(self, reason: str, start: float | None = None) -> GuardResult:
        """The degraded result of a text the model did not answer in time (``reason``
        says why; ``Policy.on_error`` decides): what a server returns on a timeout.
        ``start``: a ``time.perf_counter()`` reading, for ``latency_ms``."""
        return nothing(self.rule, time.perf_counter() if start is None else start, reason)

    def last_window(self, text: str) -> str:
        """The end of ``text`` that fills one window of the scorer (a stream rail's
        rolling window over an accumulating reply)."""
        return self.scorer.last_window(text)

    # ---- public checks ----------------------------------------------------------------
    def check(self, text: str) -> GuardResult:
        """Score one text (every window of it) and decide under the policy.

        Raises:
            TypeError: ``text`` is not a str.
            GuardViolation: only with ``Policy(raise_on_violation=True)``.
        """
        return self._finish(self.decide(text), None)

    def check_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """Check several texts, batching windows of similar length together.

        Every result's ``latency_ms`` is the wall time of the whole call. A text gets
        the decision ``check`` gives it, whatever else is in the batch: in fp32 its
        scores agree to float rounding (~1e-6), and the int8 model runs one row at a
        time, so they agree exactly (``guardrail_dro.serve.onnx_scorer`` says why).

        Raises:
            TypeError: ``texts`` is not a sequence of str: a single str, a dict (whose
                keys would be checked), a set or generator (no order), or an item that is
                not a str; the message names which.
            GuardViolation: only with ``Policy(raise_on_violation=True)``, for the first
                disallowed text.
        """
        return [self._finish(r, None) for r in self.decide_many(texts)]

    async def acheck(self, text: str) -> GuardResult:
        """``check`` in a worker thread (see ``adecide``)."""
        check_text(text)
        return self._finish(await self.adecide(text), None)

    async def acheck_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """``check_many`` in a worker thread.

        Raises:
            TypeError: as ``check_many``.
        """
        return [self._finish(r, None) for r in await self.adecide_many(texts)]

    # ---- chat rails -------------------------------------------------------------------
    def check_input(
        self, messages: Iterable[Any], system: Any = None, tools: Any = None
    ) -> GuardResult:
        """Input rail: the turns ``policy.input_turns`` names, each alone; ``all`` reads
        ``system`` (Anthropic's) and ``tools`` (definitions) too: ``rails.decide_input``."""
        return rails.decide_input(self, messages, None, system, tools)

    def check_output(self, messages: Iterable[Any] | None, reply: Any) -> GuardResult:
        """Output rail: the model's reply, alone (what ``rails.protect.output_text`` reads)."""
        return self._finish(self.decide(output_text(reply)), "output")

    async def acheck_input(
        self, messages: Iterable[Any], system: Any = None, tools: Any = None
    ) -> GuardResult:
        return await rails.adecide_input(self, messages, None, system, tools)

    async def acheck_output(self, messages: Iterable[Any] | None, reply: Any) -> GuardResult:
        return self._finish(await self.adecide(output_text(reply)), "output")

    def protect(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        input: bool | Guard = True,
        output: bool | Guard = True,
        on_check: rails.OnCheck | None = None,
        blocked: Callable[[GuardResult], Any] | None = None,
    ) -> Any:
        """Decorator guarding a chat callable ``fn(messages, ...) -> reply`` (``rails.protect``)."""
        return rails.protect(
            self, fn, input=input, output=output, on_check=on_check, blocked=blocked
        )

    def wrap(self, client: Any, **options: Any) -> Any:
        """An OpenAI / Anthropic client, its create calls guarded (``rails.sdk.wrap``)."""
        return rails.wrap(client, self, **options)
