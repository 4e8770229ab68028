"""The serving guardrail: ``Guard.load(GUARD_DIR).check(text) -> GuardResult``.

One ONNX Runtime session and one ``tokenizers`` tokenizer, shared by every thread
(``InferenceSession.run`` and ``Tokenizer.encode`` are safe to call concurrently);
each thread fills its own preallocated input buffers. No pydantic and no torch on the
hot path: tokenize, copy ids into the buffer, run, softmax, compare to thresholds.

Long texts are never silently truncated: the tokenizer cuts them into windows of the
model's maximum length that overlap by ``stride`` tokens, every window is scored, and
the worst window decides (see ``guardrail_dro.serve.policy`` for the rule).

Example:
    >>> guard = Guard.load("guard/", policy=Policy(action="replace"))
    >>> r = guard.check("how do I bake bread?")
    >>> r.allowed, r.label, r.latency_ms
    (True, 'safe', 2.1)
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from guardrail_dro.errors import ArtifactError, ConfigError, DependencyError
from guardrail_dro.serve import rails
from guardrail_dro.serve.policy import DecisionRule, GuardResult, GuardViolation, Policy
from guardrail_dro.serve.rails.messages import content_text, last_user_text
from guardrail_dro.serve.runtime import (
    PROVIDERS,
    GuardSession,
    SessionConfig,
    create_session,
    import_onnxruntime,
)

__all__ = ["Guard", "GuardResult", "GuardViolation", "Policy", "SessionConfig"]

_A = TypeVar("_A")
_R = TypeVar("_R")


# ---- the guard ------------------------------------------------------------------------


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        hint = " (decode bytes first)" if isinstance(text, bytes | bytearray) else ""
        raise TypeError(f"guard checks a str, got {type(text).__name__}{hint}")


def _open_auto(art, config: SessionConfig) -> tuple[GuardSession, str]:
    """The session and precision for ``precision="auto"``: the variant is picked for the
    provider that actually runs, read back from the session, not for the providers
    onnxruntime was built with (a CUDA build on a machine whose CUDA libraries do not
    load runs on CPU, where int8 is the variant to run, not fp16)."""
    if config.provider != "auto":
        precision = art.best_variant(config.provider)
        return create_session(art.model_path(precision), config), precision
    built = set(import_onnxruntime().get_available_providers())
    gpu = {PROVIDERS["tensorrt"], PROVIDERS["cuda"]} & built
    guess = art.best_variant("cuda" if gpu else "cpu")
    try:
        session = create_session(art.model_path(guess), config)
    except (ArtifactError, DependencyError):
        if guess == "fp32":
            raise
        # e.g. fp16 on the CPU the providers fell back to: fp32 runs everywhere.
        guess = "fp32"
        session = create_session(art.model_path(guess), config)
    want = art.best_variant(session.provider)
    if want == guess:
        return session, guess
    pinned = dataclasses.replace(config, provider=session.provider)
    again = create_session(art.model_path(want), pinned)
    return dataclasses.replace(again, requested="auto", skipped=session.skipped), want


class Guard:
    """A loaded guard: model session, tokenizer, thresholds and policy. Build with
    ``Guard.load``; one instance serves any number of threads and event loops."""

    def __init__(
        self, *, artifact, session, tokenizer, policy: Policy, stride: int, batch_size: int
    ) -> None:
        self.artifact = artifact
        self.session = session
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.stride = stride
        man = artifact.manifest
        self.labels: tuple[str, ...] = tuple(man.label_schema.classes)
        self.max_length = man.max_length
        self._run = session.session.run
        self._out = list(session.output_names[:1])
        self._in_ids, self._in_mask = session.input_names[:2]
        pad_id = tokenizer.token_to_id(man.pad_token)
        if pad_id is None:
            raise ArtifactError(f"the tokenizer has no padding token {man.pad_token!r}")
        self._pad_id = pad_id
        self._ones = np.ones(self.max_length, dtype=np.int64)
        self._local = threading.local()
        self._set_policy(policy)

    # ---- construction -----------------------------------------------------------------
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
            intra_op_threads: ONNX Runtime threads per call (None: one per core).
            stride: tokens shared by consecutive windows of a long text (default a
                quarter of the maximum length).
            batch_size: windows / texts per ONNX Runtime call.
            verify: check the sha256 of every artifact file.
            manifest_sha256: pin the exact ``guard.json`` (the digest ``guardrail-dro
                export`` prints); any other manifest is refused.
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
            >>> cfg = SessionConfig(provider="tensorrt", trt_fp16=True,
            ...                     trt_engine_cache_dir=Path("trt_cache"))
            >>> guard = Guard.load("guard/", session_config=cfg)
        """
        from guardrail_dro.serve.artifact import load_artifact

        art = load_artifact(guard_dir, verify=verify, manifest_sha256=manifest_sha256)
        max_len = art.manifest.max_length
        stride = max_len // 4 if stride is None else stride
        if not isinstance(stride, int) or not 0 <= stride < max_len - 2:
            raise ConfigError(f"stride must be an int in [0, {max_len - 2}), not {stride!r}")
        if session_config is None:
            config = SessionConfig(provider=provider, intra_op_threads=intra_op_threads)
        elif provider != "auto" or intra_op_threads is not None:
            raise ConfigError(
                "give provider and intra_op_threads inside session_config, not beside it"
            )
        elif not isinstance(session_config, SessionConfig):
            raise TypeError(
                f"session_config must be a SessionConfig, not {type(session_config).__name__}"
            )
        else:
            config = session_config
        config = dataclasses.replace(config, max_batch=batch_size, max_length=max_len)
        tok = art.load_tokenizer(pad=False)
        if tok.token_to_id(art.manifest.pad_token) is None:
            raise ArtifactError(
                f"{art.tokenizer_path}: the tokenizer has no padding token "
                f"{art.manifest.pad_token!r} (guard.json pad_token); re-export the model"
            )
        tok.enable_truncation(max_length=max_len, stride=stride)
        if precision == "auto":
            session, precision = _open_auto(art, config)
        else:
            session = create_session(art.model_path(precision), config)
        guard = cls(
            artifact=art,
            session=session,
            tokenizer=tok,
            policy=policy or Policy(),
            stride=stride,
            batch_size=batch_size,
        )
        guard.precision = precision
        guard._warm_up()
        return guard

    def _warm_up(self) -> None:
        # A graph that loads but does not answer (wrong inputs, wrong class count) must
        # fail here, at load, never at the first user's check.
        try:
            logits = self._logits([self.tokenizer.encode("warm up").ids])
        except Exception as exc:  # ORT raises its own pybind types
            raise ArtifactError(
                f"{self.artifact.path}: the guard model does not run: {exc}"
            ) from None
        if logits.shape != (1, len(self.labels)):
            raise ArtifactError(
                f"{self.artifact.path}: the model outputs {logits.shape[1:]} logits per text, "
                f"the manifest lists {len(self.labels)} classes"
            )

    def with_policy(self, policy: Policy) -> Guard:
        """A guard sharing this one's session and tokenizer, deciding with ``policy``."""
        other = copy.copy(self)
        other._set_policy(policy)
        return other

    def _set_policy(self, policy: Policy) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a Policy, not {type(policy).__name__}")
        man = self.artifact.manifest
        self._rule = DecisionRule.build(
            labels=self.labels,
            safe=man.safe_classes,
            toxic=man.thresholds.toxic,
            per_class=man.thresholds.per_class,
            policy=policy,
            provider=self.session.provider,
        )
        self.policy = policy

    @property
    def provider(self) -> str:
        return self.session.provider

    def __repr__(self) -> str:
        return (
            f"Guard({str(self.artifact.path)!r}, provider={self.provider!r}, "
            f"precision={getattr(self, 'precision', '?')!r}, labels={list(self.labels)})"
        )

    # ---- the model --------------------------------------------------------------------
    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        loc = self._local
        bufs = getattr(loc, "bufs", None)
        if bufs is None:
            n = self.batch_size * self.max_length
            bufs = loc.bufs = (np.empty(n, np.int64), np.empty(n, np.int64))
        return bufs

    def _logits(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits (len(rows), C) for token id rows (at most batch_size), padded here."""
        ids_buf, mask_buf = self._buffers()
        n = len(rows)
        if n == 1:
            width = len(rows[0])
            ids = ids_buf[:width].reshape(1, width)
            ids[0] = rows[0]
            mask = self._ones[:width].reshape(1, width)
        else:
            width = max(len(r) for r in rows)
            ids = ids_buf[: n * width].reshape(n, width)
            mask = mask_buf[: n * width].reshape(n, width)
            ids.fill(self._pad_id)
            mask.fill(0)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = r
                mask[i, : len(r)] = 1
        return self._run(self._out, {self._in_ids: ids, self._in_mask: mask})[0]

    def _encode(self, text: str) -> list[list[int]]:
        """Token id windows of one text (one window unless it is longer than max_length)."""
        try:
            enc = self.tokenizer.encode(text)
        except TypeError:  # unpaired surrogates are not UTF-8: the tokenizer refuses them
            enc = self.tokenizer.encode(text.encode("utf-8", "replace").decode("utf-8"))
        if not enc.overflowing:
            return [enc.ids]
        return [enc.ids, *(o.ids for o in enc.overflowing)]

    def last_window(self, text: str) -> str:
        """The end of ``text`` that fills one window: its last ``max_length - 2`` tokens
        (the stream rail's rolling window over an accumulating reply)."""
        tok = getattr(self, "_untruncated", None)
        if tok is None:  # a copy without truncation; a benign race builds it twice at most
            tok = type(self.tokenizer).from_str(self.tokenizer.to_str())
            tok.no_truncation()
            tok.no_padding()
            self._untruncated = tok
        # A token covers at most ~100 characters (WordPiece's longest word), so the last
        # window lies in this suffix; cutting a word here only affects a dropped token.
        start = max(0, len(text) - self.max_length * 100)
        try:
            enc = tok.encode(text[start:], add_special_tokens=False)
        except TypeError:  # unpaired surrogates: the whole text is checked instead
            return text
        keep = self.max_length - 2
        if len(enc.offsets) <= keep:
            return text[start:]
        return text[start + enc.offsets[-keep][0] :]

    # ---- decisions --------------------------------------------------------------------
    def _decide(
        self, logits: np.ndarray, start: float, *, complete: bool = True, error: str | None = None
    ) -> GuardResult:
        ms = (time.perf_counter() - start) * 1e3
        return self._rule.decide(logits, complete=complete, error=error, latency_ms=ms)

    def _over_budget(self, start: float) -> str | None:
        """Why the result must be degraded when the latency budget ran out during the
        model call itself (the decision came too late to be trusted as on time)."""
        budget = self.policy.latency_budget_ms
        if budget is None:
            return None
        ms = (time.perf_counter() - start) * 1e3
        return f"latency budget {budget} ms spent ({ms:.1f} ms)" if ms > budget else None

    def _nothing(self, start: float, error: str | None = None) -> GuardResult:
        return self._rule.nothing(error=error, latency_ms=(time.perf_counter() - start) * 1e3)

    def _finish(self, result: GuardResult, rail: str | None) -> GuardResult:
        if not result.allowed and self.policy.raise_on_violation:
            raise GuardViolation(result, rail)
        return result

    # ---- public checks ----------------------------------------------------------------
    def check(self, text: str) -> GuardResult:
        """Score one text (every window of it) and decide under the policy.

        Raises:
            TypeError: ``text`` is not a str.
            GuardViolation: only with ``Policy(raise_on_violation=True)``.
        """
        return self._finish(self.decide(text), None)

    def decide(self, text: str) -> GuardResult:
        """``check`` without raising: the decision even under
        ``Policy(raise_on_violation=True)``. For callers that act on the decision
        themselves, as the rails do (they raise naming the rail).

        Raises:
            TypeError: ``text`` is not a str.
        """
        start = time.perf_counter()
        _check_text(text)
        if not text or text.isspace():
            return self._nothing(start)
        try:
            windows = self._encode(text)
            if len(windows) == 1:
                logits = self._logits(windows)
                late = self._over_budget(start)
                return self._decide(logits, start, complete=late is None, error=late)
            return self._check_windows(windows, start)
        except Exception as exc:  # ORT's pybind errors: the error policy decides
            return self._nothing(start, error=f"{type(exc).__name__}: {exc}")

    def _check_windows(self, windows: list[list[int]], start: float) -> GuardResult:
        pol = self.policy
        limit = len(windows) if pol.max_windows is None else min(pol.max_windows, len(windows))
        deadline = None if pol.latency_budget_ms is None else start + pol.latency_budget_ms / 1e3
        parts, done, error = [], 0, None
        while done < limit:
            if deadline is not None and done and time.perf_counter() > deadline:
                error = f"latency budget {pol.latency_budget_ms} ms spent after {done} windows"
                break
            chunk = windows[done : min(done + self.batch_size, limit)]
            parts.append(self._logits(chunk))
            done += len(chunk)
        if error is None and done < len(windows):
            error = f"text has {len(windows)} windows, Policy.max_windows is {pol.max_windows}"
        if error is None:
            error = self._over_budget(start)
        return self._decide(np.concatenate(parts), start, complete=error is None, error=error)

    def check_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """Check several texts, batching windows of similar length together.

        Every result's ``latency_ms`` is the wall time of the whole call. With the int8
        model, scores can differ from ``check``'s by about 1e-3: dynamic quantization
        scales activations per batch.

        Raises:
            TypeError: ``texts`` is a str or holds something that is not a str.
            GuardViolation: only with ``Policy(raise_on_violation=True)``, for the first
                disallowed text.
        """
        return [self._finish(r, None) for r in self.decide_many(texts)]

    def decide_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """``check_many`` without raising (see ``decide``).

        Raises:
            TypeError: ``texts`` is a str or holds something that is not a str.
        """
        start = time.perf_counter()
        if isinstance(texts, str | bytes) or not isinstance(texts, Iterable):
            raise TypeError(f"check_many takes a list of str, not {type(texts).__name__}")
        texts = list(texts)
        for t in texts:
            _check_text(t)
        todo = [i for i, t in enumerate(texts) if t and not t.isspace()]
        windows: dict[int, list[list[int]]] = {}
        try:
            for i in todo:
                windows[i] = self._encode(texts[i])
            flat = [(i, k) for i in todo for k in range(len(windows[i]))]
            flat.sort(key=lambda ik: len(windows[ik[0]][ik[1]]))
            logits: dict[tuple[int, int], np.ndarray] = {}
            pol = self.policy
            deadline = (
                None if pol.latency_budget_ms is None else start + pol.latency_budget_ms / 1e3
            )
            for s in range(0, len(flat), self.batch_size):
                if deadline is not None and s and time.perf_counter() > deadline:
                    break
                chunk = flat[s : s + self.batch_size]
                out = self._logits([windows[i][k] for i, k in chunk])
                logits.update(zip(chunk, out, strict=True))
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
            live = set(todo)
            return [
                self._nothing(start, error=err if i in live else None) for i in range(len(texts))
            ]
        results = []
        for i in range(len(texts)):
            if i not in windows:
                results.append(self._nothing(start))
                continue
            got = [logits[(i, k)] for k in range(len(windows[i])) if (i, k) in logits]
            if not got:
                results.append(self._nothing(start, error="latency budget spent"))
                continue
            complete = len(got) == len(windows[i])
            results.append(
                self._decide(
                    np.stack(got),
                    start,
                    complete=complete,
                    error=None if complete else "latency budget spent",
                )
            )
        return results

    async def adecide(self, text: str) -> GuardResult:
        """``decide`` in a worker thread: never blocks the event loop. With a latency
        budget, stops waiting once it is spent (a degraded result)."""
        start = time.perf_counter()
        result = await self._in_thread(self.decide, text)
        return self._late(start) if result is None else result

    async def adecide_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """``decide_many`` in a worker thread (see ``adecide``)."""
        if isinstance(texts, str | bytes):
            raise TypeError("adecide_many takes a list of str, not a single str")
        texts = list(texts)
        start = time.perf_counter()
        results = await self._in_thread(self.decide_many, texts)
        return [self._late(start) for _ in texts] if results is None else results

    async def _in_thread(self, fn: Callable[[_A], _R], arg: _A) -> _R | None:
        """``fn(arg)`` in a worker thread; None when the latency budget ran out first."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, arg)
        budget = self.policy.latency_budget_ms
        if budget is None:
            return await fut
        try:
            # The thread finishes its ONNX call in the background; its answer is dropped.
            return await asyncio.wait_for(fut, budget / 1e3)
        except TimeoutError:
            return None

    def _late(self, start: float) -> GuardResult:
        budget = self.policy.latency_budget_ms
        return self._nothing(start, error=f"latency budget {budget} ms spent waiting for the model")

    async def acheck(self, text: str) -> GuardResult:
        """``check`` in a worker thread: never blocks the event loop. With a latency
        budget, stops waiting once it is spent (a degraded result)."""
        _check_text(text)
        return self._finish(await self.adecide(text), None)

    async def acheck_many(self, texts: Sequence[str]) -> list[GuardResult]:
        """``check_many`` in a worker thread."""
        if isinstance(texts, str | bytes):
            raise TypeError("acheck_many takes a list of str, not a single str")
        return [self._finish(r, None) for r in await self.adecide_many(texts)]

    # ---- chat rails -------------------------------------------------------------------
    def check_input(self, messages: Iterable[Any]) -> GuardResult:
        """Input rail: the last user turn of an OpenAI / Anthropic message list."""
        return self._finish(self.decide(last_user_text(messages)), "input")

    def check_output(self, messages: Iterable[Any] | None, reply: Any) -> GuardResult:
        """Output rail: the model's reply (a str, a message, or content blocks).

        ``messages`` is the conversation; guards exported by this version were trained
        on single texts, so the reply is scored alone.
        """
        return self._finish(self.decide(content_text(reply)), "output")

    async def acheck_input(self, messages: Iterable[Any]) -> GuardResult:
        text = last_user_text(messages)
        return self._finish(await self.adecide(text), "input")

    async def acheck_output(self, messages: Iterable[Any] | None, reply: Any) -> GuardResult:
        text = content_text(reply)
        return self._finish(await self.adecide(text), "output")

    def protect(
        self,
        *,
        input: bool | Guard = True,
        output: bool | Guard = True,
        on_check: rails.OnCheck | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator guarding a chat callable ``fn(messages, ...) -> reply`` (sync or
        async; see ``guardrail_dro.serve.rails.protect``)."""
        return rails.protect(self, input=input, output=output, on_check=on_check)

    def wrap(self, client: Any, **options: Any) -> Any:
        """An OpenAI / Anthropic client whose create calls are guarded
        (``guardrail_dro.serve.rails.sdk.wrap``; options: input, output, on_check)."""
        return rails.wrap(client, self, **options)
