"""Full fine-tuning: its batching, its optimizer, and (slow, real MiniLM on a real slice)
that it ends better than frozen mode, so that a collapse cannot pass silently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from guardrail_dro.train.features import FullFeatures, build_features
from guardrail_dro.train.trainer import BiLevelTrainer, TrainConfig


def _full_source(synthetic, backbone: Path, n: int = 90) -> FullFeatures:
    cfg = TrainConfig(backbone=str(backbone), mode="full", device="cpu", progress=False)
    valid = synthetic["valid"].subset(range(n))
    src = build_features(cfg, {"train": synthetic["train"].subset(range(n)), "valid": valid,
                               "select": valid})
    assert isinstance(src, FullFeatures)
    return src


def test_length_buckets_cover_every_item_once_and_group_similar_lengths(
    synthetic, tiny_backbone: Path
) -> None:
    src = _full_source(synthetic, tiny_backbone)
    src.BUCKET_BATCHES = 3  # several buckets in 90 items
    order = torch.randperm(90, generator=torch.Generator().manual_seed(0))
    batches = src.batches("train", order, 8, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(batches).tolist()) == list(range(90))
    lengths = src._len["train"]
    for b in batches:  # each batch lies inside one bucket, sorted by length there
        assert lengths[b].tolist() == sorted(lengths[b].tolist())
    # The padded width of a batch (what the encoder pays for) shrinks against plain chunks.
    plain = sum(int(lengths[b].max()) * len(b) for b in order.split(8))
    bucketed = sum(int(lengths[b].max()) * len(b) for b in batches)
    assert bucketed < plain


def test_whole_split_features_come_back_in_item_order_without_dropout(
    synthetic, tiny_backbone: Path
) -> None:
    """Encoded in length order, they must be put back in item order; and computed in
    eval mode (no dropout) even while the encoder trains."""
    src = _full_source(synthetic, tiny_backbone)
    src.train()
    whole = src.features("valid", None)
    assert src.features("select", None) is whole  # the same split object: encoded once
    src.embedder.eval()
    with torch.no_grad():
        one_by_one = torch.cat([src.features("valid", torch.tensor([i])) for i in range(90)])
    torch.testing.assert_close(whole, one_by_one, atol=1e-5, rtol=1e-4)
    assert src.embedder.training is False  # we set it; features() restored what it found
    src.train()
    src.features("valid", None)
    assert src.embedder.training is True


def test_full_mode_gives_the_fresh_head_its_own_learning_rate(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """The collapse: one 3e-5 LR for a fresh head and the encoder. The head now has its
    own group (lr), the encoder another (encoder_lr); a linear schedule decays both."""
    small = {k: v.subset(range(64)) for k, v in synthetic.items()}
    cfg = TrainConfig(method="mv", backbone=str(tiny_backbone), mode="full", device="cpu",
                      epochs=2, batch_size=16, lr=2e-3, encoder_lr=4e-5, progress=False,
                      cache_dir=tmp_path)
    trainer = BiLevelTrainer(cfg)
    res = trainer.fit(small["train"], small["valid"])
    src = res.source
    opt = trainer._optimizer(res.head, src)
    assert [g["lr"] for g in opt.param_groups] == [2e-3, 4e-5]
    assert len(opt.param_groups[1]["params"]) == len(list(src.embedder.encoder.parameters()))
    sched = trainer._schedule(opt, items=64, nproc=1)
    assert sched is not None
    lrs = []
    for _ in range(8):  # 2 epochs x 4 steps: warmup then linear decay to 0
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)
    assert opt.param_groups[0]["lr"] == 0.0
    frozen = BiLevelTrainer(cfg.model_copy(update={"mode": "frozen"}))
    assert frozen._schedule(opt, items=64, nproc=1) is None  # frozen keeps a constant LR


def test_train_layers_fine_tunes_only_the_top_layers(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """--train-layers N: the top N encoder layers train, everything below (word
    embeddings, lower layers) keeps its pre-trained weights and gets no gradient."""
    from guardrail_dro.errors import ConfigError
    from guardrail_dro.train.features import freeze_below

    small = {k: v.subset(range(48)) for k, v in synthetic.items()}
    cfg = TrainConfig(method="mv", backbone=str(tiny_backbone), mode="full", device="cpu",
                      epochs=1, batch_size=16, probe_epochs=0, train_layers=1,
                      progress=False, cache_dir=tmp_path)
    fresh = build_features(cfg.model_copy(update={"train_layers": None}), small)
    before = {k: v.clone() for k, v in fresh.embedder.encoder.state_dict().items()}
    res = BiLevelTrainer(cfg).fit(small["train"], small["valid"])
    enc = res.source.embedder.encoder
    layers = enc.encoder.layer
    top = {id(p) for p in layers[-1].parameters()}
    assert {id(p) for p in res.source.trainable_parameters()} == top
    below = [*enc.embeddings.parameters(), *layers[0].parameters()]
    assert not any(p.requires_grad or p.grad is not None for p in below)  # no backward there
    after = enc.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    last = f"encoder.layer.{len(layers) - 1}."
    assert moved and all(k.startswith(last) for k in moved), sorted(moved)
    with pytest.raises(ConfigError, match="has 2 layers"):
        freeze_below(enc, len(layers) + 1)
    with pytest.raises(ConfigError, match="BERT-style"):
        freeze_below(torch.nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match="frozen mode trains no encoder layer"):
        TrainConfig(train_layers=2)  # frozen mode: refused, not silently ignored


@pytest.mark.parametrize(
    ("lp_select", "note"), [("tuned", "(a collapse): kept the LP stage"),
                            ("compete", "valid kept the LP stage")]
)
def test_lp_stage_is_the_methods_frozen_fit_and_the_fallback(
    synthetic, tiny_backbone: Path, tmp_path: Path, lp_select: str, note: str
) -> None:
    """LP-FT: fine-tuning starts from the same method's frozen-mode fit (head and, for
    ours, estimator), which a collapsed fine-tuning falls back to (``tuned``) or which
    competes on valid (``compete``). Fine-tuning made destructive on purpose (encoder
    and head LR 1.0) ends with the frozen fit either way, weights and estimator
    included, and the encoder the pre-trained one."""
    small = {k: v.subset(range(64)) for k, v in synthetic.items()}
    base = dict(method="ours", backbone=str(tiny_backbone), device="cpu", progress=False,
                cache_dir=tmp_path, seed=0)
    frozen = BiLevelTrainer(TrainConfig(**base, epochs=6)).fit(small["train"], small["valid"])
    cfg = TrainConfig(**base, mode="full", epochs=1, batch_size=16, probe_epochs=6,
                      encoder_lr=1.0, lr=1.0, lp_select=lp_select)
    before = build_features(cfg.model_copy(update={"probe_epochs": 0}), small)
    pre = {k: v.clone() for k, v in before.embedder.encoder.state_dict().items()}
    full = BiLevelTrainer(cfg).fit(small["train"], small["valid"])
    assert full.history[0]["stage"] == "LP" and full.history[0]["epoch"] == -1
    assert full.best_epoch == -1, full.history
    assert any(note in n for n in full.notes), full.notes
    assert full.valid_metrics == frozen.valid_metrics
    heads = (full.head.state_dict().values(), frozen.head.state_dict().values())
    for a, b in zip(*heads, strict=True):
        assert torch.equal(a, b)
    assert full.estimator is not None and frozen.estimator is not None
    mine = full.estimator.state_dict()
    for k, v in frozen.estimator.state_dict().items():  # NaN: a rationale cell never seen
        torch.testing.assert_close(mine[k], v, rtol=0, atol=0, equal_nan=True, msg=k)
    after = full.source.embedder.encoder.state_dict()
    assert all(torch.equal(pre[k], after[k]) for k in pre)
    if lp_select == "compete":
        return  # what follows does not depend on lp_select
    # Without probe_epochs there is no LP stage: a fresh head, fine-tuned epochs only.
    fresh = BiLevelTrainer(cfg.model_copy(update={"probe_epochs": 0, "encoder_lr": 3e-5}))
    res = fresh.fit(small["train"], small["valid"])
    assert [h["epoch"] for h in res.history] == [0] and res.best_epoch == 0
    assert any("no fit to freeze, the estimator learns" in n for n in res.notes)
    # ... and only there: not when it was asked to learn, nor for fixed targets.
    for update in ({"ft_estimator": "learn"}, {"method": "mv"}):
        other = BiLevelTrainer(fresh.config.model_copy(update=update))
        notes = other.fit(small["train"], small["valid"]).notes
        assert not any("no fit to freeze" in n for n in notes), (update, notes)


@pytest.mark.parametrize(
    ("lp_select", "tuned", "kept"),
    [
        ("tuned", (0.57, 0.72), 1),  # below the LP stage, within LP_COLLAPSE: tuned kept
        ("compete", (0.57, 0.72), -1),  # the LP stage's higher worst group wins
        ("tuned", (0.45, 0.72), -1),  # worst group 0.15 below: a collapse
        ("tuned", (0.61, 0.64), -1),  # accuracy 0.06 below: a collapse
        ("compete", (0.62, 0.64), 1),  # a higher worst group wins whatever the accuracy
    ],
)
def test_lp_select_keeps_the_best_tuned_epoch_unless_it_collapsed(
    synthetic, tiny_backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    lp_select: str, tuned: tuple[float, float], kept: int,
) -> None:
    """The loop as it runs, with full mode's valid scores scripted: LP stage worst group
    0.60 / accuracy 0.70, tuned epoch 0 worst 0.30 / 0.50, epoch 1 ``tuned``. The LP
    stage's valid score is in-sample, so under ``tuned`` it is kept only on a collapse
    (LP_COLLAPSE), and its GroupDRO weights come back with it."""
    from guardrail_dro.train import trainer as T
    from guardrail_dro.train.metrics import Metrics

    scripted = iter([(0.60, 0.70), (0.30, 0.50), tuned])
    real = T.BiLevelTrainer._evaluate

    def evaluate(self, model, src, run):  # type: ignore[no-untyped-def]
        m = real(self, model, src, run)
        if self.config.mode == "frozen":
            return m  # the LP stage's own fit selects its epoch as usual
        worst, acc = next(scripted)
        return Metrics(n=m.n, accuracy=acc, worst_group_accuracy=worst, macro_f1=m.macro_f1)

    monkeypatch.setattr(T.BiLevelTrainer, "_evaluate", evaluate)
    small = {k: v.subset(range(64)) for k, v in synthetic.items()}
    cfg = TrainConfig(method="ours", backbone=str(tiny_backbone), device="cpu",
                      progress=False, cache_dir=tmp_path, seed=0, mode="full", epochs=2,
                      batch_size=32, probe_epochs=3, lp_select=lp_select)
    res = BiLevelTrainer(cfg).fit(small["train"], small["valid"])
    assert [h["epoch"] for h in res.history] == [-1, 0, 1]
    assert res.best_epoch == kept, res.history
    assert (res.valid_metrics.worst_group_accuracy, res.valid_metrics.accuracy) == (
        (0.60, 0.70) if kept == -1 else tuned
    )
    collapse = any("(a collapse)" in n for n in res.notes)
    assert collapse == (lp_select == "tuned" and kept == -1), res.notes
    if kept == -1 and res.group_weights is not None:
        lp = BiLevelTrainer(cfg.model_copy(update={"mode": "frozen", "epochs": 3,
                                                   "batch_size": None, "lr": None}))
        want = lp.fit(small["train"], small["valid"]).group_weights
        assert res.group_weights == pytest.approx(want, abs=1e-6)


def test_ft_estimator_freeze_stops_the_upper_level_after_the_lp_stage(
    synthetic, tiny_backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ft_estimator="freeze" (the default): the estimator takes its upper-level steps in
    the LP stage only, so the fine-tuning trains on the LP stage's soft labels and ends
    with its estimator; "learn" keeps stepping on valid through the tuned epochs."""
    import guardrail_dro.train.estimator_targets as ET

    calls = {"n": 0}
    real = ET.upper_step

    def counted(*args, **kw):
        calls["n"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(ET, "upper_step", counted)
    small = {k: v.subset(range(64)) for k, v in synthetic.items()}
    base = dict(method="ours", backbone=str(tiny_backbone), device="cpu", progress=False,
                cache_dir=tmp_path, seed=0)
    frozen = BiLevelTrainer(TrainConfig(**base, epochs=4)).fit(small["train"], small["valid"])
    lp_steps, calls["n"] = calls["n"], 0
    assert lp_steps > 0
    cfg = TrainConfig(**base, mode="full", epochs=2, batch_size=16, probe_epochs=4)
    assert cfg.ft_estimator == "freeze"
    full = BiLevelTrainer(cfg).fit(small["train"], small["valid"])
    assert calls["n"] == lp_steps  # the LP stage's steps, none while the encoder tunes
    assert any("ft_estimator=freeze" in n for n in full.notes)
    assert full.estimator is not None and frozen.estimator is not None
    mine = full.estimator.state_dict()
    for k, v in frozen.estimator.state_dict().items():
        torch.testing.assert_close(mine[k], v, rtol=0, atol=0, equal_nan=True, msg=k)
    calls["n"] = 0
    learn = BiLevelTrainer(cfg.model_copy(update={"ft_estimator": "learn"}))
    res = learn.fit(small["train"], small["valid"])
    assert calls["n"] == lp_steps + 2 * 4  # and one per classifier step: 2 epochs x 4
    assert not any("ft_estimator=freeze" in n for n in res.notes)


def test_full_mode_predictions_read_the_fine_tuned_encoder_not_the_cache(
    synthetic, tiny_backbone: Path, tmp_path: Path
) -> None:
    """The embedding cache's keys name the pre-trained encoder. A full-mode result used
    to read them back for texts a frozen run had cached (the test split, warmed by the
    bench): the fine-tuned head on pre-trained embeddings. Its predictions must come
    from its own encoder, and it must leave the cache's rows as they were."""
    from guardrail_dro.train.embeddings import EmbeddingCache, embed_texts

    small = {k: v.subset(range(64)) for k, v in synthetic.items()}
    base = dict(method="mv", backbone=str(tiny_backbone), device="cpu", progress=False,
                cache_dir=tmp_path, seed=0)
    frozen = BiLevelTrainer(TrainConfig(**base, epochs=2))
    frozen_res = frozen.fit(small["train"], small["valid"])
    texts = small["valid"].texts
    frozen_res.predict_proba(texts)  # the cache now holds the pre-trained embeddings
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    ns = frozen_res.source.namespace
    cached = embed_texts(frozen_res.source.embedder, frozen_res.source.tokenizer, texts,
                         namespace=ns, cache=cache, progress=False)
    cfg = TrainConfig(**base, mode="full", epochs=2, batch_size=16, probe_epochs=0,
                      encoder_lr=1e-2)
    full = BiLevelTrainer(cfg).fit(small["train"], small["valid"])
    p = full.predict_proba(texts)
    live = embed_texts(full.source.embedder, full.source.tokenizer, texts, namespace="",
                       cache=None, progress=False)
    assert not np.allclose(live, cached, atol=1e-4)  # the encoder did move
    with torch.no_grad():
        want = torch.softmax(full.head(torch.as_tensor(live)), -1).numpy()
        stale = torch.softmax(full.head(torch.as_tensor(cached)), -1).numpy()
    np.testing.assert_allclose(p, want, atol=1e-5)
    assert not np.allclose(p, stale, atol=1e-4)
    again = embed_texts(frozen_res.source.embedder, frozen_res.source.tokenizer, texts,
                        namespace=ns, cache=cache, progress=False)
    np.testing.assert_array_equal(again, cached)  # no fine-tuned row written under ns
    cache.close()


@pytest.mark.slow
def test_full_mode_beats_frozen_mode_on_a_real_slice(tmp_path: Path) -> None:
    """Real MiniLM, a few hundred bundled toxic-questions items, 2 epochs on the CPU.
    Fine-tuning must end ahead of the frozen encoder's head on valid: the old full mode
    (one 3e-5 LR for head and encoder) fell far behind it and predicted few classes."""
    from guardrail_dro.data.readers import read_dataset

    rng = np.random.default_rng(0)
    train = read_dataset("toxic-questions:train")
    valid = read_dataset("toxic-questions:valid")
    train = train.subset(rng.permutation(len(train))[:TRAIN_ITEMS])
    valid = valid.subset(rng.permutation(len(valid))[:VALID_ITEMS])
    base = dict(method="mv", seed=0, progress=False, device="cpu", cache_dir=tmp_path)
    frozen = BiLevelTrainer(TrainConfig(**base)).fit(train, valid).valid_metrics
    full = BiLevelTrainer(TrainConfig(**base, mode="full", epochs=2)).fit(train, valid)
    fm = full.valid_metrics
    print(f"valid accuracy / worst group: full {fm.accuracy:.3f} / "
          f"{fm.worst_group_accuracy:.3f}, frozen {frozen.accuracy:.3f} / "
          f"{frozen.worst_group_accuracy:.3f}")
    tuned = max(h["accuracy"] for h in full.history if h["epoch"] >= 0)
    assert fm.accuracy >= frozen.accuracy
    # The fine-tuned epochs themselves, not the LP stage full mode may keep.
    assert tuned > frozen.accuracy, (tuned, frozen.accuracy)


TRAIN_ITEMS = 400
VALID_ITEMS = 200
