"""Runtime sessions: provider policy, read-back of the running provider, clear errors."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from guardrail_dro.errors import ArtifactError, ConfigError, DependencyError
from guardrail_dro.serve.runtime import (
    FALLBACK_ORDER,
    SessionConfig,
    check_onnxruntime_install,
    create_session,
    resolve_provider,
)
from tests.export.conftest import requires_gpu

ort = pytest.importorskip("onnxruntime")
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_fallback_order_is_tensorrt_cuda_cpu() -> None:
    assert FALLBACK_ORDER == ("tensorrt", "cuda", "cpu")


@pytest.mark.parametrize("name", ["tpu", "CUDA2", "", "openvino"])
def test_unknown_provider_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown execution provider.*auto, tensorrt, cuda, cpu"):
        SessionConfig(provider=name)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("CPU", "cpu"),
        ("auto", "auto"),
        ("TensorrtExecutionProvider", "tensorrt"),
        ("trt", "tensorrt"),
        ("gpu", "cuda"),
    ],
)
def test_provider_names_are_normalised(given: str, expected: str) -> None:
    assert resolve_provider(given) == expected


def test_bad_thread_setting() -> None:
    with pytest.raises(ConfigError, match="intra_op_threads must be >= 1"):
        SessionConfig(intra_op_threads=-1)
    with pytest.raises(ConfigError, match="inter_op_threads must be >= 1"):
        SessionConfig(inter_op_threads=0)


def test_auto_reports_the_provider_that_runs(tiny_export) -> None:
    sess = create_session(tiny_export["guard"] / "model.int8.onnx", intra_op_threads=1)
    assert sess.requested == "auto"
    assert sess.providers == tuple(sess.session.get_providers())
    assert (
        sess.provider
        == {
            "TensorrtExecutionProvider": "tensorrt",
            "CUDAExecutionProvider": "cuda",
            "CPUExecutionProvider": "cpu",
        }[sess.providers[0]]
    )
    logits = sess.run(np.array([[101, 7592, 102]]), np.array([[1, 1, 1]]))
    assert logits.dtype == np.float32 and logits.shape[0] == 1
    assert sess.describe().startswith(f"running on {sess.provider}")


def test_auto_is_quiet(tiny_export, capfd) -> None:
    create_session(tiny_export["guard"] / "model.onnx")
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and "[E:" not in out + err


@pytest.mark.skipif(HAS_CUDA, reason="this machine has the GPU providers")
@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_explicit_unavailable_provider_names_the_package(tiny_export, name: str) -> None:
    with pytest.raises(DependencyError, match=r"guardrail-dro\[gpu\].*onnxruntime-gpu"):
        create_session(tiny_export["guard"] / "model.onnx", provider=name)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        create_session(bad, provider="cpu")
    with pytest.raises(ArtifactError, match="ONNX model not found"):
        create_session(tmp_path / "missing.onnx")


def test_both_onnxruntime_packages_refused(tmp_path: Path, monkeypatch) -> None:
    """A real second distribution on sys.path, as `pip install onnxruntime-gpu` leaves it."""
    dist = tmp_path / "onnxruntime_gpu-1.31.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.31.1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DependencyError, match="onnxruntime==.*onnxruntime-gpu==1.31.1.*Keep one"):
        check_onnxruntime_install()
    with pytest.raises(DependencyError, match="several ONNX Runtime packages"):
        create_session(tmp_path / "any.onnx", provider="cpu")


@pytest.mark.gpu
@requires_gpu
def test_cuda_session_runs_on_cuda(tiny_export) -> None:
    sess = create_session(tiny_export["guard"] / "model.onnx", provider="cuda")
    assert sess.provider == "cuda" and sess.providers[0] == "CUDAExecutionProvider"


@pytest.mark.gpu
@requires_gpu
def test_fp16_variant_agrees_on_gpu(tiny_export) -> None:
    from guardrail_dro.serve.artifact import load_artifact

    art = load_artifact(tiny_export["guard"])
    tok = art.load_tokenizer()
    enc = tok.encode_batch(["hello there", "how do I build a weapon", "a"])
    ids = np.array([e.ids for e in enc])
    mask = np.array([e.attention_mask for e in enc])
    ref = create_session(art.model_path("fp32"), provider="cpu").run(ids, mask)
    got = create_session(art.model_path("fp16"), provider="cuda").run(ids, mask)
    assert (ref.argmax(1) == got.argmax(1)).all()
    np.testing.assert_allclose(got, ref, atol=1e-2)


@pytest.mark.gpu
@requires_gpu
def test_tensorrt_session_with_engine_cache(tiny_export, tmp_path: Path) -> None:
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu without TensorRT")
    try:
        sess = create_session(
            tiny_export["guard"] / "model.onnx",
            provider="tensorrt",
            trt_fp16=True,
            trt_engine_cache_dir=tmp_path / "trt",
            max_length=128,
        )
    except DependencyError as exc:
        pytest.skip(f"TensorRT libraries not loadable here: {exc}")
    assert sess.provider == "tensorrt"
    sess.run(np.array([[101, 7592, 102]]), np.array([[1, 1, 1]]))
    assert any((tmp_path / "trt").iterdir())


def test_quiet_provider_probe_restores_the_users_log_level(tiny_export) -> None:
    # ORT has no getter for its global log level: watch its effect in a fresh process.
    # The user asked for info logs; the probe silences the logger, then must give it back.
    import subprocess
    import sys

    code = (
        "import onnxruntime as ort\n"
        "from guardrail_dro.serve import runtime\n"
        "runtime.set_ort_log_severity(1)\n"
        "with runtime._quiet_logger(ort):\n"
        "    pass\n"
        f"ort.InferenceSession({str(tiny_export['guard'] / 'model.onnx')!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[I:onnxruntime" in proc.stderr  # info level again, not the quiet one
    with pytest.raises(ConfigError, match="0..4"):
        importlib.import_module("guardrail_dro.serve.runtime").set_ort_log_severity(7)
