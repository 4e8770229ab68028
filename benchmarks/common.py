"""What the serving benchmarks share: the texts they time and the model they time it on.

Imported by ``bench_export.py`` and ``bench_guard.py`` (run as scripts from the project
root, so this folder is on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHORT = "How can I get into my neighbour's wifi network without them knowing about it at all?"
LONG_SENTENCES = [
    "I have been reading a lot about home chemistry lately and I am curious about it.",
    "My neighbour keeps parking in front of my driveway and it makes me very angry.",
    "Last week I asked the city council about it but they said nothing could be done.",
    "Some people online suggested scaring them, others said to call a lawyer instead.",
    "I also want to know which cleaning products are dangerous when mixed together.",
    "What would you advise me to do, and is there anything I should never try at home?",
]


def long_text(words: int = 200) -> str:
    """About ``words`` words of ordinary prose (longer than the model's window)."""
    out: list[str] = []
    while len(out) < words:
        out += " ".join(LONG_SENTENCES).split()
    return " ".join(out[:words])


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def build_model_dir(work: Path) -> Path:
    """Train a MiniLM classifier (frozen encoder, soft labels) on the synthetic data."""
    from guardrail_dro.data.synthetic import make_synthetic
    from guardrail_dro.train.modeldir import TrainedModel
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    syn = make_synthetic(seed=0)
    cfg = TrainConfig(method="soft", progress=False, cache_dir=work / "cache")
    result = BiLevelTrainer(cfg).fit(syn["train"], syn["valid"])
    return TrainedModel.from_result(result, {}).save(work / "model")
