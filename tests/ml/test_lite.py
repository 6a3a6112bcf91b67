"""Torch-free serving (ml.lite): the numpy predictor gives the torch predictor's probabilities and masks.

The resizes are compared with PyTorch's ``F.interpolate`` directly; the whole predictor with a checkpoint served
by ``ml.predict.Predictor`` (OpenVINO float32, the worker's engine on a CPU) and then by ``ml.lite.LitePredictor``
from the manifest the first wrote, on images of other sizes, dtypes and channel counts than the network's. A
subprocess checks that the lite path never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ml import LViTConfig, build_model
from ml.lite import PROB_TOLERANCE, LitePredictor, manifest_path, resize
from ml.predict import Predictor, save_checkpoint
from ml.zones import ZONE_CHANNELS

pytest.importorskip("openvino")

REPO = Path(__file__).resolve().parents[2]
REPORTS = [
    "Unilateral pulmonary infection, one infected area, all left lung.",
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
    "No pulmonary infection.",
    "Unilateral pulmonary infection, one infected area, lower right lung.",
]


@pytest.mark.parametrize(
    ("shape", "size"),
    [((512, 512), (32, 32)), ((37, 53), (32, 32)), ((32, 32), (300, 211)), ((20, 90), (32, 32)), ((32, 7), (32, 32))],
)
def test_resize_equals_torch_interpolate(shape: tuple[int, int], size: tuple[int, int]) -> None:
    """Shrinking (antialiased, as ml.predict does), enlarging (plain bilinear), and a mix of both."""
    x = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    shrink = size[0] < shape[0] or size[1] < shape[1]
    expected = F.interpolate(torch.from_numpy(x)[None], size=size, mode="bilinear", align_corners=False,
                             antialias=shrink)[0].numpy()  # fmt: skip
    got = resize(x, size)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def _zones_model(in_channels: int) -> tuple[nn.Module, LViTConfig]:
    """LViT-T + zones with random weights, BatchNorm statistics and logits at a trained model's scale (std ~4)."""
    cfg = LViTConfig(arch="lvit_zones", img_size=32, text_dim=16, text_len=6, in_channels=in_channels)
    torch.manual_seed(in_channels)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    inputs = (
        torch.rand(2, in_channels, 32, 32, generator=g),
        torch.randn(2, 6, 16, generator=g),
        torch.rand(2, ZONE_CHANNELS, 32, 32, generator=g),
    )
    head = [m for name, m in model.named_modules() if name.endswith("outc")][-1]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        std = model(*inputs).std()
        head.weight.mul_(4.0 / std)
        head.bias.mul_(4.0 / std)
        head.bias.sub_(model(*inputs).mean())
    return model, cfg


def _images(rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.integers(0, 256, (96, 80), dtype=np.uint8),  # larger than the network's input: antialiased shrink
        rng.integers(0, 256, (20, 27, 3), dtype=np.uint8),  # smaller and RGB
        rng.integers(0, 65536, (64, 64), dtype=np.uint16),
        rng.random((40, 33, 4)).astype(np.float32),  # float with alpha
    ]


@pytest.mark.parametrize("in_channels", [1, 3])
def test_lite_predictor_equals_the_torch_predictor(tmp_path: Path, in_channels: int) -> None:
    model, cfg = _zones_model(in_channels)
    ckpt = save_checkpoint(tmp_path / "model.pt", model, cfg)
    digest = "ab" * 32
    cache = tmp_path / "serving"
    assert LitePredictor.load(cache, digest) is None  # nothing converted yet
    predictor = Predictor.from_checkpoint(ckpt, cache_dir=cache, backend="openvino", precision="fp32")
    manifest = predictor.write_lite_manifest(cache, digest)
    assert manifest == manifest_path(cache, digest) and manifest.is_file()
    lite = LitePredictor.load(cache, digest)
    assert lite is not None and lite.cfg == cfg

    rng = np.random.default_rng(in_channels)
    images = _images(rng)
    text = rng.standard_normal((len(images), cfg.text_len, cfg.text_dim)).astype(np.float32)
    expected = predictor.predict(images, text, batch_size=3, sentences=REPORTS)
    got = lite.predict(images, text, batch_size=3, sentences=REPORTS)
    assert len(got) == len(expected)
    fractions = [e.mask.mean() for e in expected]
    assert max(fractions) > 0.05 and min(fractions) < 0.95  # both classes appear: the comparison says something
    for g, e, image in zip(got, expected, images, strict=True):
        assert g.probability.shape == e.probability.shape == image.shape[:2]
        assert g.probability.dtype == np.float32 and g.mask.dtype == bool
        diff = np.abs(g.probability - e.probability)
        assert diff.max() < PROB_TOLERANCE
        near = np.abs(e.probability - predictor.threshold) < PROB_TOLERANCE
        assert np.array_equal(g.mask[~near], e.mask[~near])
        assert g.uncertainty == pytest.approx(e.uncertainty, abs=1e-5)


def test_lite_predictor_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    model, cfg = _zones_model(1)
    ckpt = save_checkpoint(tmp_path / "model.pt", model, cfg)
    cache = tmp_path / "serving"
    digest = "cd" * 32
    # a torch engine has no IR to serve: no manifest
    torch_predictor = Predictor.from_checkpoint(ckpt, cache_dir=cache, backend="torch")
    assert torch_predictor.write_lite_manifest(cache, digest) is None
    assert not manifest_path(cache, digest).exists()
    predictor = Predictor.from_checkpoint(ckpt, cache_dir=cache, backend="openvino", precision="fp32")
    path = predictor.write_lite_manifest(cache, digest)
    data = json.loads(path.read_text())
    # written by another OpenVINO version: not used (the torch predictor converts again)
    path.write_text(json.dumps({**data, "openvino": "0.0.0"}))
    assert LitePredictor.load(cache, digest) is None
    # its IR removed from the cache: not used
    path.write_text(json.dumps(data))
    assert LitePredictor.load(cache, digest) is not None
    (cache / data["ir"]).with_suffix(".bin").unlink()
    assert LitePredictor.load(cache, digest) is None
    with pytest.raises(ValueError, match="64 lowercase hex"):
        manifest_path(cache, "../../etc")
    other = tmp_path / "other"
    Predictor.from_checkpoint(ckpt, cache_dir=other, backend="openvino", precision="fp32").write_lite_manifest(
        other, digest
    )
    lite = LitePredictor.load(other, digest)
    assert lite is not None
    with pytest.raises(ValueError, match="one report sentence per image"):
        lite.predict([np.zeros((8, 8), np.uint8)], np.zeros((1, 6, 16), np.float32))
    with pytest.raises(ValueError, match=r"text must be \(1, 6, 16\)"):
        lite.predict([np.zeros((8, 8), np.uint8)], np.zeros((1, 5, 16), np.float32), sentences=REPORTS[:1])


def test_lite_serving_does_not_import_torch(tmp_path: Path) -> None:
    model, cfg = _zones_model(1)
    ckpt = save_checkpoint(tmp_path / "model.pt", model, cfg)
    cache = tmp_path / "serving"
    digest = "ef" * 32
    predictor = Predictor.from_checkpoint(ckpt, cache_dir=cache, backend="openvino", precision="fp32")
    predictor.write_lite_manifest(cache, digest)
    image = np.random.default_rng(3).integers(0, 256, (50, 50), dtype=np.uint8)
    text = np.random.default_rng(4).standard_normal((1, cfg.text_len, cfg.text_dim)).astype(np.float32)
    expected = predictor.predict([image], text, sentences=REPORTS[:1])[0]
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "text.npy", text)
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from ml.lite import LitePredictor
        lite = LitePredictor.load({str(cache)!r}, {digest!r})
        pred = lite.predict([np.load({str(tmp_path / "image.npy")!r})], np.load({str(tmp_path / "text.npy")!r}),
                            sentences={REPORTS[:1]!r})[0]
        np.save({str(tmp_path / "prob.npy")!r}, pred.probability)
        print("torch imported:", "torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "torch imported: False" in out.stdout
    assert np.abs(np.load(tmp_path / "prob.npy") - expected.probability).max() < PROB_TOLERANCE


def test_a_bf16_engine_is_checked_against_the_float32_compile_at_every_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 manifests load only on a CPU with native bf16, compile the IR twice and compare (as ml.serving checks a
    bf16 engine against eager at every start); a failed check raises, so the worker loads through torch instead."""
    import ml.lite
    from ml.cpu import CPUFeatures, cpu_features

    model, cfg = _zones_model(1)
    ckpt = save_checkpoint(tmp_path / "model.pt", model, cfg)
    cache = tmp_path / "serving"
    digest = "0f" * 32
    predictor = Predictor.from_checkpoint(ckpt, cache_dir=cache, backend="openvino", precision="fp32")
    manifest = predictor.write_lite_manifest(cache, digest)
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "precision": "bf16"}))  # as a bf16 Predictor records it
    monkeypatch.setattr(ml.lite, "cpu_features", lambda: CPUFeatures(frozenset({"avx2", "fma"})))
    assert LitePredictor.load(cache, digest) is None  # this CPU computes no bf16 natively
    if not cpu_features().bf16:
        pytest.skip("the bf16 compile itself needs a CPU with AVX512-BF16 or AMX")
    monkeypatch.setattr(ml.lite, "cpu_features", cpu_features)
    lite = LitePredictor.load(cache, digest)
    assert lite is not None and lite.precision == "bf16"
    exact = LitePredictor(cache / data["ir"], cfg, threshold=0.5)
    image = np.random.default_rng(5).integers(0, 256, (64, 64), dtype=np.uint8)
    text = np.random.default_rng(6).standard_normal((1, cfg.text_len, cfg.text_dim)).astype(np.float32)
    fast = lite.predict([image], text, sentences=REPORTS[:1])[0]
    ref = exact.predict([image], text, sentences=REPORTS[:1])[0]
    assert np.abs(fast.probability - ref.probability).mean() < 0.05
    monkeypatch.setattr(ml.lite, "bf16_ok", lambda mean_abs_diff, ref_std: False)  # as a faulty bf16 compile
    with pytest.raises(ml.lite.EngineMismatchError, match="bf16 logits differ"):
        LitePredictor.load(cache, digest)
