"""Inference engines (ml.serving): every fast path's masks equal eager's within its stated bound.

- float32 engines (PyTorch fast path, OpenVINO f32, ONNX Runtime) on LViT: logits within ``FP32_TOLERANCE``
  of the eager model's, at a trained model's logit scale;
- bf16 / int8 engines on a *trained* network: masks at Dice >= 0.995 against eager's (random weights are no
  test for them: their logits sit near 0 everywhere, so any rounding flips pixels). The network is a small
  segmenter built from LViT's blocks (ConvBlock, a transformer-style Linear, a 1x1 head) trained here in a
  second; the trained LViT checkpoints are measured by ``bench/bench_serving_quality.py`` (docs/results.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ml import LViTConfig, Predictor, build_model
from ml.models.lvit import ConvBlock
from ml.serving import (
    FP32_TOLERANCE,
    CPUFeatures,
    EngineMismatchError,
    OpenVINOEngine,
    TorchEngine,
    build_engine,
    cpu_features,
    default_engine,
    verify_engine,
)

MASK_DICE_BOUND = 0.995


def _realistic_lvit(cfg: LViTConfig, seed: int = 0) -> nn.Module:
    """Random LViT with non-trivial BatchNorm statistics and logits of a trained model's scale (std ~4)."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        inputs = _lvit_inputs(cfg, 2)
        std = model(*inputs).std()
        model.outc.weight.mul_(4.0 / std)
        model.outc.bias.mul_(4.0 / std)
        model.outc.bias.sub_(model(*inputs).mean())
    return model


def _lvit_inputs(cfg: LViTConfig, n: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, cfg.in_channels, cfg.img_size, cfg.img_size, generator=g)
    return (images, torch.randn(n, cfg.text_len, cfg.text_dim, generator=g)) if cfg.uses_text else (images,)


class TinySegmenter(nn.Module):
    """Two ConvBlocks (BatchNorm folds), a per-pixel Linear + GELU (int8 quantizes it), a 1x1 logit head."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvBlock(1, 16), ConvBlock(16, 16))
        self.mix = nn.Linear(16, 16)
        self.act = nn.GELU()
        self.head = nn.Conv2d(16, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        h = h + self.act(self.mix(h.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return self.head(h)


def _disks(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images (n, 1, size, size) with one bright disk each, and the disks' masks."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(n, 2, generator=g) * size * 0.5 + size * 0.25
    radius = torch.rand(n, generator=g) * size * 0.15 + size * 0.12
    dist2 = (yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2
    masks = (dist2 <= radius[:, None, None] ** 2).float()
    images = 0.4 * torch.rand(n, size, size, generator=g) + 0.4 * masks
    return images[:, None], masks[:, None]


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A TinySegmenter trained on disks until its masks are right (Dice > 0.9 on held-out images)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = TinySegmenter()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        x, m = _disks(16, 32, g)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, m = _disks(32, 32, g)
    with torch.no_grad():
        pred = model(x) > 0
    assert _dice(pred.numpy(), m.bool().numpy()) > 0.9  # it is trained
    return model, x, m


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _eager(model: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(*inputs)


# ------------------------------------------------------------------------------------------------ choice


def test_cpu_features_and_default_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    amx = CPUFeatures(frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}))
    avx2 = CPUFeatures(frozenset({"avx2", "fma"}))
    zen4 = CPUFeatures(frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))  # native bf16 without AMX
    assert amx.bf16 and amx.amx_bf16 and amx.amx_int8 and not avx2.bf16
    assert zen4.bf16 and not zen4.amx_bf16
    assert "amx_bf16" in amx.summary()
    monkeypatch.setattr("ml.serving.backend_available", lambda name: True)
    assert default_engine("cpu", amx) == ("openvino", "bf16")
    assert default_engine("cpu", avx2) == ("openvino", "fp32")  # exact where bf16 is not native
    assert default_engine("cpu", zen4) == ("openvino", "bf16")
    assert default_engine("cpu", amx, cache=False) == ("torch", "fp32")  # no place to keep the conversion
    assert default_engine("cuda", amx) == ("torch", "fp32")
    monkeypatch.setattr("ml.serving.backend_available", lambda name: name == "torch")
    assert default_engine("cpu", amx) == ("torch", "fp32")  # OpenVINO not installed
    assert isinstance(cpu_features(), CPUFeatures)  # this machine's, read not assumed


def test_bad_choices_are_refused() -> None:
    model = TinySegmenter().eval()
    example = (torch.zeros(1, 1, 16, 16),)
    with pytest.raises(ValueError, match="backend"):
        build_engine(model, example, backend="tensorrt")
    with pytest.raises(ValueError, match="supports precisions"):
        build_engine(model, example, backend="onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="torch backend"):
        build_engine(model, example, backend="openvino", fast=False)


# ------------------------------------------------------------------------------------------ float32: exact


@pytest.mark.parametrize("backend", ["torch", "openvino", "onnxruntime"])
def test_fp32_engines_equal_eager_on_lvit(backend: str, tmp_path: Path) -> None:
    cfg = LViTConfig(img_size=32, text_dim=16, text_len=4)
    model = _realistic_lvit(cfg)
    engine = build_engine(model, _lvit_inputs(cfg, 1), backend=backend, precision="fp32", cache_dir=tmp_path)
    assert (engine.backend, engine.precision) == (backend, "fp32")
    inputs = _lvit_inputs(cfg, 3)  # a batch size the converted model never saw: dynamic batch
    ref = _eager(model, *inputs)
    images = inputs[0].contiguous(memory_format=torch.channels_last) if engine.channels_last else inputs[0]
    out = engine(images, *inputs[1:])
    assert ref.std() > 1.0
    assert (out - ref).abs().max() < FP32_TOLERANCE
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model itself is untouched


def test_converted_model_is_cached(tmp_path: Path, trained: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    model, x, _ = trained
    first = OpenVINOEngine(model, x[:1], cache_dir=tmp_path)
    again = OpenVINOEngine(model, x[:1], cache_dir=tmp_path)
    assert first.converted and not again.converted  # the second start reads the IR
    assert torch.equal(first(x), again(x))
    other = TinySegmenter().eval()
    assert OpenVINOEngine(other, x[:1], cache_dir=tmp_path).converted  # other weights: another key
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]  # no half-written files


def test_a_converted_model_is_verified_once_per_cache(
    tmp_path: Path, trained: tuple[nn.Module, torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The float32 eager comparison runs when the file is converted (and whenever no kept cache records a pass); a
    later start reading the same verified file skips it; a file that never passed is verified again; bf16 always."""
    import ml.serving as serving

    model, x, _ = trained
    calls: list[int] = []
    real = serving.verify_engine
    monkeypatch.setattr(serving, "verify_engine", lambda *a, **k: calls.append(1) or real(*a, **k))
    build_engine(model, x[:1], backend="openvino", precision="fp32", cache_dir=tmp_path)
    assert len(calls) == 1 and len(list(tmp_path.glob("*.verified-fp32"))) == 1
    again = build_engine(model, x[:1], backend="openvino", precision="fp32", cache_dir=tmp_path)
    assert len(calls) == 1 and not again.converted  # read from the cache, verified before: no eager forward
    next(tmp_path.glob("*.verified-fp32")).unlink()
    build_engine(model, x[:1], backend="openvino", precision="fp32", cache_dir=tmp_path)
    assert len(calls) == 2  # no record of a pass: verified again
    build_engine(model, x[:1], backend="openvino", precision="fp32")  # no kept cache: always verified
    assert len(calls) == 3
    if cpu_features().bf16:  # bf16: at every start, recorded or not
        build_engine(model, x[:1], backend="openvino", precision="bf16", cache_dir=tmp_path)
        build_engine(model, x[:1], backend="openvino", precision="bf16", cache_dir=tmp_path)
        assert len(calls) == 5


# ----------------------------------------------------------------------------------- bf16 / int8: masks


@pytest.mark.parametrize(
    ("backend", "precision"), [("torch", "bf16"), ("torch", "int8"), ("openvino", "bf16"), ("openvino", "fp32")]
)
def test_masks_of_a_trained_network_equal_eager(
    backend: str, precision: str, trained: tuple[nn.Module, torch.Tensor, torch.Tensor]
) -> None:
    if precision == "bf16" and not cpu_features().bf16:
        pytest.skip("bf16 needs AVX512-BF16 or AMX; this CPU has neither")
    model, x, _ = trained
    engine = build_engine(model, x[:1], backend=backend, precision=precision)
    ref = _eager(model, x) > 0
    images = x.contiguous(memory_format=torch.channels_last) if engine.channels_last else x
    out = engine(images) > 0
    per_image = [_dice(a.numpy(), b.numpy()) for a, b in zip(out, ref, strict=True)]
    assert float(np.mean(per_image)) >= MASK_DICE_BOUND


# -------------------------------------------------------------------------------------- verification


def test_verification_catches_a_wrong_engine(
    trained: tuple[nn.Module, torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x, _ = trained
    engine = build_engine(model, x[:1], backend="openvino", precision="fp32")
    assert verify_engine(engine, model, x[:1]) < FP32_TOLERANCE
    original = OpenVINOEngine.__call__
    monkeypatch.setattr(OpenVINOEngine, "__call__", lambda self, *a: original(self, *a) + 0.5)  # a faulty converter
    with pytest.raises(EngineMismatchError, match="differ from eager"):
        verify_engine(engine, model, x[:1])
    with pytest.raises(EngineMismatchError):  # an explicit choice fails loudly
        build_engine(model, x[:1], backend="openvino", precision="fp32")
    fallback = build_engine(model, x[:1], backend="auto", precision="fp32")  # auto keeps serving, exactly
    assert isinstance(fallback, TorchEngine) and fallback.precision == "fp32"


def test_predictor_default_engine_and_warm_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = LViTConfig(img_size=32, text_dim=16, text_len=4)
    model = _realistic_lvit(cfg)
    monkeypatch.delenv("LVIT_SERVING_CACHE", raising=False)
    assert (Predictor(model, cfg).backend, Predictor(model, cfg).precision) == ("torch", "fp32")  # no cache
    predictor = Predictor(model, cfg, cache_dir=tmp_path)
    expected = default_engine("cpu")
    assert (predictor.backend, predictor.precision) == expected
    assert predictor.describe()["backend"] == expected[0]
    assert predictor.warm_up((1, 2)) > 0
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    text = torch.randn(cfg.text_len, cfg.text_dim)
    fast = predictor.predict_one(image, text)
    eager = Predictor(model, cfg, fast=False).predict_one(image, text)
    assert fast.probability.shape == eager.probability.shape == (40, 50)
    diff = np.abs(fast.probability - eager.probability)
    if predictor.precision == "fp32":
        assert diff.max() < FP32_TOLERANCE
    else:  # random weights: only the verification bound applies (masks are checked on a trained network above)
        assert diff.mean() < 0.05
