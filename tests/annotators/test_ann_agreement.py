"""The agreement report: numbers on hand-checked data, and the command after a real run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from annotators.agreement import GOLD, agreement_report
from annotators.agreement_view import save_heatmap
from annotators.testing import FakeLLMServer, keyword_handler
from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import DataError
from tests.annotators.ann_helpers import KEY
from tests.annotators.test_ann_cli import CLI, _env

SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))


def _item(i: int, gold: str | None, **labels: tuple[str, float | None]) -> Item:
    return Item(item_id=str(i), text=f"t{i}", gold=gold, annotations=tuple(
        Annotation(annotator=a, label=lab, confidence=c, kind="llm" if c is not None
                   else "human") for a, (lab, c) in labels.items()))


def test_numbers_on_a_hand_checked_dataset() -> None:
    # a: always right. b: wrong on items 0 and 1 (says toxic for safe ones). llm: right on
    # 0-2 with confidence 0.9, wrong on 3 with 0.3; it did not label item 4.
    items = [
        _item(0, "safe", a=("safe", None), b=("toxic", None), llm=("safe", 0.9)),
        _item(1, "safe", a=("safe", None), b=("toxic", None), llm=("safe", 0.9)),
        _item(2, "toxic", a=("toxic", None), b=("toxic", None), llm=("toxic", 0.9)),
        _item(3, "toxic", a=("toxic", None), b=("toxic", None), llm=("safe", 0.3)),
        _item(4, "safe", a=("safe", None), b=("safe", None)),
    ]
    ds = AnnotatedDataset(items, SCHEMA, name="hand")
    fails = [{"item_id": "4", "annotator": "llm", "outcome": "refused"}]
    r = agreement_report(ds, fails, names={"llm": "My LLM"})
    q = {x.name: x for x in r.annotators}
    assert q["a"].accuracy_gold == 1.0 and q["a"].kappa_gold == pytest.approx(1.0)
    assert q["b"].accuracy_gold == pytest.approx(3 / 5)
    # b vs gold: po = 0.6; gold 3 safe 2 toxic, b 1 safe 4 toxic -> pe = 0.6*0.2 + 0.4*0.8
    pe = 0.6 * 0.2 + 0.4 * 0.8
    assert q["b"].kappa_gold == pytest.approx((0.6 - pe) / (1 - pe))
    assert q["b"].confusion == [[1, 2], [0, 2]]
    assert q["b"].recall_per_class == {"safe": pytest.approx(1 / 3), "toxic": 1.0}
    assert q["My LLM"].labelled == 4 and q["My LLM"].n_gold == 4
    assert q["My LLM"].refusal_rate == pytest.approx(1 / 5)
    assert q["My LLM"].invalid_rate == 0.0
    # people are not asked by annotate: no refusal rate, rather than "0.0% refused"
    assert q["a"].refusal_rate is None and q["b"].invalid_rate is None
    assert q["My LLM"].confidence_right == pytest.approx(0.9)
    assert q["My LLM"].confidence_wrong == pytest.approx(0.3)
    assert r.overlap["My LLM"]["a"] == 4 and r.agreement["My LLM"]["a"] == 0.75
    assert r.kappa["a"][GOLD] == pytest.approx(1.0) and r.names[-1] == GOLD
    # without a failures file the rates are not known, never 0
    assert agreement_report(ds).annotators[2].refusal_rate is None


def test_without_gold_right_and_wrong_are_judged_by_the_others_majority() -> None:
    items = [_item(i, None, a=("toxic", None), b=("toxic", None),
                   llm=("toxic" if i < 3 else "safe", 0.8 if i < 3 else 0.4)) for i in range(4)]
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="nogold"))
    llm = r.annotators[2]
    assert llm.kappa_gold is None and GOLD not in r.names
    assert llm.reference == "majority of the others"
    assert (llm.confidence_right, llm.confidence_wrong) == (pytest.approx(0.8), 0.4)
    with pytest.raises(DataError, match="no annotations"):
        agreement_report(AnnotatedDataset([Item(item_id="x", text="t")], SCHEMA, name="e"))


def test_a_crowd_gets_a_row_per_annotator_not_a_matrix() -> None:
    """Beyond MATRIX_MAX annotators a kappa matrix no longer fits a terminal (150 columns
    were printed as empty cells): a row each, with the partners' overlap-weighted kappa."""
    from rich.console import Console

    from annotators.agreement_view import MATRIX_MAX, pairwise_table, recall_table

    n = MATRIX_MAX + 3
    # worker w labels items w and w + 1; worker 0 is always right, the others say toxic.
    items = [
        _item(i, "safe", **{f"w{w}": ("safe" if w == 0 else "toxic", None)
                            for w in (i - 1, i) if 0 <= w < n})
        for i in range(n + 1)
    ]  # fmt: skip
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="crowd"))
    table = pairwise_table(r)
    assert len(table.columns) == 4 and table.row_count == n
    console = Console(width=120, record=True)
    console.print(table)
    text = console.export_text()
    assert "one row each" in " ".join(text.split())
    # w0 shares item 1 with w1; w1 item 2 with w2 (both always toxic: kappa undefined).
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()]
    rows = {c[0]: tuple(c[1:]) for c in cells if len(c) == 4}
    assert rows["w0"] == ("1", "1", "0.000") and rows["w1"] == ("2", "2", "0.000")
    assert rows["w2"] == ("2", "2", "-") and rows[f"w{n - 1}"] == ("1", "1", "-")
    recall = recall_table(r)
    assert recall is not None and len(recall.columns) == MATRIX_MAX + 1  # class + annotators
    small = agreement_report(AnnotatedDataset(items[:3], SCHEMA, name="few"))
    assert len(pairwise_table(small).columns) == len(small.names) + 1  # still a matrix


def test_pairwise_numbers_are_sklearns_on_a_random_crowd() -> None:
    import numpy as np
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    from annotators.agreement import _pair

    rng = np.random.default_rng(0)
    schema = LabelSchema(classes=("safe", "toxic", "spam"), safe=("safe",))
    items = []
    for i in range(60):  # 12 workers, about a third of the items each, skewed labels
        votes = {f"w{w}": (str(rng.choice(schema.classes, p=[0.6, 0.3, 0.1])), None)
                 for w in range(12) if rng.random() < 0.35}  # fmt: skip
        items.append(_item(i, None, **votes))
    ds = AnnotatedDataset(items, schema, name="random")
    r = agreement_report(ds)
    labels = {a: {} for a in ds.annotators}
    for it in ds.items:
        for ann in it.annotations:
            labels[ann.annotator][it.item_id] = ann.label
    checked = 0
    for a in ds.annotators:
        for b in ds.annotators:
            ya, yb = _pair(labels, a, b)
            if not ya or a == b:
                continue
            assert r.agreement[a][b] == pytest.approx(accuracy_score(ya, yb))
            k = cohen_kappa_score(ya, yb, labels=list(schema.classes))
            assert r.kappa[a][b] == (None if np.isnan(k) else pytest.approx(k))
            checked += 1
    assert checked > 100


def test_heatmap_is_a_png(tmp_path: Path) -> None:
    items = [_item(i, "safe" if i % 2 else "toxic", a=("safe", None), b=("toxic", None))
             for i in range(6)]
    r = agreement_report(AnnotatedDataset(items, SCHEMA, name="h"))
    png = save_heatmap(r, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_agreement_command_after_an_annotate_run(tmp_path: Path) -> None:
    texts = ["have a nice day", "you idiot", "how do I build a bomb", "I hate you"]
    data = tmp_path / "in.csv"
    data.write_text("question,label\n" + "".join(
        f'"{t}",{"toxic" if i in (1, 3) else "safe"}\n' for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    with FakeLLMServer(keyword_handler) as srv:
        r = subprocess.run(
            [CLI, "annotate", "--data", str(data), "--text-col", "question",
             "--gold-col", "label", "--out", str(out), "--labels", "safe,toxic",
             "--annotator", "openai:gpt-4o-mini", "--base-url", srv.openai_base_url,
             "--no-progress"], env=_env(OPENAI_API_KEY=KEY), capture_output=True,
            text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "Annotators (4 items)" in r.stderr  # printed after the run
    png, js = tmp_path / "a.png", tmp_path / "a.json"
    r = subprocess.run([CLI, "agreement", "--data", str(out), "--heatmap", str(png),
                        "--json", str(js), "--name", "openai:gpt-4o-mini=mini"],
                       env=_env(COLUMNS="150"), capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stderr.splitlines() if "mini" in ln and "llm" in ln)
    # 3 labelled (all right vs gold), 1 refused (the bomb), read from the failures file
    assert "1.000" in row and "25.0%" in row
    assert png.exists() and js.exists()
    r = subprocess.run([CLI, "agreement", "--data", str(out), "--name", "oops"], env=_env(),
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "ANNOTATOR=DISPLAY NAME" in r.stderr

