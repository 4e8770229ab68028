"""The quickstart resumes from its caches: no second LLM call, no second embedding."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from guardrail_dro.data.synthetic import make_synthetic

pytest.importorskip("openai")


def test_annotation_pass_replays_the_hidden_llm_and_resumes_from_cache(tmp_path: Path) -> None:
    from guardrail_dro.cli.annotation_pass import annotation_pass
    from guardrail_dro.cli.quickstart import REPLAYED

    data = make_synthetic(n_train=40, n_valid=20, n_test=10, seed=1)
    out = io.StringIO()
    console = Console(file=out, width=200)
    first = annotation_pass(data, tmp_path, live=False, specs=(), console=console, replay=REPLAYED)
    assert "train: 40 call(s) made, 0 answer(s) from the cache" in out.getvalue()
    name = next(a for a in first["train"].annotators if a.startswith("openai:"))
    for before, after in zip(data["train"], first["train"], strict=True):
        replayed = next(a for a in after.annotations if a.annotator == name)
        assert replayed.label == before.label_of(REPLAYED)
        assert replayed.kind == "llm" and replayed.rationale
        assert REPLAYED not in {a.annotator for a in after.annotations}

    out.truncate(0)
    again = annotation_pass(data, tmp_path, live=False, specs=(), console=console, replay=REPLAYED)
    assert "train: 0 call(s) made, 40 answer(s) from the cache" in out.getvalue()
    assert "valid: 0 call(s) made, 20 answer(s) from the cache" in out.getvalue()
    assert [it.annotations for it in again["train"]] == [it.annotations for it in first["train"]]


def test_the_batch_replay_returns_the_same_labels_and_resumes(tmp_path: Path) -> None:
    # What the real-data quickstart uses: one Batch API upload per split, not a call per text.
    from guardrail_dro.cli.annotation_pass import annotation_pass
    from guardrail_dro.cli.quickstart import REPLAYED

    data = {"train": make_synthetic(n_train=30, n_valid=10, n_test=10, seed=2)["train"]}
    out = io.StringIO()
    console = Console(file=out, width=200)
    first = annotation_pass(
        data, tmp_path, live=False, specs=(), console=console, replay=REPLAYED, batch=True
    )
    assert "train: 30 call(s) made, 0 answer(s) from the cache" in out.getvalue()
    name = next(a for a in first["train"].annotators if a.startswith("openai:"))
    for before, after in zip(data["train"], first["train"], strict=True):
        assert after.label_of(name) == before.label_of(REPLAYED)
    out.truncate(0)
    annotation_pass(
        data, tmp_path, live=False, specs=(), console=console, replay=REPLAYED, batch=True
    )
    assert "train: 0 call(s) made, 30 answer(s) from the cache" in out.getvalue()


def test_the_escalation_stage_says_why_it_is_skipped(tmp_path: Path) -> None:
    from guardrail_dro.cli.quick_escalation import escalation_step

    data = make_synthetic(n_train=10, n_valid=10, n_test=10, seed=3)
    out = io.StringIO()
    console = Console(file=out, width=300)
    assert escalation_step(tmp_path / "g", data, [], "", False, tmp_path, console) is None
    assert "skipped: no LLM annotator's labels" in out.getvalue() and "COLUMN" in out.getvalue()
    live = escalation_step(tmp_path / "g", data, ["openai:m"], "", True, tmp_path, console)
    assert live is None and "skipped: --live" in out.getvalue()
    assert "would be paid" in out.getvalue() and "--judge openai:m" in out.getvalue()


def test_embeddings_are_not_computed_twice(tiny_backbone: Path, tmp_path: Path) -> None:
    from guardrail_dro.train.embeddings import EmbeddingCache, embed_texts
    from guardrail_dro.train.model import GuardClassifier, load_backbone

    tok, enc = load_backbone(tiny_backbone)
    model = GuardClassifier(enc, None, normalize=True)  # type: ignore[arg-type]
    texts = [f"text number {i}" for i in range(30)]
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    first = embed_texts(model, tok, texts, namespace="ns", cache=cache, progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder ran although every text was cached")

    model.embed = refuse  # type: ignore[method-assign]
    second = embed_texts(model, tok, texts, namespace="ns", cache=cache, progress=False)
    assert (first == second).all()


@pytest.mark.slow
def test_quickstart_end_to_end_then_resumes(tiny_backbone: Path, tmp_path: Path) -> None:
    """The main job as a function: all five stages, then again from the caches."""
    pytest.importorskip("onnxruntime")
    from guardrail_dro.cli.quickstart import CHAT_TURNS, REPLAYED, run_quickstart
    from guardrail_dro.serve.calibration import binary_metrics
    from guardrail_dro.serve.escalation import EscalationBand, band_predictions, judge_verdicts
    from guardrail_dro.serve.guard import Guard

    out = io.StringIO()
    console = Console(file=out, width=200)
    kw = dict(backbone=str(tiny_backbone), sizes=(120, 60, 40), console=console, synthetic=True)
    first = run_quickstart(tmp_path, seeds=2, **kw)
    text = out.getvalue()
    assert "train: 120 call(s) made" in text
    assert "shipping ours: the average of its 2 seeds' heads" in text
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert [s["seed"] for s in manifest["averaged_seeds"]] == [0, 1]
    assert set(first["report"].results) >= {"ours", "mv", "soft", "ds"}
    assert (first["guard_dir"] / "model.int8.onnx").is_file()
    assert len(first["results"]) == len(CHAT_TURNS)
    assert all(r.latency_ms > 0 and not r.degraded for *_, r in first["results"])
    assert first["background"] is None  # the synthetic demonstration trains without
    assert first["output_guard_dir"] is None  # and has no replies' guard by default
    assert "benign turns allowed" in text and "should be" in text
    for name in ("group_accuracy.png", "results.json", "paired_differences.png"):
        assert (tmp_path / "report" / name).is_file()
    assert "mv" in first["report"].paired and "interval [" in text
    # the escalation stage: the cascade's test decisions are the band's, the replayed
    # judge's recorded labels deciding inside it, and only those texts cost a call
    esc = first["escalation"]
    band = EscalationBand.load(tmp_path / "escalation-band.json")
    assert band == esc["band"] and band.judge.startswith("openai:")
    test = make_synthetic(n_train=120, n_valid=60, n_test=40, seed=0)["test"]
    verdict = judge_verdicts(test, REPLAYED) == 1
    safe = np.asarray(test.schema.safe_mask(), dtype=bool)
    truth = (~safe[test.gold_array()], test.group_array(), list(test.groups))
    blocked, deferred = band_predictions(esc["scores"], verdict, band.low, band.high)
    assert (esc["blocked"] == blocked).all()
    assert esc["judge_calls"] == deferred.sum() and esc["sent"] == deferred.mean()
    assert esc["degraded"] == 0 and "guard + judge" in text and "judge call(s)" in text
    assert esc["cascade"] == binary_metrics(blocked, *truth)
    guard = Guard.load(first["guard_dir"])
    shipped = [r.violation for r in guard.decide_many(test.texts)]
    assert esc["shipped"] == binary_metrics(np.array(shipped), *truth)
    alone = esc["alone_band"]
    assert alone.low == alone.high and alone.max_defer == 0  # the guard alone, chosen on valid
    assert esc["guard_alone"] == binary_metrics(esc["scores"] >= alone.high, *truth)

    out.truncate(0)
    out.seek(0)
    again = run_quickstart(tmp_path, seeds=2, output_guard=True, **kw)  # a guard per rail
    text = out.getvalue()
    assert "train: 0 call(s) made, 120 answer(s) from the cache" in text
    assert "training ours again" not in text  # the bench trains every seed, every time
    assert (again["output_guard_dir"] / "guard.json").is_file()
    assert "assistant (output guard)" in text and "the average of 2 seeds" in text
    output = json.loads((tmp_path / "output-model" / "manifest.json").read_text())
    assert [s["seed"] for s in output["averaged_seeds"]] == [0, 1]
    assert "assistant-replies" in json.dumps(output) and "harmful-replies" in json.dumps(output)


def test_quickstart_reads_a_bundled_dataset_by_name() -> None:
    from guardrail_dro.cli.quickstart import _read_real
    from guardrail_dro.errors import DataError

    splits = _read_real(Path("toxic-questions"), None)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [6941, 1000, 1710]
    assert splits["test"].schema.safe == ("14",)
    with pytest.raises(DataError, match=r"bundled dataset \(toxic-questions\)"):
        _read_real(Path("no-such-folder"), None)


def test_the_default_is_the_real_dataset_with_background_and_replayed_gpt4_turbo() -> None:
    """What `make quickstart` runs, read from the command's own defaults."""
    import inspect

    from guardrail_dro.cli.quick_recipe import BACKGROUND
    from guardrail_dro.cli.quickstart import (
        CHAT_TURNS,
        REPLAYED_REAL,
        quickstart,
        run_quickstart,
    )
    from guardrail_dro.data.background import load_background
    from guardrail_dro.data.bundled import BUNDLED

    params = inspect.signature(run_quickstart).parameters
    assert params["data"].default is None and params["synthetic"].default is False
    assert inspect.signature(quickstart).parameters["synthetic"].default is False
    assert BUNDLED["toxic-questions"].annotators[REPLAYED_REAL] == ("GPT-4 Turbo", "gpt-4-turbo")
    assert load_background(BACKGROUND)  # the bundled background loads
    assert {benign for *_, benign in CHAT_TURNS} == {True, False}


def test_synthetic_and_data_exclude_each_other(tmp_path: Path) -> None:
    from guardrail_dro.cli.quickstart import run_quickstart
    from guardrail_dro.errors import DataError

    with pytest.raises(DataError, match="--synthetic and --data"):
        run_quickstart(tmp_path, synthetic=True, data="toxic-questions")


def test_the_real_data_quickstart_trains_a_hidden_layer_head(tmp_path: Path) -> None:
    """On real data every method of the quickstart gets the head chosen for ordinary
    chat (a hidden layer, README "Ordinary chat") and the recorded background setting;
    the synthetic demonstration keeps the trainer's defaults."""
    from guardrail_dro.cli.quick_recipe import (
        BACKGROUND,
        BACKGROUND_SETTING,
        QUICK_EPOCHS,
        QUICK_HEAD_HIDDEN,
        quick_config,
    )

    real = quick_config(
        tmp_path, synthetic=False, backbone=None, background=BACKGROUND, choose=False
    )
    assert QUICK_HEAD_HIDDEN > 0 and real.head_hidden == QUICK_HEAD_HIDDEN
    assert (real.background_weight, real.background_fraction) == BACKGROUND_SETTING
    assert real.epochs == QUICK_EPOCHS and real.background_safe == list(BACKGROUND)
    chosen = quick_config(
        tmp_path, synthetic=False, backbone=None, background=BACKGROUND, choose=True
    )
    assert chosen.background_weight is None and chosen.background_fraction is None
    syn = quick_config(tmp_path, synthetic=True, backbone=None, background=(), choose=False)
    assert (syn.head_hidden, syn.epochs, syn.background_weight) == (0, None, None)


def test_the_real_data_quickstart_trains_harmful_text_beside_the_safe(tmp_path: Path) -> None:
    """Real data: harmful-requests as 'not safe' at the recorded weight, by default and
    only beside safe text; the synthetic set and --no-background train neither."""
    from guardrail_dro.cli.quick_recipe import (
        BACKGROUND,
        HARMFUL,
        HARMFUL_WEIGHT,
        background_sources,
        quick_config,
    )

    assert background_sources(False, None, None) == (list(BACKGROUND), list(HARMFUL))
    assert background_sources(True, None, None) == ([], [])
    assert background_sources(False, (), None) == ([], [])  # --no-background
    assert background_sources(False, None, ()) == (list(BACKGROUND), [])  # --no-harmful
    bg, bad = background_sources(False, None, None)
    cfg = quick_config(
        tmp_path, synthetic=False, backbone=None, background=bg, choose=False, harmful=bad
    )
    assert cfg.background_harmful == list(HARMFUL) and cfg.harmful_weight == HARMFUL_WEIGHT


def test_the_guard_ships_the_average_of_the_seeds_of_ours(
    tiny_backbone: Path, synthetic, tmp_path: Path
) -> None:
    """The quickstart ships one head, the average of the bench's seeds of ours, printing
    every seed's valid score beside the average's; one seed ships as it is, silently.
    A seed missing from the bench's fits is trained as the bench trains it: the same
    average."""
    from guardrail_dro.cli.quick_guards import ship_average
    from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig

    cfg = TrainConfig(backbone=str(tiny_backbone), epochs=2, cache_dir=tmp_path, progress=False)
    train, _ = synthetic["train"].without_overlap(synthetic["test"])
    runs = {
        seed: BiLevelTrainer(cfg.model_copy(update={"seed": seed})).fit(train, synthetic["valid"])
        for seed in (0, 1)
    }
    out = io.StringIO()
    console = Console(file=out, width=200)
    metric = "worst_group_accuracy"
    shipped = ship_average(dict(runs), 2, cfg, synthetic, metric, console)
    assert [s.seed for s in shipped.averaged_seeds or []] == [0, 1]
    per = [f"seed {s} {r.valid_metrics.worst_group_accuracy:.3f}" for s, r in runs.items()]
    assert "shipping ours: the average of its 2 seeds' heads" in out.getvalue()
    assert ", ".join(per) in out.getvalue()
    assert f"averaged {shipped.valid_metrics.worst_group_accuracy:.3f}" in out.getvalue()
    assert "training ours again" not in out.getvalue()

    out.truncate(0)
    out.seek(0)
    resumed = ship_average({0: runs[0]}, 2, cfg, synthetic, metric, console)
    assert "training ours again for seed(s) 1" in out.getvalue()
    assert [s.seed for s in resumed.averaged_seeds or []] == [0, 1]
    for a, b in zip(resumed.head.parameters(), shipped.head.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # seed 1 retrained exactly as the bench did

    out.truncate(0)
    out.seek(0)
    assert ship_average({0: runs[0]}, 1, cfg, synthetic, metric, console) is runs[0]
    assert out.getvalue() == ""  # one seed: nothing to average, nothing printed


def test_the_output_rail_trains_on_the_replies_as_well() -> None:
    """The output rail's guard: the input guard's text plus ordinary replies as safe and
    harmful replies as not safe, each set once, whatever the input guard had."""
    from guardrail_dro.cli.quick_recipe import (
        BACKGROUND,
        HARMFUL,
        OUTPUT_BACKGROUND,
        OUTPUT_HARMFUL,
        output_sources,
    )
    from guardrail_dro.data.background import load_background

    bg, bad = output_sources(BACKGROUND, HARMFUL)
    assert bg == [*BACKGROUND, *OUTPUT_BACKGROUND] and bad == [*HARMFUL, *OUTPUT_HARMFUL]
    assert output_sources(bg, bad) == (bg, bad)  # given twice, trained once
    assert load_background(bg) and load_background(bad, harmful=True)  # each as its kind


def test_assistant_turns_go_through_the_output_guard_when_there_is_one() -> None:
    """User turns are checked by the input guard, assistant turns by the output rail's
    guard where the quickstart trained one, else by the input guard."""
    from guardrail_dro.cli.chat_turns import CHAT_TURNS, check_turns
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.scorer import FakeScorer

    # The input guard flags every text; the output guard only the one harmful reply.
    everything = Guard.from_scorer(FakeScorer.from_keywords({"": "toxic"}))
    replies = Guard.from_scorer(FakeScorer.from_keywords({"smash": "toxic"}))
    console = Console(file=io.StringIO(), width=200)
    both = check_turns(everything, console, replies)
    assert len(both) == len(CHAT_TURNS)
    for role, text, benign, r in both:
        if role == "user":
            assert not r.allowed, text
        else:
            assert r.allowed == benign == ("smash" not in text), text
    assert {benign for role, _, benign, _ in both if role == "assistant"} == {True, False}
    alone = check_turns(everything, console)
    assert not any(r.allowed for *_, r in alone)
    out = io.StringIO()
    check_turns(everything, Console(file=out, width=200), replies)
    assert "assistant (output guard)" in out.getvalue()


def test_an_out_that_is_a_file_is_refused_by_name(tmp_path: Path) -> None:
    """--out on a file was a 69-line NotADirectoryError traceback (its cache folder)."""
    from typer.testing import CliRunner

    from guardrail_dro.cli.app import app

    afile = tmp_path / "afile"
    afile.write_text("hi")
    res = CliRunner().invoke(app, ["quickstart", "--out", str(afile)])
    assert res.exit_code == 2 and "Invalid value for '--out'" in res.output, res.output
    assert afile.read_text() == "hi"
