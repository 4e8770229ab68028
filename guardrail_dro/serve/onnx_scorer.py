"""The ONNX scorer: a guard artifact's tokenizer and ONNX Runtime session behind the
``Scorer`` protocol (``Guard.load`` builds one).

One session and one ``tokenizers`` tokenizer, shared by every thread
(``InferenceSession.run`` and ``Tokenizer.encode`` are safe to call concurrently);
each thread fills its own preallocated input buffers. No pydantic and no torch on the
hot path: tokenize, copy ids into the buffer, run.

Long texts are never silently truncated: the tokenizer cuts them into windows of the
model's maximum length that overlap by ``stride`` tokens. onnxruntime and tokenizers
are imported when a scorer is opened, not when this module is.

Batch invariance: a text's scores must not depend on what else is in its batch. In fp32
they do not, up to float rounding (measured 2.5e-7 at most): padding is masked out of
attention. The int8 variant is different: ONNX Runtime's dynamic quantization
(``DynamicQuantizeLinear``) computes one activation scale and zero point per *tensor*,
over every row of the batch and every pad position, so a short text batched with long
or unusual ones is quantized more coarsely. Issue 10 measured, on the MiniLM guard with
307 toxic-questions texts, int8 ``check_many`` against ``check``: 1.4e-2 median and
8.3e-2 max difference, 3 decisions flipped. So the int8 variant runs one row at a time
(``per_row``): each window is quantized with the scales it gets alone, and ``check``
and ``check_many`` agree exactly. Measured with ``benchmarks/bench_batch_invariance.py``
(one intra-op thread, shared 2-core CPU, 307 toxic-questions texts): on a MiniLM
guard, batched int8 differed from ``check`` by 6.0e-3 median, 1.1e-1 max, 5 decisions
flipped; one row at a time, by 0 (bit-identical), for 6% of ``check_many`` throughput
(75.6 -> 71.2 texts/s; 328 -> 306 on the tiny test model). Fewer pad tokens pay back
most of the lost batching. Grouping by length would not help (a scale still spans
rows), and per-row scales would need a rewritten quantized graph. fp32 stays batched.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from guardrail_dro.errors import ArtifactError, ConfigError, DependencyError
from guardrail_dro.serve.runtime import (
    PROVIDERS,
    GuardSession,
    SessionConfig,
    create_session,
    import_onnxruntime,
)
from guardrail_dro.serve.scorer import ScorerBase

if TYPE_CHECKING:
    from guardrail_dro.serve.artifact import GuardArtifact

__all__ = ["OnnxScorer", "default_stride"]


def _threads_for(config: SessionConfig, precision: str) -> SessionConfig:
    """One intra-op thread for an int8 graph unless the config says otherwise: its
    integer kernels are too little work to split, and one thread beat two at p50 and in
    batches of 32 alike, while fp32 was faster on two (README "Guard")."""
    if config.intra_op_threads is None and precision == "int8":
        return dataclasses.replace(config, intra_op_threads=1)
    return config


def _open_auto(art: GuardArtifact, config: SessionConfig) -> tuple[GuardSession, str]:
    """The session and precision for ``precision="auto"``: the variant is picked for the
    provider that actually runs, read back from the session, not for the providers
    onnxruntime was built with (a CUDA build on a machine whose CUDA libraries do not
    load runs on CPU, where int8 is the variant to run, not fp16)."""
    if config.provider != "auto":
        precision = art.best_variant(config.provider)
        return create_session(art.model_path(precision), _threads_for(config, precision)), precision
    built = set(import_onnxruntime().get_available_providers())
    gpu = {PROVIDERS["tensorrt"], PROVIDERS["cuda"]} & built
    guess = art.best_variant("cuda" if gpu else "cpu")
    try:
        session = create_session(art.model_path(guess), _threads_for(config, guess))
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
    again = create_session(art.model_path(want), _threads_for(pinned, want))
    return dataclasses.replace(again, requested="auto", skipped=session.skipped), want


def default_stride(max_length: int) -> int:
    """Tokens consecutive windows of a long text share (a quarter of a window): the
    guard's, and what export's calibration windows long validation texts with."""
    return max_length // 4


class OnnxScorer(ScorerBase):
    """A guard artifact's model: its tokenizer (truncating into overlapping windows) and
    an ONNX Runtime session. Build with ``OnnxScorer.open``; thread-safe.

    Attributes:
        artifact: the verified artifact directory it was opened from.
        session: the ``runtime.GuardSession`` (which provider really runs).
        tokenizer: the ``tokenizers.Tokenizer``, truncating with ``stride`` overlap.
        stride: tokens shared by consecutive windows.
        precision: the variant running: fp32, int8 or fp16.
        session_config: the ``SessionConfig`` the session was built with.
        per_row: run the model one row at a time (default: for int8 only; see the
            module docstring), so a row's scores never depend on the others in a batch.
    """

    def __init__(
        self,
        *,
        artifact: GuardArtifact,
        session: GuardSession,
        tokenizer: Any,
        stride: int,
        batch_size: int,
        precision: str = "fp32",
        session_config: SessionConfig | None = None,
    ) -> None:
        self.artifact = artifact
        self.session_config = session_config
        self.session = session
        self.tokenizer = tokenizer
        self.stride = stride
        self.precision = precision
        man = artifact.manifest
        self._labels = tuple(man.label_schema.classes)
        self._max_length = man.max_length
        self._batch_size = batch_size
        self._run = session.session.run
        self._out = list(session.output_names[:1])
        self._in_ids, self._in_mask = session.input_names[:2]
        pad_id = tokenizer.token_to_id(man.pad_token)
        if pad_id is None:
            raise ArtifactError(f"the tokenizer has no padding token {man.pad_token!r}")
        self._pad_id: int = pad_id
        self._ones = np.ones(self._max_length, dtype=np.int64)
        self._local = threading.local()
        self._untruncated: Any = None
        self.per_row = precision == "int8"

    @classmethod
    def open(
        cls,
        art: GuardArtifact,
        *,
        provider: str = "auto",
        precision: str = "auto",
        intra_op_threads: int | None = None,
        stride: int | None = None,
        batch_size: int = 32,
        session_config: SessionConfig | None = None,
    ) -> OnnxScorer:
        """Open an artifact's tokenizer and session and warm the model up (the
        arguments are ``Guard.load``'s, which documents them).

        Raises:
            ArtifactError: a tokenizer without the manifest's padding token, a graph
                that does not load or does not output one logit per class.
            ConfigError: unknown provider or precision, a stride out of range,
                provider options given twice.
            DependencyError: onnxruntime or tokenizers missing (names the extra).
        """
        max_len = art.manifest.max_length
        stride = default_stride(max_len) if stride is None else stride
        if not isinstance(stride, int) or not 0 <= stride < max_len - 2:
            raise ConfigError(f"stride must be an int in [0, {max_len - 2}), not {stride!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, not {batch_size!r}")
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
            session = create_session(art.model_path(precision), _threads_for(config, precision))
        config = _threads_for(config, precision)
        scorer = cls(
            artifact=art,
            session=session,
            tokenizer=tok,
            stride=stride,
            batch_size=batch_size,
            precision=precision,
            session_config=config,
        )
        scorer._warm_up()
        return scorer

    def _warm_up(self) -> None:
        # A graph that loads but does not answer (wrong inputs, wrong class count) must
        # fail here, at load, never at the first user's check.
        try:
            logits = self.logits([self.tokenizer.encode("warm up").ids])
        except Exception as exc:  # ORT raises its own pybind types
            raise ArtifactError(
                f"{self.artifact.path}: the guard model does not run: {exc}"
            ) from None
        if logits.shape != (1, len(self._labels)):
            raise ArtifactError(
                f"{self.artifact.path}: the model outputs {logits.shape[1:]} logits per text, "
                f"the manifest lists {len(self._labels)} classes"
            )

    # ---- the Scorer protocol ----------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.session.provider

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        loc = self._local
        bufs: tuple[np.ndarray, np.ndarray] | None = getattr(loc, "bufs", None)
        if bufs is None:
            n = self._batch_size * self._max_length
            bufs = loc.bufs = (np.empty(n, np.int64), np.empty(n, np.int64))
        return bufs

    def logits(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits (len(rows), C) for token id rows (at most batch_size), padded here
        (or, with ``per_row``, run one by one without padding)."""
        n = len(rows)
        if n > 1 and self.per_row:
            return np.concatenate([self.logits(rows[i : i + 1]) for i in range(n)])
        ids_buf, mask_buf = self._buffers()
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
        out: np.ndarray = self._run(self._out, {self._in_ids: ids, self._in_mask: mask})[0]
        return out

    def encode(self, text: str) -> list[list[int]]:
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
        (room for the special tokens)."""
        tok = self._untruncated
        if tok is None:  # a copy without truncation; a benign race builds it twice at most
            tok = type(self.tokenizer).from_str(self.tokenizer.to_str())
            tok.no_truncation()
            tok.no_padding()
            self._untruncated = tok
        # A token covers at most ~100 characters (WordPiece's longest word), so the last
        # window lies in this suffix; cutting a word here only affects a dropped token.
        start = max(0, len(text) - self._max_length * 100)
        try:
            enc = tok.encode(text[start:], add_special_tokens=False)
        except TypeError:  # unpaired surrogates: the whole text is checked instead
            return text
        keep = self._max_length - 2
        if len(enc.offsets) <= keep:
            return text[start:]
        return text[start + enc.offsets[-keep][0] :]

    def __repr__(self) -> str:
        return (
            f"OnnxScorer({str(self.artifact.path)!r}, provider={self.provider!r}, "
            f"precision={self.precision!r})"
        )
