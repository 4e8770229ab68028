"""What an export is checked on: probe texts, and logits of PyTorch and ONNX Runtime.

Both sides tokenize the same way (``encode``) and batch texts of similar length
together, so the comparison in ``export.validate`` measures the model, not padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = [
    "N_BUILTIN",
    "encode",
    "onnx_logits",
    "probe_texts",
    "served_logits",
    "torch_logits",
]

_SENTENCES = (
    "Hello!",
    "What is the capital of France?",
    "How do I reset my router password without calling support?",
    "Tell me a joke about cats and dogs living together.",
    "Which household chemicals are dangerous to mix, so I can avoid it?",
    "I think people from that town are all idiots, am I wrong?",
    "Write a short poem about the sea at night, with the moon and a lighthouse.",
    "Can you summarise the plot of Hamlet in two sentences for a school essay?",
    "Why do some countries drive on the left side of the road?",
    "Give me step by step instructions to pick a lock on a neighbour's door.",
    "Is it safe to take ibuprofen and paracetamol together for a headache?",
    "Explain quantum entanglement like I'm five years old, please.",
)

N_BUILTIN = len(_SENTENCES) + 4  # the probe texts that are not the caller's


def probe_texts(max_length: int, extra: Sequence[str] = (), limit: int = 48) -> list[str]:
    """Texts of varied lengths: one character, short and long sentences, over-long text."""
    long_text = " ".join(_SENTENCES) * (1 + max_length // 40)
    texts = ["a", "?", *_SENTENCES, " ".join(_SENTENCES[:4]), long_text]
    return texts + [t for t in extra if t.strip()][: max(0, limit - len(texts))]


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Hugging Face tokenizer -> int64 (ids, mask), padded to the batch's longest."""
    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def _batches(n: int, lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    order = sorted(range(n), key=lambda i: lengths[i])
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def torch_logits(model, tokenizer, texts: Sequence[str], max_length: int, batch_size=32):
    """PyTorch logits (N, C) in input order, batched by length."""
    import torch

    out = None
    with torch.no_grad():
        for idx in _batches(len(texts), [len(t) for t in texts], batch_size):
            ids, mask = encode(tokenizer, [texts[i] for i in idx], max_length)
            lg = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            out = np.zeros((len(texts), lg.shape[1]), np.float32) if out is None else out
            out[idx] = lg
    return out


def onnx_logits(session, tokenizer, texts: Sequence[str], max_length: int, batch_size=32):
    """ONNX Runtime logits (N, C) in input order; ``session`` is a runtime.GuardSession."""
    out = None
    for idx in _batches(len(texts), [len(t) for t in texts], batch_size):
        lg = session.run(*encode(tokenizer, [texts[i] for i in idx], max_length))
        out = np.zeros((len(texts), lg.shape[1]), np.float32) if out is None else out
        out[idx] = lg
    return out


def served_logits(
    session, tokenizer, texts: Sequence[str], max_length: int, reference: np.ndarray,
    safe: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Per text, the scores the guard decides on: ``reference`` (``onnx_logits``: the
    first ``max_length`` tokens) where a text fits one window, else the log-probabilities
    of its window with the highest toxic score (1 - P(safe classes)), the windows
    overlapping as the guard's do (``default_stride``).

    Why: the guard scores every window of a long text and the worst decides; an
    operating point chosen on first windows alone missed what came later (a split of
    long texts with a benign opening got threshold 0.0006, blocking every safe text).
    """
    from guardrail_dro.serve.onnx_scorer import default_stride

    out = np.array(reference, dtype=np.float32, copy=True)
    if not safe.any():  # no toxic score to find the worst window by
        return out
    enc = tokenizer(
        list(texts), truncation=True, max_length=max_length, stride=default_stride(max_length),
        return_overflowing_tokens=True,
    )  # fmt: skip
    rows_of: dict[int, list[list[int]]] = {}
    for row, text_index in zip(enc["input_ids"], enc["overflow_to_sample_mapping"], strict=True):
        rows_of.setdefault(int(text_index), []).append(row)
    for i, rows in rows_of.items():
        if len(rows) < 2:
            continue
        lg = np.concatenate([
            session.run(np.asarray([r], np.int64), np.ones((1, len(r)), np.int64)) for r in rows
        ])  # fmt: skip
        logp = lg - np.logaddexp.reduce(lg, axis=1, keepdims=True)
        toxic = 1.0 - np.exp(logp[:, safe]).sum(axis=1)
        out[i] = logp[int(np.argmax(toxic))]
    return out
