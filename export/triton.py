"""A Triton Inference Server model repository from a guard artifact.

Layout written (ONNX Runtime backend)::

    REPO/
      NAME/
        config.pbtxt      onnxruntime backend, dynamic batching, TensorRT accelerator
        labels.txt        one class name per line (Triton's classification extension)
        1/model.onnx      the chosen variant of the guard artifact

Tokenization stays with the client (the guard artifact's ``tokenizer.json``); the
model takes ``input_ids`` and ``attention_mask`` (INT64, [-1] per item) and returns
``logits`` (FP32, [num_classes]).

The config is checked by parsing it with Triton's own protobuf definitions
(``tritonclient``'s ``model_config_pb2``) before anything is written.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

from guardrail_dro.errors import ArtifactError, ConfigError, DependencyError
from guardrail_dro.outputs import replace_file, replace_text
from guardrail_dro.serve.artifact import GuardArtifact, load_artifact

__all__ = [
    "check_model_name",
    "check_repository",
    "model_config_pb2",
    "parse_config",
    "render_config",
    "write_triton_repository",
]


def model_config_pb2():
    """Triton's ``model_config_pb2`` module from ``tritonclient``.

    Loaded from its file: ``import tritonclient.grpc`` would also pull grpcio, which a
    config check does not need.
    """
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(
            "checking a Triton config needs Triton's protobuf definitions: "
            "pip install --no-deps tritonclient  (its grpc extra pins protobuf<7)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    mod_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", path)
    if mod_spec is None or mod_spec.loader is None or not path.is_file():
        raise DependencyError(f"tritonclient is installed but has no {path}")
    import sys

    cached = sys.modules.get("_triton_model_config_pb2")
    if cached is not None:
        return cached
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    sys.modules["_triton_model_config_pb2"] = module
    return module


def render_config(
    artifact: GuardArtifact,
    *,
    name: str,
    max_batch_size: int = 32,
    max_queue_delay_us: int = 500,
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32),
    tensorrt: bool = True,
    trt_fp16: bool = True,
    kind: str = "KIND_GPU",
    instances: int = 1,
    version: int = 1,
) -> str:
    """The ``config.pbtxt`` text for a guard artifact, serving exactly ``version``: with
    Triton's default policy (the latest version) a higher version folder left by an
    earlier export was served instead of the one just written."""
    m = artifact.manifest
    ids, mask = m.input_names
    preferred = [b for b in preferred_batch_sizes if b <= max_batch_size] or [max_batch_size]
    accel = ""
    if tensorrt and kind == "KIND_GPU":
        precision = "FP16" if trt_fp16 else "FP32"
        accel = f"""
optimization {{
  execution_accelerators {{
    gpu_execution_accelerator : [ {{
      name : "tensorrt"
      parameters {{ key: "precision_mode" value: "{precision}" }}
      parameters {{ key: "max_workspace_size_bytes" value: "1073741824" }}
      parameters {{ key: "trt_engine_cache_enable" value: "1" }}
      parameters {{ key: "trt_engine_cache_path" value: "/tmp/triton_trt_cache/{name}" }}
    }} ]
  }}
}}"""
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
  {{ name: "{ids}" data_type: TYPE_INT64 dims: [ -1 ] }},
  {{ name: "{mask}" data_type: TYPE_INT64 dims: [ -1 ] }}
]
output [
  {{ name: "{m.output_name}" data_type: TYPE_FP32 dims: [ {m.label_schema.num_classes} ]
     label_filename: "labels.txt" }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(str(b) for b in preferred)} ]
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
instance_group [ {{ count: {instances} kind: {kind} }} ]
version_policy: {{ specific: {{ versions: [ {version} ] }} }}
default_model_filename: "model.onnx"{accel}
"""


def parse_config(text: str):
    """Parse config.pbtxt text into Triton's ``inference.ModelConfig``.

    Raises:
        ArtifactError: the text is not a valid ModelConfig (the parser's message).
    """
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(f"config.pbtxt is not a valid Triton ModelConfig: {exc}") from None


_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_model_name(name: str) -> str:
    """``name`` when Triton can serve a model of that name from a folder of that name in
    the repository; checked before anything is exported (``--triton-name``).

    Raises:
        ConfigError: a name with a quote, a slash, a space... (``../x`` would put the
            model outside the repository, ``my"guard`` break config.pbtxt).
    """
    if not _MODEL_NAME.fullmatch(name):
        raise ConfigError(
            f"Triton model name {name!r}: use letters, digits, '_', '.' and '-' (not "
            "first), no slash, quote or space: it names the model's folder in the repository"
        )
    return name


def check_repository(repo_dir: str | Path, guard_dir: str | Path) -> None:
    """Refuse a Triton repository that overlaps the guard artifact; checked before
    anything is exported (``--triton`` beside ``--out``).

    Raises:
        ConfigError: the repository inside the guard directory (its files, unlisted in
            ``guard.json``, made the new guard refuse to load), the guard inside the
            repository (Triton would try to serve it as a model), or the same folder.
    """
    repo, guard = Path(repo_dir).resolve(), Path(guard_dir).resolve()
    if repo == guard or guard in repo.parents or repo in guard.parents:
        raise ConfigError(
            f"--triton {repo_dir} and --out {guard_dir} overlap: the guard artifact "
            "refuses files it does not list, and Triton serves every folder of its "
            "repository as a model; put the repository beside the guard, not in it"
        )


def write_triton_repository(
    guard_dir: str | Path,
    repo_dir: str | Path,
    *,
    name: str = "guardrail",
    variant: str = "fp32",
    version: int = 1,
    max_batch_size: int = 32,
    tensorrt: bool = True,
    trt_fp16: bool = True,
    kind: str = "KIND_GPU",
) -> Path:
    """Write a Triton model repository for a (verified) guard artifact directory.

    Args:
        guard_dir: the guard artifact (``export_onnx``'s output).
        repo_dir: the model repository root (``tritonserver --model-repository``).
        name: the model name in the repository.
        variant: which ONNX file to serve: fp32 (default; TensorRT makes its own fp16
            engine when ``trt_fp16``), fp16, or int8 (CPU instances).
        kind: KIND_GPU or KIND_CPU.
        version: the version folder written; the config serves this version only, so
            a folder of another version (an earlier export) stays on disk unserved.

    Raises:
        ConfigError: a bad name, kind, ``max_batch_size`` or ``version`` (an int >= 1).

    Returns:
        The model's directory, ``repo_dir/name``.
    """
    check_model_name(name)
    if kind not in ("KIND_GPU", "KIND_CPU"):
        raise ConfigError(f"kind must be KIND_GPU or KIND_CPU, not {kind!r}")
    for option, value in (("max_batch_size", max_batch_size), ("version", version)):
        # Triton serves only version folders named by a positive integer without a
        # leading zero: "0", "-1" or "True" were written, and the model never loaded.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be an int >= 1, not {value!r}")
    check_repository(repo_dir, guard_dir)
    artifact = load_artifact(guard_dir)
    src = artifact.model_path(variant)
    text = render_config(
        artifact,
        name=name,
        max_batch_size=max_batch_size,
        tensorrt=tensorrt,
        trt_fp16=trt_fp16,
        kind=kind,
        version=version,
    )
    cfg = parse_config(text)
    if cfg.name != name or cfg.max_batch_size != max_batch_size:
        raise ArtifactError("config.pbtxt did not round-trip through Triton's ModelConfig")
    model_dir = Path(repo_dir) / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    # Each file whole or not at all, the model first and the config last: a Triton that
    # polls the repository (--model-control-mode=poll) read a half-copied model.onnx
    # when it was overwritten in place after the new config.
    replace_file(model_dir / str(version) / "model.onnx", lambda tmp: shutil.copyfile(src, tmp))
    replace_text(model_dir / "labels.txt", "\n".join(artifact.schema.classes) + "\n")
    replace_text(model_dir / "config.pbtxt", text)
    return model_dir
