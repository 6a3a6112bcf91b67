"""Checkpoints, the fast inference path and the Predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ml import LViTConfig, Predictor, build_model, load_checkpoint, load_model, save_checkpoint
from ml.predict import FAST_TOLERANCE, binary_entropy_score, optimize_for_inference

# Input handling is tested on the exact PyTorch engine; the other engines are tested in test_serving.py.
EXACT = {"backend": "torch", "precision": "fp32"}


def _realistic(model: nn.Module, cfg: LViTConfig, seed: int = 0) -> nn.Module:
    """Random model with non-trivial BatchNorm statistics and logits of a trained model's scale (std ~4)."""
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        inputs = _inputs(cfg, 1)
        logits = model(*inputs)
        model.outc.weight.mul_(4.0 / logits.std())
        model.outc.bias.mul_(4.0 / logits.std())
        model.outc.bias.sub_(model(*inputs).mean())
    return model


def _inputs(cfg: LViTConfig, n: int) -> tuple[torch.Tensor, ...]:
    images = torch.rand(n, cfg.in_channels, cfg.img_size, cfg.img_size)
    return (images, torch.randn(n, cfg.text_len, cfg.text_dim)) if cfg.uses_text else (images,)


@pytest.fixture(scope="module")
def small() -> tuple[nn.Module, LViTConfig]:
    cfg = LViTConfig(img_size=64, text_dim=16)
    return _realistic(build_model(cfg), cfg), cfg


def test_checkpoint_round_trip(tmp_path: Path, small: tuple[nn.Module, LViTConfig]) -> None:
    model, cfg = small
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    path = save_checkpoint(tmp_path / "ckpt" / "best.pt", model, cfg, optimizer=optimizer, epoch=3, best_metric=0.8)
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left behind
    ckpt = load_checkpoint(path)
    assert ckpt["config"] == cfg.to_dict() and ckpt["epoch"] == 3 and ckpt["best_metric"] == 0.8
    assert "state" in ckpt["optimizer"]
    loaded, loaded_cfg, _ = load_model(path)
    assert loaded_cfg == cfg
    inputs = _inputs(cfg, 2)
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), model.eval()(*inputs))
    save_checkpoint(path, model, cfg)  # overwriting an existing checkpoint is atomic too
    assert "optimizer" not in load_checkpoint(path)


def test_checkpoint_errors(tmp_path: Path, small: tuple[nn.Module, LViTConfig]) -> None:
    model, cfg = small
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a.pt", model, cfg, model={})
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "a.pt", model, cfg.to_dict())  # type: ignore[arg-type]
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an LViT checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_fast_path_equals_eager_at_224() -> None:
    cfg = LViTConfig(variant="T", text_dim=32)
    model = _realistic(build_model(cfg), cfg)
    inputs = _inputs(cfg, 1)
    fast = optimize_for_inference(model)
    with torch.no_grad():
        eager = model(*inputs)
    with torch.inference_mode():
        out = fast(inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
    assert eager.std() > 1.0  # the comparison is on logits of a realistic scale
    assert (out - eager).abs().max() < FAST_TOLERANCE
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # untouched


def test_fast_path_unet() -> None:
    cfg = LViTConfig(arch="unet")
    model = _realistic(build_model(cfg), LViTConfig(arch="unet", img_size=64))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        eager = model(x)
    with torch.inference_mode():
        out = optimize_for_inference(model)(x.contiguous(memory_format=torch.channels_last))
    assert (out - eager).abs().max() < FAST_TOLERANCE


def test_predictor_returns_full_size_maps(small: tuple[nn.Module, LViTConfig]) -> None:
    model, cfg = small
    predictor = Predictor(model, cfg, **EXACT)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (300, 500, 3), dtype=np.uint8),  # RGB uint8, larger than the model
        rng.random((37, 50), dtype=np.float32),  # gray float, smaller
        torch.rand(3, 64, 64),  # tensor, CHW, model size
        rng.integers(0, 256, (80, 90, 4), dtype=np.uint8),  # RGBA
    ]
    text = torch.randn(len(images), cfg.text_len, cfg.text_dim)
    results = predictor.predict(images, text, batch_size=3)
    assert [r.probability.shape for r in results] == [(300, 500), (37, 50), (64, 64), (80, 90)]
    for r in results:
        assert r.probability.dtype == np.float32 and r.mask.dtype == np.bool_
        assert r.probability.min() >= 0.0 and r.probability.max() <= 1.0
        assert np.array_equal(r.mask, r.probability > 0.5)
        assert 0.0 <= r.uncertainty <= 1.0
    # batching does not change results
    alone = predictor.predict_one(images[1], text[1])
    np.testing.assert_allclose(alone.probability, results[1].probability, atol=1e-5)
    assert alone.uncertainty == pytest.approx(results[1].uncertainty, abs=1e-6)


def test_predictor_input_conventions(small: tuple[nn.Module, LViTConfig]) -> None:
    model, cfg = small
    predictor = Predictor(model, cfg, **EXACT)
    text = torch.randn(cfg.text_len, cfg.text_dim)
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    a = predictor.predict_one(u8, text).probability
    b = predictor.predict_one(u8.astype(np.float32) / 255.0, text).probability  # uint8 == float / 255
    c = predictor.predict_one(np.repeat(u8[:, :, None], 3, axis=2), text).probability  # gray == gray RGB
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    with pytest.raises(ValueError, match="needs text"):
        predictor.predict_one(u8)
    with pytest.raises(ValueError, match="text must be"):
        predictor.predict([u8, u8], torch.randn(3, cfg.text_len, cfg.text_dim))
    with pytest.raises(ValueError, match="images must be"):
        predictor.predict_one(rng.random((4, 5, 2)), text)
    with pytest.raises(ValueError, match="dtype"):
        predictor.predict_one(np.zeros((8, 8), dtype=np.int64), text)


def test_predictor_gray_model_without_text(tmp_path: Path) -> None:
    cfg = LViTConfig(img_size=32, in_channels=1, with_text=False)
    model = _realistic(build_model(cfg), cfg)
    path = save_checkpoint(tmp_path / "m.pt", model, cfg)
    predictor = Predictor.from_checkpoint(path, **EXACT)
    rgb = np.random.default_rng(2).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    batch = np.stack([rgb, rgb])  # a 4-d stack is a batch
    results = predictor.predict(batch)
    assert len(results) == 2 and results[0].probability.shape == (50, 40)
    eager = Predictor.from_checkpoint(path, fast=False).predict(batch)
    np.testing.assert_allclose(results[0].probability, eager[0].probability, atol=1e-4)
    with pytest.raises(ValueError, match="takes no text"):
        predictor.predict(batch, torch.randn(2, 10, 384))


def test_uncertainty_score() -> None:
    half = torch.full((1, 1, 8, 8), 0.5)
    assert binary_entropy_score(half).item() == pytest.approx(1.0)
    assert binary_entropy_score(torch.zeros(1, 1, 8, 8)).item() == pytest.approx(0.0, abs=1e-9)
    scores = [binary_entropy_score(torch.full((1, 4), p)).item() for p in (0.5, 0.7, 0.9, 0.99, 1.0)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert binary_entropy_score(torch.full((1, 4), 0.2)).item() == pytest.approx(
        binary_entropy_score(torch.full((1, 4), 0.8)).item()
    )


def test_constant_half_probability_gives_maximal_uncertainty() -> None:
    cfg = LViTConfig(img_size=32, with_text=False)
    model = build_model(cfg)
    with torch.no_grad():
        model.outc.weight.zero_()
        model.outc.bias.zero_()  # logits == 0 everywhere -> probability 0.5
    for size in [(20, 30), (90, 20)]:  # upsampled and mixed up / down
        result = Predictor(model, cfg, **EXACT).predict_one(np.zeros(size, dtype=np.uint8))
        assert result.uncertainty == pytest.approx(1.0)
        np.testing.assert_allclose(result.probability, 0.5, atol=1e-6)


def test_predictor_bf16_runs_and_is_close(small: tuple[nn.Module, LViTConfig]) -> None:
    """bf16 is opt-in and not exact; on this random model we only check it is in the right neighbourhood."""
    model, cfg = small
    image, text = np.random.default_rng(3).random((64, 64), dtype=np.float32), torch.randn(cfg.text_len, cfg.text_dim)
    ref = Predictor(model, cfg, **EXACT).predict_one(image, text).probability
    out = Predictor(model, cfg, backend="torch", precision="bf16").predict_one(image, text).probability
    assert out.dtype == np.float32
    assert np.abs(out - ref).mean() < 0.1


def test_predictor_bad_arguments(small: tuple[nn.Module, LViTConfig]) -> None:
    model, cfg = small
    with pytest.raises(ValueError):
        Predictor(model, cfg, precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Predictor(model, cfg, threshold=1.0)
    with pytest.raises(ValueError):
        Predictor(model, cfg, fast=False, compile=True)
    with pytest.raises(ValueError):
        Predictor(model, cfg, **EXACT).predict([np.zeros((8, 8))], torch.randn(1, 10, 16), batch_size=0)


def test_inference_bench_rows() -> None:
    from ml.bench import run_inference_bench

    rows = run_inference_bench("T", (1, 2), 2, img_size=32, text_dim=8, memory=False)
    assert [(r["batch_size"], r["mode"]) for r in rows] == [(1, "eager"), (1, "fast"), (2, "eager"), (2, "fast")]
    for r in rows:
        assert r["s_per_image"] > 0 and r["macs_per_image"] > 0 and r["max_abs_logit_diff"] < FAST_TOLERANCE
    with pytest.raises(ValueError):
        run_inference_bench("T", (1,), 1, modes=("fast",))


def test_results_section_rewrite(tmp_path: Path) -> None:
    from ml.bench import write_results_section

    path = tmp_path / "results.md"
    write_results_section(path, "first")
    path.write_text(path.read_text() + "\n## Other (server)\n\nkeep me\n")
    write_results_section(path, "second")
    text = path.read_text()
    assert "second" in text and "first" not in text and "## Other (server)\n\nkeep me" in text
    assert text.count("## Inference (ml)") == 1
