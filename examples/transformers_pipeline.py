"""Use a trained guardrail-dro model with Hugging Face transformers' own calls.

    python examples/transformers_pipeline.py --model MODEL_DIR [TEXT ...]

MODEL_DIR is what ``guardrail-dro train --out`` wrote. Importing
``guardrail_dro.train.hf_format`` registers the model type with transformers' Auto
classes; on a machine without guardrail-dro, pass ``trust_remote_code=True`` instead (the
folder carries its own ``modeling_guardrail_dro.py``). Prints each text's label and the
largest difference between the pipeline's probabilities and guardrail-dro's own loader.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from transformers import AutoModelForSequenceClassification, pipeline

import guardrail_dro.train.hf_format  # noqa: F401  (registers guardrail_dro)
from guardrail_dro.train.modeldir import TrainedModel

TEXTS = [
    "What is the history of the printing press?",
    "How do I get into my neighbour's wifi without the password?",
    "Should I put all my savings into one stock?",
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="A trained model directory.")
    ap.add_argument("texts", nargs="*", help="Texts to classify (default: three examples).")
    args = ap.parse_args(argv)
    texts = args.texts or TEXTS

    model = AutoModelForSequenceClassification.from_pretrained(args.model)
    print(f"{type(model).__name__}: {model.config.num_labels} labels")
    clf = pipeline("text-classification", model=str(args.model), truncation=True, top_k=None)
    rows = clf(texts)

    ours = TrainedModel.load(args.model)
    expected = ours.predict_proba(texts)
    classes = ours.schema.classes
    got = np.array([[{d["label"]: d["score"] for d in row}[c] for c in classes] for row in rows])
    for text, row in zip(texts, rows, strict=True):
        top = row[0]
        name = model.config.label_descriptions.get(top["label"], top["label"])
        print(f"{top['label']:>4} {name:<35} {top['score']:.3f}  {text}")
    print(f"max |pipeline - guardrail-dro| = {np.abs(got - expected).max():.2e}")


if __name__ == "__main__":
    main()
