"""ONNX Runtime sessions for guard models, with the execution-provider choice in one place.

Provider policy (the only place it is written down)::

    auto      TensorRT -> CUDA -> CPU: the first one that the installed onnxruntime was
              built with *and* that actually starts; falls back quietly (ORT's logger is
              silenced while GPU providers are tried, so no error banners reach the user).
    tensorrt  TensorRT (with CUDA and CPU behind it for the nodes TensorRT does not take);
    cuda      CUDA (CPU behind it for unsupported nodes);
    cpu       CPU only.

A provider named explicitly that cannot run is an error naming what to install. The
provider that really runs is read back from ``session.get_providers()``:
``onnxruntime.get_available_providers()`` lists what was compiled in, not what can run.

``onnxruntime`` and ``onnxruntime-gpu`` both install the ``onnxruntime`` module and
silently overwrite each other; ``check_onnxruntime_install`` refuses to go on when more
than one onnxruntime distribution is installed.

No torch here: this is the serving path.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from guardrail_dro.errors import ArtifactError, ConfigError, DependencyError, require

__all__ = [
    "FALLBACK_ORDER",
    "ONNXRUNTIME_DISTRIBUTIONS",
    "PROVIDERS",
    "GuardSession",
    "SessionConfig",
    "check_onnxruntime_install",
    "create_session",
    "import_onnxruntime",
    "installed_onnxruntime_distributions",
    "resolve_provider",
    "set_ort_log_severity",
]

#: Short provider names users write -> ONNX Runtime's names.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: The automatic choice, best first.
FALLBACK_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
_SHORT = {v: k for k, v in PROVIDERS.items()}

#: Distributions that each ship the ``onnxruntime`` module.
ONNXRUNTIME_DISTRIBUTIONS: tuple[str, ...] = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
)

_INSTALL = {
    "cpu": "pip install 'guardrail-dro[cpu]' (onnxruntime)",
    "cuda": "pip uninstall onnxruntime && pip install 'guardrail-dro[gpu]' (onnxruntime-gpu, "
    "built for CUDA 13 and cuDNN 9; check `nvidia-smi` and the CUDA libraries)",
    "tensorrt": "pip uninstall onnxruntime && pip install 'guardrail-dro[gpu]' (onnxruntime-gpu) "
    "and the TensorRT 10 libraries (libnvinfer.so.10 on the library path; TensorRT 11 "
    "does not load)",
}
_ORT_DEFAULT_SEVERITY = 2  # ORT's own default: warnings and above
_QUIET_SEVERITY = 4  # fatal only
_MODEL_ERRORS = {"InvalidProtobuf", "InvalidGraph", "NoSuchFile", "NotImplemented"}
# ORT's global logger severity as last set through this module: ORT offers a setter but
# no getter, so this is what the quiet provider probe restores. The lock keeps threads
# that open sessions at once from restoring each other's quiet level.
_log_lock = threading.Lock()
_log_severity = _ORT_DEFAULT_SEVERITY


def set_ort_log_severity(level: int) -> None:
    """Set ONNX Runtime's global log severity (0 verbose ... 4 fatal) and remember it.

    Use this rather than ``onnxruntime.set_default_logger_severity``: ORT cannot report
    its level, and the automatic provider choice silences the logger while it tries GPU
    providers, then restores the level set here.
    """
    global _log_severity
    if level not in range(5):
        raise ConfigError(f"ORT log severity must be 0..4, not {level!r}")
    with _log_lock:
        import_onnxruntime().set_default_logger_severity(level)
        _log_severity = level


@contextlib.contextmanager
def _quiet_logger(ort) -> Iterator[None]:
    """Silence ORT's global logger for a GPU provider probe, then restore its level."""
    with _log_lock:
        saved = _log_severity
        ort.set_default_logger_severity(_QUIET_SEVERITY)
        try:
            yield
        finally:
            ort.set_default_logger_severity(saved)


def installed_onnxruntime_distributions() -> list[str]:
    """Installed distributions that provide the ``onnxruntime`` module, with versions."""
    found = []
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def check_onnxruntime_install() -> None:
    """Refuse to start when several onnxruntime distributions are installed together.

    Raises:
        DependencyError: e.g. both ``onnxruntime`` and ``onnxruntime-gpu`` are installed;
            the last one installed has overwritten the other's files.
    """
    found = installed_onnxruntime_distributions()
    if len(found) > 1:
        raise DependencyError(
            f"several ONNX Runtime packages are installed together ({', '.join(found)}); "
            "they all write the same `onnxruntime` module and break each other. Keep one: "
            "`pip uninstall -y " + " ".join(f.split("==")[0] for f in found) + "` then "
            "`pip install 'guardrail-dro[cpu]'` (CPU) or `pip install 'guardrail-dro[gpu]'` "
            "(CUDA / TensorRT)."
        )


def import_onnxruntime():
    """``import onnxruntime`` after the install check; DependencyError naming the extra."""
    check_onnxruntime_install()
    return require("onnxruntime", "cpu")


def resolve_provider(name: str) -> str:
    """Normalise a user's provider name: auto, tensorrt, cuda or cpu.

    Raises:
        ConfigError: an unknown name; the message lists the known ones.
    """
    key = str(name).strip().lower()
    key = _SHORT.get(str(name).strip(), key)  # accept ORT's own names too
    aliases = {"trt": "tensorrt", "gpu": "cuda"}
    key = aliases.get(key, key)
    if key != "auto" and key not in PROVIDERS:
        raise ConfigError(
            f"unknown execution provider {name!r}: choose auto, {', '.join(FALLBACK_ORDER)}"
        )
    return key


@dataclass(frozen=True)
class SessionConfig:
    """How to build a session.

    Attributes:
        provider: auto, tensorrt, cuda or cpu.
        device_id: GPU index for CUDA / TensorRT.
        intra_op_threads: threads inside one operator (None: a guard picks, 1 for int8
            and ORT's for fp32, the faster here, README "Guard"; 0: ORT's, one per core).
        inter_op_threads: threads across operators (None: ORT's choice).
        trt_fp16: let TensorRT build fp16 kernels.
        trt_engine_cache_dir: where TensorRT keeps built engines (None: no cache; the
            first run then spends tens of seconds building).
        max_batch: largest batch in the TensorRT optimisation profile.
        max_length: longest sequence in the TensorRT optimisation profile.
        graph_optimization: ORT graph optimisation level: disable, basic, extended, all.
        allow_spinning: idle intra-op threads spin (None: ORT's default, on). Off here:
            spinning cost p50 68 vs 52 ms on a busy 2-core host (README "Guard").
        cpu_arena: ONNX Runtime's CPU memory arena (ORT's default, on).
    """

    provider: str = "auto"
    device_id: int = 0
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    trt_fp16: bool = False
    trt_engine_cache_dir: Path | None = None
    max_batch: int = 32
    max_length: int = 512
    graph_optimization: str = "all"
    allow_spinning: bool | None = False
    cpu_arena: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", resolve_provider(self.provider))
        for name, lo in (("intra_op_threads", 0), ("inter_op_threads", 1)):
            if (v := getattr(self, name)) is not None and v < lo:
                raise ConfigError(f"{name} must be >= 1 (or {lo or None}: ORT's choice), not {v}")
        if self.graph_optimization not in ("disable", "basic", "extended", "all"):
            raise ConfigError(
                "graph_optimization must be disable, basic, extended or all, "
                f"not {self.graph_optimization!r}"
            )
        if self.max_batch < 1 or self.max_length < 1:
            raise ConfigError("max_batch and max_length must be >= 1")


@dataclass(frozen=True)
class GuardSession:
    """An ONNX Runtime session over a guard graph, and which provider really runs it.

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        provider: the short name of the provider that runs the graph (tensorrt, cuda, cpu).
        requested: what was asked for (auto, tensorrt, cuda, cpu).
        providers: ``session.get_providers()``, ORT's names, best first.
        skipped: providers tried before this one that could not start (auto only).
    """

    session: Any
    provider: str
    requested: str
    providers: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    input_names: tuple[str, ...] = field(default=())
    output_names: tuple[str, ...] = field(default=())

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits (batch, classes) as float32 for int64 (batch, seq) token ids and mask."""
        feed = {
            self.input_names[0]: np.asarray(input_ids, dtype=np.int64),
            self.input_names[1]: np.asarray(attention_mask, dtype=np.int64),
        }
        out = self.session.run(self.output_names[:1], feed)[0]
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> str:
        msg = f"running on {self.provider}"
        if self.requested != self.provider:
            msg += f" (asked: {self.requested}"
            msg += f"; not available: {', '.join(self.skipped)})" if self.skipped else ")"
        return msg


def _session_options(ort, config: SessionConfig, quiet: bool):
    so = ort.SessionOptions()
    so.log_severity_level = _QUIET_SEVERITY if quiet else 3
    if config.intra_op_threads:  # 0 / None: ORT's choice
        so.intra_op_num_threads = config.intra_op_threads
    if config.inter_op_threads is not None:
        so.inter_op_num_threads = config.inter_op_threads
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if config.allow_spinning is not None:  # ORT reads "0" / "1"
        so.add_session_config_entry("session.intra_op.allow_spinning", str(+config.allow_spinning))
    so.enable_cpu_mem_arena = config.cpu_arena
    level = {"disable": "DISABLE_ALL", "basic": "ENABLE_BASIC", "extended": "ENABLE_EXTENDED"}
    name = level.get(config.graph_optimization, "ENABLE_ALL")
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_{name}")
    return so


def _provider_chain(first: str, config: SessionConfig) -> list[tuple[str, dict[str, str]]]:
    """ORT's (name, options) list starting at ``first`` and falling back down the order."""
    chain = []
    for short in FALLBACK_ORDER[FALLBACK_ORDER.index(first) :]:
        opts: dict[str, str] = {}
        if short == "tensorrt":
            b, t = config.max_batch, config.max_length
            opts = {
                "device_id": str(config.device_id),
                "trt_fp16_enable": str(config.trt_fp16),
                "trt_profile_min_shapes": "input_ids:1x1,attention_mask:1x1",
                "trt_profile_opt_shapes": f"input_ids:1x{min(t, 64)},attention_mask:1x{min(t, 64)}",
                "trt_profile_max_shapes": f"input_ids:{b}x{t},attention_mask:{b}x{t}",
            }
            if config.trt_engine_cache_dir is not None:
                cache = Path(config.trt_engine_cache_dir)
                cache.mkdir(parents=True, exist_ok=True)
                opts |= {
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": str(cache),
                }
        elif short == "cuda":
            opts = {"device_id": str(config.device_id)}
        chain.append((PROVIDERS[short], opts))
    return chain


def _try_session(ort, model: str, config: SessionConfig, first: str, quiet: bool):
    so = _session_options(ort, config, quiet)
    chain = _provider_chain(first, config)
    # ORT logs error banners through its default logger when a GPU provider's libraries
    # do not load; silence it for the attempt, then restore the level it had.
    quiet_global = _quiet_logger(ort) if first != "cpu" else contextlib.nullcontext()
    with quiet_global:
        return ort.InferenceSession(
            model,
            sess_options=so,
            providers=[n for n, _ in chain],
            provider_options=[o for _, o in chain],
            # We own the fallback (here, once); ORT's own prints banners to stdout.
            enable_fallback=0,
        )


def create_session(
    model_path: str | Path,
    config: SessionConfig | None = None,
    **options: Any,
) -> GuardSession:
    """Open an ONNX model with the provider policy above.

    Args:
        model_path: the ``.onnx`` file (e.g. ``load_artifact(d).model_path("int8")``).
        config: a SessionConfig; keyword ``options`` build one (``provider="cpu"``...).

    Returns:
        A GuardSession whose ``provider`` is what ``session.get_providers()`` reports.

    Raises:
        ConfigError: unknown provider name or bad option.
        DependencyError: a provider named explicitly that this machine cannot run (the
            message names the package to install), or several onnxruntime packages.
        ArtifactError: the model file is missing or not a valid ONNX graph.

    Example:
        >>> s = create_session("guard/model.int8.onnx", provider="cpu", intra_op_threads=2)
        >>> s.provider
        'cpu'
    """
    if config is None:
        config = SessionConfig(**options)
    elif options:
        raise ConfigError("give either a SessionConfig or keyword options, not both")
    ort = import_onnxruntime()
    path = Path(model_path)
    if not path.is_file():
        raise ArtifactError(f"ONNX model not found: {path}")
    built = set(ort.get_available_providers())
    requested = config.provider

    if requested == "auto":
        candidates = [p for p in FALLBACK_ORDER if PROVIDERS[p] in built] or ["cpu"]
    else:
        if PROVIDERS[requested] not in built:
            raise DependencyError(
                f"execution provider {requested!r} is not in this onnxruntime "
                f"({', '.join(installed_onnxruntime_distributions()) or 'onnxruntime'}; "
                f"built with {', '.join(sorted(built))}): {_INSTALL[requested]}"
            )
        candidates = [requested]

    skipped: list[str] = []
    for first in candidates:
        try:
            sess = _try_session(ort, os.fspath(path), config, first, quiet=True)
        except Exception as exc:  # ORT raises its own pybind types (Fail, InvalidGraph...)
            # CPU always starts, so a CPU failure is the model's (bad bytes, IR too new...).
            if first == "cpu" or type(exc).__name__ in _MODEL_ERRORS or "Load model" in str(exc):
                raise ArtifactError(f"{path}: not a loadable ONNX model: {exc}") from None
            if requested != "auto":
                raise DependencyError(
                    f"execution provider {requested!r} failed to start: {exc}. "
                    f"{_INSTALL[requested]}"
                ) from None
            skipped.append(first)
            continue
        running = tuple(sess.get_providers())
        actual = _SHORT.get(running[0], running[0]) if running else "cpu"
        if actual != first:
            if requested != "auto":
                raise DependencyError(
                    f"execution provider {requested!r} is built into onnxruntime but did not "
                    f"start on this machine (the session runs on {', '.join(running)}): "
                    f"{_INSTALL[requested]}"
                )
            # ORT dropped the providers that did not start and kept the next ones.
            order = FALLBACK_ORDER
            skipped += [p for p in order[order.index(first) : order.index(actual)]]
        return GuardSession(
            session=sess,
            provider=actual,
            requested=requested,
            providers=running,
            skipped=tuple(dict.fromkeys(skipped)),
            input_names=tuple(i.name for i in sess.get_inputs()),
            output_names=tuple(o.name for o in sess.get_outputs()),
        )
    raise DependencyError(  # pragma: no cover - CPU always starts
        f"no execution provider could start ({', '.join(skipped)}): {_INSTALL['cpu']}"
    )
