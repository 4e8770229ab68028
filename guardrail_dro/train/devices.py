"""Which torch device a run trains on: the one named (``--device``), checked to exist
here before any data is read, else the best this machine has."""

from __future__ import annotations

import torch

from guardrail_dro.errors import ConfigError

__all__ = ["pick_device"]


def pick_device(name: str | None) -> torch.device:
    """The named device, else CUDA when present, else MPS, else CPU.

    Raises:
        ConfigError: ``name`` is no device, or one this machine does not have (torch
            failed only at the first tensor moved there, with its own traceback).
    """
    if name:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(
                f"{name!r} is not a device (--device): use cpu, cuda, cuda:<index> or mps"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            built = torch.version.cuda is not None
            why = "torch sees no GPU" if built else "this torch is built without CUDA"
            raise ConfigError(f"device {name!r} (--device) is not available: {why}; use cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} (--device) is not available: torch sees "
                f"{torch.cuda.device_count()} GPU(s), cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and not (mps and mps.is_available()):
            raise ConfigError(f"device {name!r} (--device) is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
