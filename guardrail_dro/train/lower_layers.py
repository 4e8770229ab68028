"""Frozen lower layers computed once: what makes ``--train-layers N`` cheap on a CPU.

With only the top N encoder layers training, everything below them (embeddings and
the lower layers) is a fixed function of the text. Full mode used to run it again on
every training step and on every whole-split evaluation; on all-mpnet-base-v2 with the
top 2 of 12 layers trained that was most of a 20-minute run. ``LowerStates`` runs the
frozen part once per split, in eval mode (no dropout: a frozen layer is a fixed feature
extractor), keeps each text's hidden states (its real tokens only, float32, on the CPU)
and hands a batch of them to the top layers.

How the top layers run on given states without one code path per architecture:
``layer_range`` lets the model's own ``forward`` run with its ``embeddings`` returning
the cached states and ``encoder.layer`` holding only the trained layers. That is the
layout of BERT-style encoders (BERT, MiniLM, MPNet, RoBERTa); the model builds its
attention mask (and MPNet its relative position bias) from the mask and the states'
shape as usual. Padding positions get zeros instead of whatever the lower layers made
of pad tokens: attention never reads them and mean pooling skips them, so a text's
pooled features are the same. Some models with an ``encoder.layer`` list do more
between the embeddings and the layers, or after the last layer (ELECTRA's embedding
projection, a final LayerNorm in the encoder, DeBERTa's convolution tied to layer 0):
``LowerStates.agrees`` compares both paths on a few texts first, and the caller falls
back to the plain model where they differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from guardrail_dro.errors import ConfigError
from guardrail_dro.train.model import GuardClassifier

__all__ = ["MAX_BYTES", "LowerStates", "eval_mode", "freeze_below", "layer_range"]

MAX_BYTES = 4 * 1024**3
"""Largest cache kept in memory (4 GiB, float32 on the CPU). Toxic-questions' train and
valid (131,740 tokens) take 0.2 GB on MiniLM (384 wide) and 0.4 GB on MPNet (768 wide);
past the limit full mode runs the frozen layers on every step, and says so."""


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; on leaving, every submodule gets back its own mode
    (``module.train(was)`` would put frozen submodules kept in eval mode back in train
    mode)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, was in modes:
            m.training = was


@contextmanager
def layer_range(
    encoder: Any, start: int, stop: int, states: torch.Tensor | None = None
) -> Iterator[None]:
    """Inside the block, ``encoder(...)`` runs only ``encoder.encoder.layer[start:stop]``;
    with ``states`` its embeddings module returns them instead of embedding the ids.

    The model's modules are restored on leaving, also on an exception; inside the block
    its ``state_dict`` is not the model's (the layer list is a slice), so only call it.
    ``encoder`` is typed ``Any``: ``encoder.encoder.layer`` and ``encoder.embeddings``
    are the BERT-style layout's, which no Hugging Face base class declares.
    """
    stack = encoder.encoder
    layers = stack.layer
    embeddings = encoder.embeddings
    own = vars(embeddings).get("forward")  # an instance-level forward (a hook) to keep
    stack.layer = nn.ModuleList(list(layers)[start:stop])
    if states is not None:
        embeddings.forward = lambda *args, **kwargs: states
    try:
        yield
    finally:
        stack.layer = layers
        if states is not None:
            del embeddings.forward
            if own is not None:
                embeddings.forward = own


class LowerStates:
    """Each text's hidden states entering encoder layer ``start``, per split.

    Args:
        encoder: the Hugging Face encoder (not DDP-wrapped: the caller checks).
        start: the lowest trained layer; layers below it and the embeddings are frozen.
    """

    def __init__(self, encoder: Any, start: int) -> None:
        self.encoder = encoder
        self.start = start
        self._flat: dict[str, torch.Tensor] = {}
        self._offsets: dict[str, torch.Tensor] = {}
        self._lengths: dict[str, torch.Tensor] = {}

    @staticmethod
    def nbytes(lengths: list[torch.Tensor], width: int) -> int:
        """Memory the states of texts with these token counts take (float32)."""
        return sum(int(n.sum()) for n in lengths) * width * 4

    def has(self, split: str) -> bool:
        return split in self._flat

    def clear(self) -> None:
        """Drop every split's states (built again if asked for)."""
        self._flat.clear()
        self._offsets.clear()
        self._lengths.clear()

    @torch.no_grad()
    def agrees(
        self,
        embedder: GuardClassifier,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        device: torch.device,
    ) -> bool:
        """Whether the cached path gives the plain model's pooled features on these
        texts (a handful: the check costs two forward passes of them), in eval mode.
        False also where the sliced model fails to run. Modules' modes are kept."""
        width = int(attention_mask.sum(1).max())
        ids, mask = input_ids[:, :width].to(device), attention_mask[:, :width].to(device)
        probe = LowerStates(self.encoder, self.start)
        with eval_mode(self.encoder):
            try:
                want = embedder.embed(ids, mask)
                probe.build("probe", input_ids, attention_mask, len(ids), device)
                got = probe.embed(embedder, "probe", torch.arange(len(ids)), ids, mask)
            except (RuntimeError, ValueError, TypeError, AttributeError):
                return False
        return bool(torch.allclose(got, want, atol=1e-4, rtol=1e-3))

    @torch.no_grad()
    def build(
        self,
        split: str,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        batch_size: int,
        device: torch.device,
    ) -> None:
        """Run the frozen part over every text of ``split`` once, in length order and
        eval mode, keeping each text's real tokens. Every module's train/eval mode is
        left as it was."""
        lengths = attention_mask.sum(1)
        offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        width = int(self.encoder.config.hidden_size)
        flat = torch.empty(int(offsets[-1]), width)
        with eval_mode(self.encoder):
            for chunk in torch.argsort(lengths, stable=True).split(batch_size):
                w = int(lengths[chunk].max())
                ids = input_ids[chunk, :w].to(device)
                mask = attention_mask[chunk, :w].to(device)
                with layer_range(self.encoder, 0, self.start):
                    hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                hidden = hidden.float().cpu()
                for row, i in enumerate(chunk.tolist()):
                    flat[offsets[i] : offsets[i + 1]] = hidden[row, : int(lengths[i])]
        self._flat[split], self._offsets[split], self._lengths[split] = flat, offsets, lengths

    def batch(self, split: str, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(B, W, D) states of items ``idx``, zero past each text's end (W: the longest)."""
        flat, offsets, lengths = self._flat[split], self._offsets[split], self._lengths[split]
        rows = idx.cpu().tolist()
        out = torch.zeros(len(rows), int(lengths[idx.cpu()].max()), flat.shape[1])
        for j, i in enumerate(rows):
            out[j, : int(lengths[i])] = flat[offsets[i] : offsets[i + 1]]
        return out.to(device)

    def embed(
        self,
        embedder: GuardClassifier,
        split: str,
        idx: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """``embedder.embed`` of items ``idx`` (their ids and mask trimmed to the batch's
        width, on the device) with only the trained layers running."""
        states = self.batch(split, idx, input_ids.device)
        stop = len(self.encoder.encoder.layer)
        with layer_range(self.encoder, self.start, stop, states):
            out: torch.Tensor = embedder.embed(input_ids, attention_mask)
        return out


def freeze_below(encoder: nn.Module, top: int) -> None:
    """Leave only the top ``top`` transformer layers of ``encoder`` trainable: the rest
    (word embeddings, lower layers, an unused pooler) get ``requires_grad=False``, so
    the backward pass stops at the lowest trainable layer.

    Raises:
        ConfigError: the encoder has no ``encoder.layer`` list (a BERT-style backbone)
            or fewer than ``top`` layers.
    """
    layers = getattr(getattr(getattr(encoder, "module", encoder), "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(
            "train_layers needs a BERT-style encoder (encoder.layer); this backbone has "
            "none: leave train_layers unset to fine-tune every parameter"
        )
    if top > len(layers):
        raise ConfigError(f"train_layers={top}, but the encoder has {len(layers)} layers")
    for p in encoder.parameters():
        p.requires_grad_(False)
    for layer in layers[len(layers) - top :]:
        for p in layer.parameters():
            p.requires_grad_(True)
