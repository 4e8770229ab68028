"""The check of an export: every ONNX variant against its reference, all mismatches at once.

Checks (limits in ``export.spec.Tolerances``):

- tokenizer: the artifact's ``tokenizer.json`` read by the ``tokenizers`` library (what
  the guard uses at serving time) gives the same ids as the training tokenizer;
- fp32: max |logit| difference to PyTorch on probe texts of varied lengths (one
  character, a few words, sentences, a text truncated at max length), each alone and
  in padded batches, and on raw token sequences of length 1 and ``max_length``;
- int8: the DECISION the guard makes (blocked or allowed, at its operating point:
  ``Validator.decide``), each text scored alone as the guard serves int8, must agree
  with fp32's on >= 99% of the validation texts, and the binary worst-group accuracy
  (gold toxic = gold class not safe, against blocked) may drop at most 1 point when the
  split has gold labels and groups. 15-class argmax agreement and max |logit diff| are
  recorded, not gated: a flip between two toxic classes changes no decision, while a
  quantized model that keeps every argmax can still move scores across the threshold.
  Without a validation split the gate runs on the probe texts only: the report says so
  (``ParityReport.gates``, a note), since 16 texts cannot show a 1% flip rate;
- fp16: argmax agreement with fp32 on the validation (or probe) texts.

Failures never stop at the first: ``ParityReport.raise_for_mismatches`` raises one
``ExportParityError`` listing each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.gate import (
    GATE_PROBES,
    GATE_VALIDATION,
    MIN_GATE_TEXTS,
    SMALL_GATE_NOTE,
    WEAK_GATE_NOTE,
    Decide,
    decisions,
    int8_gate,
    toxic_decision,
)
from export.probes import N_BUILTIN, encode, onnx_logits, probe_texts, served_logits, torch_logits
from export.spec import Tolerances
from guardrail_dro.errors import UNCHECKED, ExportParityError, Mismatch

__all__ = [
    "UNCHECKED",
    "Decide",
    "ExportParityError",
    "Mismatch",
    "ParityReport",
    "Validator",
    "merge",
    "toxic_decision",
    "validate_export",
]


@dataclass
class ParityReport:
    """Numbers measured per variant, and the mismatches among them."""

    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unchecked: dict[str, str] = field(default_factory=dict)  # variant -> why not checked
    gates: dict[str, str] = field(default_factory=dict)  # variant -> GATE_VALIDATION / _PROBES

    def require_checked(self, allowed: Iterable[str] = ()) -> None:
        """Record a mismatch for every variant whose parity was not measured, except
        those the user opted into shipping unchecked (``allowed``)."""
        ok = set(allowed)
        for variant, why in self.unchecked.items():
            if variant not in ok:
                detail = (
                    f"{why}; check it where it runs, or opt in with --allow-unchecked-fp16 "
                    "(it is then never chosen automatically)"
                )
                self.mismatches.append(Mismatch(variant, UNCHECKED, 0.0, 0.0, detail))

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def failed_variants(self) -> set[str]:
        return {m.variant for m in self.mismatches}

    def raise_for_mismatches(self) -> None:
        if self.mismatches:
            hint = ""
            if self.failed_variants() <= {"int8", "fp16"}:
                hint = "fp32 passed: export without the failing variant (--no-int8 / no --fp16)."
            raise ExportParityError(self.mismatches, hint=hint)


def _check_tokenizer(report, artifact_dir: Path, tokenizer, texts, max_length, pad_token):
    from guardrail_dro.serve.artifact import GuardArtifact

    try:
        import tokenizers  # noqa: F401
    except ImportError:
        report.notes.append("tokenizers not installed: serving tokenizer not checked")
        return
    man = _Stub(max_length=max_length, pad_token=pad_token)
    fast = GuardArtifact(path=artifact_dir, manifest=man).load_tokenizer(pad=False)  # type: ignore[arg-type]
    bad = []
    for t in texts:
        ref = tokenizer(t, truncation=True, max_length=max_length)["input_ids"]
        if list(fast.encode(t).ids) != list(ref):
            bad.append(t)
    report.stats.setdefault("tokenizer", {})["texts_differing"] = float(len(bad))
    if bad:
        report.mismatches.append(
            Mismatch(
                "tokenizer",
                "texts tokenized differently by tokenizer.json",
                len(bad),
                0,
                f"first: {bad[0][:60]!r}",
            )
        )


@dataclass(frozen=True)
class _Stub:
    max_length: int
    pad_token: str


def _fp32_parity(report, model, tokenizer, sess, texts, max_length, tol: Tolerances):
    import torch

    worst, worst_where = 0.0, ""
    ref_batch = torch_logits(model, tokenizer, texts, max_length)
    got_batch = onnx_logits(sess, tokenizer, texts, max_length)
    d = np.abs(ref_batch - got_batch).max(axis=1)
    i = int(d.argmax())
    worst, worst_where = float(d[i]), f"padded batch, text {texts[i][:40]!r}"
    # Sequence lengths (tokens, special tokens included) of every comparison run, so the
    # recorded range is what was tested, not what was meant to be.
    text_lengths = [int(encode(tokenizer, [t], max_length)[1].sum()) for t in texts]
    tested = set(text_lengths)
    # Batch 1, no padding (the guard's own case) on the built-in texts, which span the
    # lengths; the validation texts among the probes are compared in padded batches.
    for t in texts[:N_BUILTIN]:
        ids, mask = encode(tokenizer, [t], max_length)
        with torch.no_grad():
            ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        diff = float(np.abs(ref - sess.run(ids, mask)).max())
        tested.add(int(ids.shape[1]))
        if diff > worst:
            worst, worst_where = diff, f"batch 1, {ids.shape[1]} tokens, text {t[:40]!r}"
    # Raw token sequences at the extremes of the dynamic sequence axis.
    rng = np.random.default_rng(0)
    vocab = getattr(tokenizer, "vocab_size", 1000)
    for n in (1, max_length):
        ids = rng.integers(1000 if vocab > 2000 else 1, vocab, size=(2, n), dtype=np.int64)
        mask = np.ones_like(ids)
        with torch.no_grad():
            ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        diff = float(np.abs(ref - sess.run(ids, mask)).max())
        tested.add(int(ids.shape[1]))
        if diff > worst:
            worst, worst_where = diff, f"{n} random token(s)"
    report.stats["fp32"] = {
        "max_abs_diff": worst,
        "probe_texts": float(len(texts)),
        "min_tokens": float(min(tested)),
        "max_tokens": float(max(tested)),
        "distinct_lengths": float(len(tested)),
        "text_max_tokens": float(max(text_lengths)),
    }
    if worst > tol.fp32_max_abs_diff:
        report.mismatches.append(
            Mismatch(
                "fp32", "max abs logit diff vs PyTorch", worst, tol.fp32_max_abs_diff, worst_where
            )
        )
    return ref_batch


def _agreement(report, variant, fp32_logits, logits, limit, n_what: str) -> None:
    agree = float(np.mean(fp32_logits.argmax(1) == logits.argmax(1)))
    report.stats.setdefault(variant, {}).update(
        agreement=agree, max_abs_diff_vs_fp32=float(np.abs(fp32_logits - logits).max())
    )
    if agree < limit:
        flips = int(np.sum(fp32_logits.argmax(1) != logits.argmax(1)))
        report.mismatches.append(
            Mismatch(
                variant,
                "argmax agreement with fp32",
                agree,
                limit,
                f"{flips} of {len(logits)} {n_what} changed class",
            )
        )


class Validator:
    """Checks variants against one fp32 reference, computed once.

    ``check_fp32`` compares the fp32 graph to PyTorch; ``check_variant`` compares an
    int8 / fp16 graph to the fp32 graph on the agreement texts. Each returns its own
    ParityReport, so a caller may try several quantization recipes and keep one.

    ``decide`` is the guard's decision at its operating point, logits (N, C) -> blocked
    (N,) bool; the int8 gate compares decisions through it. None means the toxic score
    1 - P(safe classes) >= 0.5. The exporter sets it from the calibrated operating point
    before quantizing, so int8 is gated where the guard will actually decide.
    """

    def __init__(
        self,
        trained,
        fp32_path: str | Path,
        *,
        valid=None,
        tolerances: Tolerances | None = None,
        intra_op_threads: int | None = None,
        decide: Decide | None = None,
    ) -> None:
        from guardrail_dro.serve.runtime import create_session

        self.decide: Decide | None = decide
        self.trained = trained
        self.valid = valid
        self.tol = tolerances or Tolerances()
        self.threads = intra_op_threads
        self.max_length = trained.manifest.max_length
        valid_texts = valid.texts if valid is not None else []
        self.probes = probe_texts(self.max_length, valid_texts)
        self.texts = list(valid_texts) or self.probes
        self.what = "validation texts" if valid_texts else "probe texts"
        self.fp32 = create_session(fp32_path, provider="cpu", intra_op_threads=self.threads)
        self._ref: np.ndarray | None = None
        self._ref_rows: np.ndarray | None = None

    @property
    def reference(self) -> np.ndarray:
        """fp32 ONNX logits on the agreement texts."""
        ref = self._ref
        if ref is None:
            ref = onnx_logits(self.fp32, self.trained.tokenizer, self.texts, self.max_length)
            self._ref = ref
        return ref

    @property
    def reference_per_row(self) -> np.ndarray:
        """fp32 ONNX logits on the agreement texts, each text run alone (as int8 is
        served), so the int8 gate compares like with like."""
        ref = self._ref_rows
        if ref is None:
            ref = self._logits(self.fp32, per_row=True)
            self._ref_rows = ref
        return ref

    def _logits(self, session, *, per_row: bool) -> np.ndarray:
        bs = 1 if per_row else 32
        first = onnx_logits(session, self.trained.tokenizer, self.texts, self.max_length, bs)
        if not per_row:
            return first
        # The int8 gate compares the guard's real decisions: a long text is decided by
        # its most toxic window, each window run alone as the int8 guard runs it.
        safe = np.asarray(self.trained.schema.safe_mask(), dtype=bool)
        tok = self.trained.tokenizer
        return served_logits(session, tok, self.texts, self.max_length, first, safe)

    def blocked(self, logits: np.ndarray) -> np.ndarray:
        """The guard's decisions for ``logits`` (``decide``, or toxic score >= 0.5)."""
        decide = self.decide or toxic_decision(self.trained.schema.safe_mask())
        return decisions(decide, logits)

    def check_tokenizer(self, artifact_dir: str | Path, pad_token: str) -> ParityReport:
        report = ParityReport()
        _check_tokenizer(
            report,
            Path(artifact_dir),
            self.trained.tokenizer,
            self.probes,
            self.max_length,
            pad_token,
        )
        return report

    def check_fp32(self) -> ParityReport:
        report = ParityReport()
        _fp32_parity(
            report,
            self.trained.model,
            self.trained.tokenizer,
            self.fp32,
            self.probes,
            self.max_length,
            self.tol,
        )
        return report

    def check_variant(self, variant: str, path: str | Path) -> ParityReport:
        from guardrail_dro.serve.runtime import create_session

        report = ParityReport()
        per_row = variant == "int8"  # the guard runs int8 one text at a time
        try:
            sess = create_session(path, provider="cpu", intra_op_threads=self.threads)
            logits = self._logits(sess, per_row=per_row)
        except Exception as exc:
            # fp16 graphs may use kernels that ONNX Runtime's CPU provider lacks.
            if variant != "fp16":
                raise
            why = f"fp16 does not run on ONNX Runtime's CPU provider: {exc}"
            report.notes.append(f"fp16 not checked on CPU (check it on a GPU): {exc}")
            report.unchecked[variant] = why
            return report
        if variant != "int8":
            _agreement(
                report, variant, self.reference, logits, self.tol.fp16_min_agreement, self.what
            )
            return report
        report.gates["int8"] = GATE_VALIDATION if self.valid is not None else GATE_PROBES
        if self.valid is None:
            report.notes.append(WEAK_GATE_NOTE.format(n=len(self.texts)))
        elif len(self.texts) < MIN_GATE_TEXTS:
            report.notes.append(SMALL_GATE_NOTE.format(n=len(self.texts), min=MIN_GATE_TEXTS))
        int8_gate(
            report,
            self.valid,
            self.reference_per_row,
            logits,
            self.blocked,
            self.tol,
            self.what,
        )
        return report


def merge(*reports: ParityReport) -> ParityReport:
    """One report from several (stats per variant, all mismatches, all notes)."""
    out = ParityReport()
    for r in reports:
        for k, v in r.stats.items():
            out.stats.setdefault(k, {}).update(v)
        out.mismatches += r.mismatches
        out.notes += r.notes
        out.unchecked.update(r.unchecked)
        out.gates.update(r.gates)
    return out


def validate_export(
    trained,
    artifact_dir: str | Path,
    variants: dict[str, str | Path],
    *,
    valid=None,
    tolerances: Tolerances | None = None,
    pad_token: str = "[PAD]",
    intra_op_threads: int | None = None,
    allow_unchecked: Iterable[str] = (),
) -> ParityReport:
    """Check every exported variant; never raises on a mismatch, collects them.

    Args:
        trained: the ``TrainedModel`` that was exported (PyTorch reference).
        artifact_dir: the directory holding ``tokenizer.json`` and the ONNX files.
        variants: precision -> ONNX file (fp32 required; int8, fp16 optional).
        valid: an AnnotatedDataset for agreement and worst-group checks, or None.
        tolerances: the limits (default ``Tolerances()``).
        allow_unchecked: variants (``fp16``) whose parity may go unmeasured; any other
            variant that could not be checked is a mismatch.

    Returns:
        A ParityReport; call ``raise_for_mismatches()`` to fail on any mismatch.
    """
    v = Validator(
        trained,
        variants["fp32"],
        valid=valid,
        tolerances=tolerances,
        intra_op_threads=intra_op_threads,
    )
    reports = [v.check_tokenizer(artifact_dir, pad_token), v.check_fp32()]
    reports += [
        v.check_variant(name, variants[name]) for name in ("int8", "fp16") if name in variants
    ]
    report = merge(*reports)
    report.require_checked(allow_unchecked)
    return report


def summary(report: ParityReport) -> dict[str, Any]:
    """JSON-able view of a report (stats, mismatches, notes)."""
    return {
        "stats": report.stats,
        "mismatches": [str(m) for m in report.mismatches],
        "notes": report.notes,
        "unchecked": report.unchecked,
        "gates": report.gates,
    }
