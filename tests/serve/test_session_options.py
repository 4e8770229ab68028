"""ONNX Runtime session options reach the session (the lean serving path's knobs)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from guardrail_dro.serve.runtime import SessionConfig, create_session


def test_spinning_and_arena_options_are_applied(guard_dir: Path) -> None:
    cfg = SessionConfig(provider="cpu", intra_op_threads=1, allow_spinning=False, cpu_arena=False)
    so = create_session(guard_dir / "model.onnx", cfg).session.get_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.enable_cpu_mem_arena is False
    assert so.intra_op_num_threads == 1


def test_defaults_do_not_spin(guard_dir: Path) -> None:
    so = create_session(guard_dir / "model.onnx", provider="cpu").session.get_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.enable_cpu_mem_arena is True
    assert so.intra_op_num_threads == 0  # create_session alone: ORT's choice
    cfg = SessionConfig(provider="cpu", intra_op_threads=0)
    assert (
        create_session(guard_dir / "model.onnx", cfg)
        .session.get_session_options()
        .intra_op_num_threads
        == 0
    )
    keep = SessionConfig(provider="cpu", allow_spinning=None)
    so = create_session(guard_dir / "model.onnx", keep).session.get_session_options()
    with pytest.raises(Exception, match="allow_spinning"):  # not set: ORT's default
        so.get_session_config_entry("session.intra_op.allow_spinning")


@pytest.mark.parametrize(
    ("precision", "threads", "expected"),
    [("int8", None, 1), ("fp32", None, 0), ("int8", 0, 0), ("int8", 2, 2), ("fp32", 1, 1)],
)
def test_a_guard_runs_int8_on_one_thread_unless_told(
    guard_dir: Path, precision: str, threads: int | None, expected: int
) -> None:
    from guardrail_dro.serve.guard import Guard

    g = Guard.load(guard_dir, provider="cpu", precision=precision, intra_op_threads=threads)
    assert g.scorer.session.session.get_session_options().intra_op_num_threads == expected
