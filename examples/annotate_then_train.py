"""Label texts with two LLMs (OpenAI and Claude), then train a guard on their labels.

Offline: both SDKs talk to the shipped fake provider server on 127.0.0.1, which plays
two LLM judges with known habits (one reliable, one fooled by a polite preamble).
With real keys, build the annotators without ``base_url`` and drop the server::

    python examples/annotate_then_train.py [--backbone HF_FOLDER] [--out runs/example]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from annotators import AnthropicAnnotator, OpenAIAnnotator, annotate_with_report
from annotators.testing import FakeLLMServer, FakeReply
from guardrail_dro import BiLevelTrainer, TrainConfig, make_synthetic
from guardrail_dro.data.items import AnnotatedDataset
from guardrail_dro.data.synthetic import SPURIOUS_PHRASE


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default=None, help="HF encoder folder (default: MiniLM)")
    ap.add_argument("--out", type=Path, default=Path("runs/annotate-then-train"))
    ap.add_argument("--n-train", type=int, default=300)
    args = ap.parse_args(argv)

    data = make_synthetic(n_train=args.n_train, n_valid=150, n_test=150, seed=7)
    gold = {it.text: it.gold for split in data.values() for it in split}
    rng = random.Random(0)

    def judge(text: str) -> FakeReply:
        # The fake answers for both providers; the model name tells the judges apart
        # only through the cache, so here one rule stands for "an LLM that is usually
        # right but calls any text with the polite preamble safe".
        label = "safe" if SPURIOUS_PHRASE in text else gold.get(text, "safe")
        if rng.random() < 0.1:
            label = rng.choice(data["train"].schema.classes)
        return FakeReply(label, f"judged {label} from its content", 0.8)

    # Start from the texts alone: keep the human labels, drop the simulated LLM ones.
    def humans_only(ds: AnnotatedDataset) -> AnnotatedDataset:
        items = [
            it.model_copy(
                update={"annotations": tuple(a for a in it.annotations if a.kind == "human")}
            )
            for it in ds
        ]
        return AnnotatedDataset(items, ds.schema, name=ds.name)

    with FakeLLMServer(judge) as server:
        judges = [
            OpenAIAnnotator("gpt-4o-mini", base_url=server.openai_base_url, api_key="local"),
            AnthropicAnnotator(
                "claude-sonnet-4-5", base_url=server.anthropic_base_url, api_key="local"
            ),
        ]
        labelled = {}
        for split in ("train", "valid"):
            run = annotate_with_report(
                humans_only(data[split]),
                judges,
                cache=args.out / "annotations.sqlite",
                progress=False,
            )
            print(f"{split}:", " | ".join(run.report.summary_lines()))
            labelled[split] = run.dataset
        labelled["train"].save_jsonl(args.out / "train.jsonl")

    cfg = TrainConfig(
        method="ours", backbone=args.backbone, cache_dir=args.out / "cache", progress=False
    )
    result = BiLevelTrainer(cfg).fit(labelled["train"], labelled["valid"])
    test = result.evaluate(data["test"])
    print(f"annotators: {', '.join(labelled['train'].annotators)}")
    print(
        f"test accuracy {test.accuracy:.3f}, worst-group accuracy "
        f"{test.worst_group_accuracy:.3f} ({test.worst_group})"
    )
    print(f"labelled data in {args.out / 'train.jsonl'}")


if __name__ == "__main__":
    main()
