"""The ``lvit_zones`` variant: forward shapes, the prior in the dataset (aligned through augmentation), the
Predictor path, one training step, and the steering measurement of ``ml.steer`` (Dice with true / swapped / empty
reports, named-side fraction) on models whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ml.config import LViTConfig
from ml.data import LViTDataset, Sample
from ml.laterality import swap_sides
from ml.models import LViTZones, build_model
from ml.predict import Predictor
from ml.steer import sensitivity_rows, text_sensitivity
from ml.train import TrainConfig, Trainer
from ml.zones import ZONE_CHANNELS, zone_prior

LEFT = "Unilateral pulmonary infection, one infected area, all left lung."
RIGHT_LOWER = "Unilateral pulmonary infection, one infected area, lower right lung."
BILATERAL = "Bilateral pulmonary infection, two infected areas, all left lung and all right lung."


def _cfg(**kw) -> LViTConfig:
    return LViTConfig(**{"arch": "lvit_zones", "img_size": 32, "in_channels": 1, "text_dim": 8, "text_len": 6, **kw})


def test_forward_shape_and_the_prior_changes_the_logits() -> None:
    torch.manual_seed(0)
    cfg = _cfg()
    model = build_model(cfg).eval()
    assert isinstance(model, LViTZones) and cfg.model_name == "LViT-T+zones" and cfg.uses_text and cfg.uses_zones
    images, text = torch.rand(2, 1, 32, 32), torch.randn(2, 6, 8)
    zones = torch.rand(2, ZONE_CHANNELS, 32, 32)
    with torch.no_grad():
        out = model(images, text, zones)
        assert out.shape == (2, 1, 32, 32)
        assert not torch.allclose(out, model(images, text, zones.flip(-1)))
        assert torch.equal(model(images, text, None), model(images, text, torch.zeros_like(zones)))
    with pytest.raises(ValueError, match="zones must be"):
        model(images, text, zones[:, :1])
    with pytest.raises(ValueError, match="text"):
        model(images, None, zones)
    with pytest.raises(ValueError, match="with_text"):
        _cfg(with_text=False)


def test_paper_network_is_unchanged() -> None:
    """arch=lvit builds the paper's LViT: the zone variant adds parameters only around it."""
    torch.manual_seed(0)
    paper = build_model(_cfg(arch="lvit"))
    zones = build_model(_cfg())
    n_paper = sum(p.numel() for p in paper.parameters())
    n_zones = sum(p.numel() for p in zones.parameters())
    c1, c2, c3 = 64, 128, 256
    extra_inc = ZONE_CHANNELS * 9 * c1  # the first conv's two extra input channels
    extra_proj = sum(ZONE_CHANNELS * c + c for c in (c3, c2, c1, c1))
    assert n_zones - n_paper == extra_inc + extra_proj
    assert not any(name.startswith("zone") for name, _ in paper.named_parameters())


def _write_case(folder: Path, name: str, side: str) -> Sample:
    """A 48x48 'chest': grey body, the lesion in the lower half of the patient's ``side`` (left = image right)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = np.full((48, 48), 120, np.uint8)
    mask = np.zeros((48, 48), np.uint8)
    cols = slice(28, 42) if side == "left" else slice(6, 20)
    mask[24:40, cols] = 255
    Image.fromarray(image).save(folder / f"{name}.png")
    Image.fromarray(mask).save(folder / f"mask_{name}.png")
    sentence = LEFT if side == "left" else "Unilateral pulmonary infection, one infected area, all right lung."
    return Sample(f"mask_{name}.png", folder / f"{name}.png", sentence, folder / f"mask_{name}.png")


def test_dataset_prior_follows_the_augmented_image(tmp_path: Path) -> None:
    sample = _write_case(tmp_path, "a", "left")
    plain = LViTDataset([sample], image_size=32, in_channels=1, zones=True)[0]
    assert plain["zones"].shape == (ZONE_CHANNELS, 32, 32)
    np.testing.assert_allclose(plain["zones"].numpy(), zone_prior(LEFT, np.full((32, 32), 120, np.uint8)), atol=1e-6)
    ds = LViTDataset([sample], image_size=32, in_channels=1, zones=True, augment=True, seed=0)
    for epoch in range(12):  # every draw: the claimed zone moves exactly as the mask does
        ds.set_epoch(epoch)
        item = ds[0]
        claimed = item["zones"][0] > 0.5
        lesion = item["mask"][0] > 0.5
        assert (claimed & lesion).sum() >= 0.9 * lesion.sum(), f"epoch {epoch}"
    assert "zones" not in LViTDataset([sample], image_size=32, in_channels=1)[0]


class _Oracle(nn.Module):
    """Predicts exactly the claimed zones (a model that follows the report perfectly)."""

    def __init__(self, cfg: LViTConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, images: torch.Tensor, text: torch.Tensor, zones: torch.Tensor) -> torch.Tensor:
        return 20.0 * (zones[:, :1] - 0.5)


class _Deaf(nn.Module):
    """Ignores the report: the right half of the image, whatever the text says."""

    def __init__(self, cfg: LViTConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, images: torch.Tensor, text: torch.Tensor, zones: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(images[:, :1], -10.0)
        out[..., images.shape[-1] // 2 :] = 10.0
        return out


def _text(sentence: str) -> np.ndarray:
    return np.full((6, 8), float(len(sentence)), np.float32)


def test_steering_metric_separates_a_model_that_follows_the_report_from_one_that_does_not(tmp_path: Path) -> None:
    samples = [_write_case(tmp_path, f"l{i}", "left") for i in range(2)] + [_write_case(tmp_path, "r", "right")]
    samples.append(Sample("mask_b.png", samples[0].image_path, BILATERAL, samples[0].mask_path))
    cfg = _cfg()
    oracle = text_sensitivity(_Oracle(cfg), cfg, samples, _text)
    assert oracle["n"] == 4 and oracle["n_unilateral"] == 3
    assert oracle["side_fraction"]["true"] == pytest.approx(1.0, abs=0.02)
    assert oracle["side_fraction"]["swapped"] == pytest.approx(0.0, abs=0.02)
    assert oracle["dice_unilateral"]["true"] > 0.3 and oracle["dice_unilateral"]["swapped"] < 0.02
    assert oracle["n_empty_pred"]["empty"] == 3  # no report, no prior: the oracle predicts nothing
    deaf = text_sensitivity(_Deaf(cfg), cfg, samples, _text)
    assert deaf["dice"]["true"] == deaf["dice"]["swapped"] == deaf["dice"]["empty"]
    assert deaf["side_fraction"]["true"] == pytest.approx(deaf["side_fraction"]["swapped"])
    assert deaf["side_fraction"]["true"] == pytest.approx(2 / 3, abs=0.02)  # right for 2 left reports, not for 1
    rows = sensitivity_rows(oracle)
    assert [r["report"] for r in rows] == ["true", "swapped", "empty"]
    per_image = {r["name"]: r for r in oracle["per_image"]}
    assert per_image["mask_r.png"]["side"] == "right" and per_image["mask_b.png"]["side"] is None


def test_predictor_renders_the_prior_from_the_sentence() -> None:
    torch.manual_seed(0)
    cfg = _cfg()
    model = build_model(cfg)
    predictor = Predictor(model, cfg, backend="torch", precision="fp32")
    image = np.full((40, 40), 120, np.uint8)
    text = np.zeros((6, 8), np.float32)
    with pytest.raises(ValueError, match="report sentence"):
        predictor.predict([image], text[None])
    a = predictor.predict_one(image, text, LEFT).probability
    b = predictor.predict_one(image, text, swap_sides(LEFT)).probability
    assert a.shape == (40, 40) and not np.allclose(a, b)


def test_one_training_step_uses_the_prior(tmp_path: Path) -> None:
    samples = [_write_case(tmp_path, "a", "left"), _write_case(tmp_path, "b", "right")]
    cfg = _cfg()
    text = {s.sentence: _text(s.sentence) for s in samples} | {"": np.zeros((6, 8), np.float32)}

    class Table(dict):
        dim, length = 8, 6

    trainer = Trainer(
        TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, batch_size=2, save_best=False, save_last=False),
        cfg,
        samples,
        samples,
        text_embedder=Table(text),  # a mapping of features stands in for the text model
    )
    batch = next(iter(trainer.train_loader))
    assert batch["zones"].shape == (2, ZONE_CHANNELS, 32, 32)
    losses = trainer.train_step(batch)
    assert np.isfinite(losses["loss"])
    assert trainer.validate().n == 2


def test_openvino_engine_takes_the_prior_and_matches_eager(tmp_path: Path) -> None:
    """The worker's default engine on a CPU with a serving cache: the three-input network converts exactly."""
    torch.manual_seed(0)
    cfg = _cfg()
    model = build_model(cfg).eval()
    image, text = np.full((40, 40), 120, np.uint8), np.zeros((6, 8), np.float32)
    eager = Predictor(model, cfg, backend="torch", precision="fp32").predict_one(image, text, LEFT).probability
    engine = Predictor(model, cfg, backend="openvino", precision="fp32", cache_dir=tmp_path)
    assert engine.backend == "openvino"
    np.testing.assert_allclose(engine.predict_one(image, text, LEFT).probability, eager, atol=1e-4)
