"""Shared fixtures: a tiny random encoder (built from a config, never downloaded) and
the synthetic dataset, each built once per session."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # One math thread per test worker (and per CLI subprocess it starts, through the
    # environment): ``make test`` runs a worker per core, and torch's default of a thread
    # per core then puts two spinning OpenMP pools on each core. Measured on the 2-core
    # machine: a full-mode test run twice side by side took 129 s each with the default
    # and 37 s with OMP_NUM_THREADS=1 (27 s alone). A test that sets its own threads
    # still does; one that runs alone (no xdist) keeps torch's default.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOXIC_QUESTIONS = SHARED / "datasets" / "toxic-questions"


def load_script(path: Path) -> ModuleType:
    """Import a script of ``benchmarks/`` or ``examples/`` (not a package) by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_configure(config: pytest.Config) -> None:
    """Torch may already be imported (by a plugin) before the variables above are read:
    set its pool to match them."""
    import sys

    if "torch" in sys.modules and os.environ.get("OMP_NUM_THREADS") == "1":
        sys.modules["torch"].set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (a stable sort: the rest keep their order). Under pytest-xdist
    (``make test``: ``--dist loadfile``) a file goes to one worker in this order, so the
    longest files start first and the workers finish together instead of one of them
    starting a minute-long file at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide BERT with random weights and the MiniLM tokenizer, saved as a
    Hugging Face folder. Fast enough for unit tests; meaningless as a language model."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from guardrail_dro.train.model import default_backbone

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def synthetic():
    from guardrail_dro.data.synthetic import make_synthetic

    return make_synthetic(seed=0)


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_backbone: Path, synthetic, tmp_path_factory) -> Path:
    """A trained model directory (method ours, tiny backbone, frozen) on synthetic data.

    Its toxic score is the class head's 1 - P(safe) (``toxic_score="class-head"``): on
    this random 64-wide encoder a binary head squeezes the scores together, which the
    int8 gate and the examples' thresholds cannot work with; tests/train/test_toxic_score.py
    exports and serves a model with a binary head on its own."""
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    cfg = TrainConfig(
        method="ours",
        backbone=str(tiny_backbone),
        epochs=3,
        progress=False,
        cache_dir=tmp_path_factory.mktemp("cache"),
        toxic_score="class-head",
    )
    result = BiLevelTrainer(cfg).fit(synthetic["train"], synthetic["valid"])
    out = tmp_path_factory.mktemp("model")
    TrainedModel.from_result(result, {"train": "x", "valid": "y"}).save(out)
    return out


@pytest.fixture()
def live_pid() -> Iterator[int]:
    """The pid of a process running on this host for the test's length (leftover
    sweeps must leave what it may be writing)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()
