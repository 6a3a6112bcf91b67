"""Trainer: a short real training lowers the loss; semi-supervised path, resume, progress, cancellation."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.config import LViTConfig
from ml.data import scan_split, split_labeled
from ml.predict import load_checkpoint, load_model
from ml.text import TextEmbedder
from ml.train import TrainConfig, Trainer, evaluate, folder_samples


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder(length=10)


@pytest.fixture(scope="module")
def cxr(shared_data: Path) -> dict[str, list]:
    train = scan_split(shared_data / "covid_cxr", "Train")
    labeled, unlabeled = split_labeled(train, 0.25, seed=0)
    val = scan_split(shared_data / "covid_cxr", "Val")
    return {"labeled": labeled[:2], "unlabeled": unlabeled[:2], "val": val[:2]}


def _small(**kw) -> LViTConfig:
    """LViT-T at 32x32 gray: the real architecture, cheap enough for bookkeeping tests."""
    return LViTConfig(img_size=32, in_channels=1, **kw)


def test_two_epochs_on_real_images_lower_the_loss(shared_data: Path, tmp_path: Path, embedder: TextEmbedder) -> None:
    train = scan_split(shared_data / "monuseg", "Train")[:4]
    val = scan_split(shared_data / "monuseg", "Val")[:2]
    cfg = TrainConfig(out_dir=str(tmp_path), epochs=2, batch_size=2, augment=False, seed=0, save_last=False)
    steps: list[float] = []

    def on_progress(e: dict) -> None:
        if e["type"] == "step":
            steps.append(e["losses"]["loss"])

    trainer = Trainer(cfg, LViTConfig(), train, val, on_progress=on_progress, text_embedder=embedder)
    result = trainer.fit()
    assert len(steps) == 4 and all(math.isfinite(v) for v in steps)
    first, second = [h["losses"]["loss"] for h in result.history]
    assert second < first
    assert result.stopped == "completed" and result.epochs_run == 2
    assert 0.0 <= result.best_dice <= 1.0
    _, cfg_loaded, ckpt = load_model(result.best_checkpoint)
    assert cfg_loaded == LViTConfig() and ckpt["train_config"]["epochs"] == 2
    saved = json.loads((tmp_path / "train_config.json").read_text())
    assert TrainConfig.from_dict(saved["train"]) == cfg and LViTConfig.from_dict(saved["model"]) == LViTConfig()


def test_train_step_returns_named_losses(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    trainer = Trainer(TrainConfig(out_dir=str(tmp_path)), _small(), cxr["labeled"], cxr["val"], text_embedder=embedder)
    batch = next(iter(trainer.train_loader))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    losses = trainer.train_step(batch)
    assert set(losses) == {"sup_dice", "sup_bce", "loss"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses.values())
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)]
    assert all(changed)  # every parameter got a gradient and moved


def test_semi_supervised_path_updates_epi(cxr: dict, shared_data: Path, tmp_path: Path, embedder: TextEmbedder) -> None:
    cfg = TrainConfig(
        out_dir=str(tmp_path),
        epochs=3,
        prototype_epochs=1,
        lv_bank=str(shared_data / "lv_loss"),
        save_best=False,
        save_last=False,
    )
    events: list[dict] = []
    trainer = Trainer(
        cfg, _small(), cxr["labeled"], cxr["val"], cxr["unlabeled"], on_progress=events.append, text_embedder=embedder
    )
    assert trainer.lv_loss is not None and len(trainer.lv_loss) == 14
    result = trainer.fit()
    assert [h["semi"] for h in result.history] == [False, True, True]
    assert {"unsup_dice", "unsup_bce", "lv", "sup_dice", "loss"} <= set(result.history[-1]["losses"])
    assert "unsup_dice" not in result.history[0]["losses"]  # the prototype epoch is supervised only
    for s in cxr["unlabeled"]:
        assert trainer.epi.count(s.name) == 2  # P_0 after the prototype, one EMA step after epoch 1
        assert trainer.epi.get(s.name).shape == (32, 32)
    pseudo = [e for e in events if e["type"] == "pseudo_labels"]
    assert len(pseudo) == 2 and "pseudo_dice" in pseudo[0]  # hidden masks known here: quality is reported
    assert (tmp_path / "epi.npz").is_file()


def test_labeled_only_control_takes_the_semi_supervised_steps_without_the_unlabeled_half(
    cxr: dict, shared_data: Path, tmp_path: Path, embedder: TextEmbedder
) -> None:
    """The equal-steps control of the EPI ablation: as many optimiser steps per epoch as the EPI run (there are
    more unlabeled than labeled cases, so a semi epoch has more steps than one pass over the labeled ones), the
    same labeled batches, and neither pseudo-label passes nor unsupervised losses."""
    labeled, unlabeled = cxr["labeled"][:1], cxr["unlabeled"][:2]  # 1 labeled batch, 2 unlabeled batches (batch 1)

    def run(control: bool) -> tuple[list[tuple[int, int, frozenset]], Trainer]:
        cfg = TrainConfig(
            out_dir=str(tmp_path / str(control)),
            epochs=3,
            batch_size=1,
            prototype_epochs=1,
            lv_bank=str(shared_data / "lv_loss"),
            labeled_only_control=control,
            save_best=False,
            save_last=False,
        )
        events: list[dict] = []
        trainer = Trainer(
            cfg, _small(), labeled, cxr["val"], unlabeled, on_progress=events.append, text_embedder=embedder
        )
        trainer.fit()
        steps = [(e["epoch"], e["step"], frozenset(e["losses"])) for e in events if e["type"] == "step"]
        return steps, trainer

    epi_steps, _ = run(False)
    control_steps, control = run(True)
    assert [(ep, st) for ep, st, _ in control_steps] == [(ep, st) for ep, st, _ in epi_steps]
    assert [(ep, st) for ep, st, _ in control_steps] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert all(keys == {"sup_dice", "sup_bce", "loss"} for _, _, keys in control_steps)
    assert any("unsup_dice" in keys for _, _, keys in epi_steps)
    assert control.lv_loss is None and all(control.epi.count(s.name) == 0 for s in unlabeled)


def test_unsup_rampup_weights_the_unsupervised_loss_along_the_sigmoid_ramp(
    cxr: dict, shared_data: Path, tmp_path: Path, embedder: TextEmbedder
) -> None:
    """0 in the prototype, then exp(-5 (1 - t)^2) of unsup_weight over the ramp, full weight after it; and each
    step's loss is sup + w·(0.5·Dice + 0.5·BCE vs the pseudo-label + alpha·LV) with that epoch's w."""
    cfg = TrainConfig(
        out_dir=str(tmp_path),
        epochs=4,
        batch_size=1,
        prototype_epochs=1,
        unsup_rampup_epochs=2,
        unsup_weight=2.0,
        lv_bank=str(shared_data / "lv_loss"),
        save_best=False,
        save_last=False,
    )
    expected = [0.0, 2.0 * math.exp(-5 * 0.25), 2.0, 2.0]
    assert [cfg.unsup_weight_at(e) for e in range(4)] == pytest.approx(expected)
    assert TrainConfig(prototype_epochs=1).unsup_weight_at(1) == 1.0  # no ramp: the paper's full weight at once
    with pytest.raises(ValueError, match="unsup_rampup_epochs"):
        TrainConfig(unsup_rampup_epochs=-1)
    events: list[dict] = []
    Trainer(
        cfg,
        _small(),
        cxr["labeled"][:1],
        cxr["val"],
        cxr["unlabeled"][:2],
        on_progress=events.append,
        text_embedder=embedder,
    ).fit()
    epochs = [e for e in events if e["type"] == "epoch"]
    assert [e["unsup_weight"] for e in epochs] == pytest.approx(expected)
    semi_steps = [e for e in events if e["type"] == "step" and e["epoch"] >= 1]
    assert semi_steps
    for e in semi_steps:
        losses = e["losses"]
        unsup = 0.5 * losses["unsup_dice"] + 0.5 * losses["unsup_bce"] + cfg.lv_alpha * losses["lv"]
        sup = 0.5 * losses["sup_dice"] + 0.5 * losses["sup_bce"]
        assert losses["loss"] == pytest.approx(sup + expected[e["epoch"]] * unsup, rel=1e-5)


def test_lv_bank_from_labeled_cases_and_plain_pseudo_labels(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    cfg = TrainConfig(
        out_dir=str(tmp_path),
        epochs=2,
        prototype_epochs=1,
        use_epi=False,
        pseudo_label="hard",
        save_best=False,
        save_last=False,
        num_workers=0,  # forking loader workers from this threaded test process can deadlock; see test_cli
    )
    trainer = Trainer(
        cfg, _small(with_text=False), cxr["labeled"], cxr["val"], cxr["unlabeled"], text_embedder=embedder
    )
    assert len(trainer.lv_loss) == len(cxr["labeled"]) and trainer.epi.beta == 0.0
    result = trainer.fit()
    assert "lv" in result.history[-1]["losses"]


def test_resume_continues_from_last_checkpoint(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    cfg = TrainConfig(out_dir=str(tmp_path), epochs=2, prototype_epochs=1)
    args = (_small(), cxr["labeled"], cxr["val"], cxr["unlabeled"])
    first = Trainer(cfg, *args, text_embedder=embedder)
    first.fit()
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1 and "optimizer" in ckpt and "scheduler" in ckpt

    cfg3 = TrainConfig(out_dir=str(tmp_path), epochs=3, prototype_epochs=1)
    resumed = Trainer(cfg3, *args, text_embedder=embedder, resume=tmp_path / "last.pt")
    assert resumed.start_epoch == 2 and resumed.best_epoch == first.best_epoch
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value)
    assert resumed.scheduler.last_epoch == first.scheduler.last_epoch
    assert all(resumed.epi.count(s.name) == 1 for s in cxr["unlabeled"])  # EPI store restored
    result = resumed.fit()
    assert result.epochs_run == 1 and len(result.history) == 3
    assert all(resumed.epi.count(s.name) == 2 for s in cxr["unlabeled"])
    with pytest.raises(ValueError, match="different model config"):
        Trainer(cfg3, _small(with_text=False), *args[1:], text_embedder=embedder, resume=tmp_path / "last.pt")


def test_progress_events_and_should_stop(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    events: list[dict] = []
    trainer = Trainer(
        TrainConfig(out_dir=str(tmp_path), epochs=2, batch_size=1, save_best=False, save_last=False),
        _small(),
        cxr["labeled"],
        cxr["val"],
        on_progress=events.append,
        text_embedder=embedder,
    )
    trainer.fit()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("step") == 4 and kinds.count("epoch") == 2
    step = next(e for e in events if e["type"] == "step")
    assert {"epoch", "step", "steps", "losses"} <= set(step) and step["steps"] == 2
    epoch = next(e for e in events if e["type"] == "epoch")
    assert {"dice", "iou", "n", "n_empty_both"} <= set(epoch["val"]) and "lr" in epoch and "best_dice" in epoch

    def should_stop() -> bool:  # cancel after the first step of the second epoch
        return sum(e["type"] == "step" for e in events) >= 3

    events.clear()
    stopper = Trainer(
        TrainConfig(out_dir=str(tmp_path / "s"), epochs=5, batch_size=1, save_best=False),
        _small(),
        cxr["labeled"],
        cxr["val"],
        on_progress=events.append,
        should_stop=should_stop,
        text_embedder=embedder,
    )
    result = stopper.fit()
    assert result.stopped == "cancelled" and result.epochs_run == 1
    assert [e["type"] for e in events].count("step") == 3
    assert load_checkpoint(tmp_path / "s" / "last.pt")["epoch"] == 0  # resumable from the last complete epoch


def test_early_stopping(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    cfg = TrainConfig(
        out_dir=str(tmp_path), epochs=20, patience=1, lr=1e-12, eta_min=0.0, save_best=False, save_last=False
    )
    result = Trainer(cfg, _small(), cxr["labeled"], cxr["val"], text_embedder=embedder).fit()
    assert result.stopped == "early_stopping" and result.epochs_run < 20


def test_evaluate_matches_validate(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    trainer = Trainer(TrainConfig(out_dir=str(tmp_path)), _small(), cxr["labeled"], cxr["val"], text_embedder=embedder)
    a = trainer.validate()
    b = evaluate(trainer.model, trainer.model_cfg, trainer.val_set)
    assert a == b and a.n == 2


def test_folder_samples(shared_data: Path) -> None:
    labeled, unlabeled, val = folder_samples(shared_data / "covid_cxr", labeled_fraction=0.25)
    assert (len(labeled), len(unlabeled), len(val)) == (16, 47, 12)


def test_bad_config_raises(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError):
        TrainConfig(pseudo_label="fuzzy")
    with pytest.raises(ValueError):
        TrainConfig.from_dict({"epochs": 1, "bogus": 2})
    with pytest.raises(ValueError, match="text features"):
        Trainer(
            TrainConfig(out_dir=str(tmp_path)), _small(text_dim=768), cxr["labeled"], cxr["val"], text_embedder=embedder
        )
    with pytest.raises(ValueError):
        Trainer(TrainConfig(out_dir=str(tmp_path)), _small(), [], cxr["val"], text_embedder=embedder)


def test_an_existing_epi_store_is_continued(cxr: dict, tmp_path: Path, embedder: TextEmbedder) -> None:
    import numpy as np

    from ml.epi import EPIStore

    store = EPIStore(beta=0.5, rounding="nearest")
    for s in cxr["unlabeled"]:
        store.set(s.name, np.full((32, 32), 255, np.uint8), count=3)  # maps kept by the server
    cfg = TrainConfig(out_dir=str(tmp_path), epochs=1, prototype_epochs=0, save_best=False, save_last=False)
    trainer = Trainer(
        cfg, _small(), cxr["labeled"], cxr["val"], cxr["unlabeled"], text_embedder=embedder, epi_store=store
    )
    trainer.fit()
    for s in cxr["unlabeled"]:
        assert store.count(s.name) == 4
        assert store.get(s.name).min() >= 0.5  # 0.5 * 1.0 + 0.5 * prediction


def test_lv_targets_follow_the_augmentation_and_negatives_get_the_empty_mask(
    shared_data: Path, tmp_path: Path, embedder: TextEmbedder
) -> None:
    """Each unlabeled case's LV target is its bank entry (chosen from the whole, un-augmented sentence) moved with
    exactly the image's geometry; a negative report's target is empty (it used to pick the bilateral template)."""
    import numpy as np

    from ml.data import draw_augmentation
    from ml.laterality import is_negative

    train = scan_split(shared_data / "covid_cxr", "Train")
    negative = [s for s in train if is_negative(s.sentence)][:1]
    unilateral = [s for s in train if s.sentence.startswith("Unilateral")][:2]
    cfg = TrainConfig(out_dir=str(tmp_path), epochs=1, prototype_epochs=1, lv_bank=str(shared_data / "lv_loss"))
    trainer = Trainer(cfg, _small(), train[:2], train[:1], negative + unilateral, text_embedder=embedder)
    ds, targets, bank = trainer.unlabeled_set, trainer.unlabeled_set.lv_targets, trainer.lv_loss.bank_masks.numpy()
    assert not targets(negative[0].name).any()
    moved = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i, sample in enumerate(ds.samples):
            item = ds[i]
            aug = draw_augmentation(np.random.default_rng([ds.seed, epoch, i]), ds.augment_mode)
            expected = aug.apply(targets(sample.name).astype(np.uint8), nearest=True)
            np.testing.assert_array_equal(item["lv_target"][0].numpy(), expected.astype(np.float32))
            moved += not np.array_equal(expected > 0, targets(sample.name))
    assert moved > 0
    for s in unilateral:  # the chosen template names the same side as the report
        chosen = next(j for j in range(len(bank)) if np.array_equal(bank[j] > 0, targets(s.name)))
        side = "left" if " left lung" in s.sentence else "right"
        assert f" {side} lung" in trainer._lv_sentences[chosen]
    trainer.update_pseudo_labels(0)
    losses = trainer.train_step(next(iter(trainer.train_loader)), next(iter(trainer.unlabeled_loader)))
    assert math.isfinite(losses["lv"])


def test_training_dtype_follows_the_cpus_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast where the CPU computes bf16 natively (AMX tiles or AVX512-BF16 dot products: ~2x per step,
    docs/results.md), float32 elsewhere; an explicit precision wins; CUDA uses float16 under amp."""
    from ml.serving import CPUFeatures
    from ml.train import training_dtype

    cpu = torch.device("cpu")
    for flags, expected in (
        ({"avx512f", "avx512_bf16"}, torch.bfloat16),  # AVX512-BF16 without AMX (e.g. AMD Zen 4/5)
        ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, torch.bfloat16),
        ({"avx2", "fma"}, None),
        ({"avx512f", "avx512_vnni"}, None),
    ):
        monkeypatch.setattr("ml.train.cpu_features", lambda flags=flags: CPUFeatures(frozenset(flags)))
        assert training_dtype(TrainConfig(), cpu) == expected, flags
        assert training_dtype(TrainConfig(precision="fp32"), cpu) is None
        assert training_dtype(TrainConfig(precision="bf16"), cpu) == torch.bfloat16
    assert training_dtype(TrainConfig(), torch.device("cuda")) == torch.float16
    assert training_dtype(TrainConfig(amp=False), torch.device("cuda")) is None


def test_pseudo_zone_gate_clears_what_the_report_does_not_claim(
    cxr: dict, shared_data: Path, tmp_path: Path, embedder: TextEmbedder
) -> None:
    """With the gate, every EPI map is the ungated prediction times the report's claimed-zone map (also for a model
    without a zone input: the pseudo-label pass renders the prior for the gate), so it is background on the side
    the report does not name."""
    unlabeled = [s for s in scan_split(shared_data / "covid_cxr", "Train") if "Unilateral" in s.sentence][:2]
    unlabeled = [replace(s, labeled=False) for s in unlabeled]

    def epi_maps(gate: bool) -> tuple[Trainer, dict[str, np.ndarray]]:
        cfg = TrainConfig(
            out_dir=str(tmp_path / str(gate)),
            epochs=2,
            prototype_epochs=1,
            lv_alpha=0.0,
            pseudo_zone_gate=gate,
            save_best=False,
            save_last=False,
        )
        trainer = Trainer(cfg, _small(), cxr["labeled"], cxr["val"], unlabeled, text_embedder=embedder)
        trainer.fit()
        return trainer, {s.name: trainer.epi.get(s.name) for s in unlabeled}

    gated_trainer, gated = epi_maps(True)
    _, plain = epi_maps(False)
    for i, s in enumerate(unlabeled):
        claim = gated_trainer.unlabeled_plain[i]["zones"][0].numpy()  # (32, 32), the report's claimed zones
        unclaimed = claim < 0.01  # soft edges: the claim falls off smoothly, not to exact zeros
        assert unclaimed.mean() > 0.25 and (claim > 0.5).mean() > 0.1  # a unilateral report claims one side
        assert gated[s.name][unclaimed].max() <= 0.01 + 1 / 255  # maps are stored in 8 bits
        assert plain[s.name][unclaimed].max() > 0.05  # the ungated prediction does spill there
        # same seed, same weights: the gate is the only difference (up to the 8-bit rounding of the maps)
        assert np.abs(gated[s.name] - plain[s.name] * claim).max() <= 2 / 255


def test_pseudo_confidence_leaves_unsure_pixels_out_and_hardens_the_rest(
    cxr: dict, shared_data: Path, tmp_path: Path, embedder: TextEmbedder
) -> None:
    with pytest.raises(ValueError, match="pseudo_confidence"):
        TrainConfig(pseudo_confidence=0.4)
    cfg = TrainConfig(
        out_dir=str(tmp_path), prototype_epochs=0, lv_alpha=0.0, pseudo_confidence=0.8, augment=False, save_last=False
    )
    trainer = Trainer(cfg, _small(), cxr["labeled"], cxr["val"], cxr["unlabeled"], text_embedder=embedder)
    labeled = next(iter(trainer.train_loader))

    def step_with(value: float) -> dict[str, float]:
        for s in cxr["unlabeled"]:  # the EPI maps hold 8-bit probabilities
            trainer.epi.set(s.name, np.full((32, 32), round(value * 255), np.uint8), count=1)
        return trainer.train_step(labeled, next(iter(trainer.unlabeled_loader)))

    unsure = step_with(0.6)  # every pixel between 0.2 and 0.8: nothing enters the unsupervised loss
    assert unsure["unsup_confident"] == 0.0 and unsure["unsup_dice"] == 0.0 and unsure["unsup_bce"] == 0.0
    sure = step_with(0.9)  # every pixel confident: hard target 1 everywhere
    assert sure["unsup_confident"] == 1.0 and sure["unsup_dice"] > 0.0 and sure["unsup_bce"] > 0.0
