"""LViT / U-Net: shapes, parameter and MAC counts against the paper, gradients, argument checks, BN folding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ml import LViT, LViTConfig, UNet, build_model
from ml.models.counting import count_macs, count_parameters
from ml.models.fold import fold_batchnorm, fold_conv_bn
from ml.models.lvit import PLAM, ViTToCNN

# Paper Table I / IV (millions, BERT-base text features, D = 768).
PAPER_PARAMS_M = {("T", True): 29.7, ("T", False): 28.0, ("S", True): 54.8, ("B", True): 71.5}
# Our exact counts of all parameters; the paper's counter skips the 188,160 position-embedding values.
EXACT_PARAMS = {("T", True): 29_908_033, ("T", False): 28_204_861, ("S", True): 55_050_433, ("B", True): 71_812_033}
POSITION_EMBEDDING_PARAMS = 196 * (64 + 128 + 256 + 512)


def _cfg(**kwargs: object) -> LViTConfig:
    return LViTConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("variant", "with_text"), list(PAPER_PARAMS_M))
def test_parameter_counts_match_the_paper(variant: str, with_text: bool) -> None:
    model = build_model(_cfg(variant=variant, with_text=with_text, text_dim=768))
    total = count_parameters(model)
    paper_style = count_parameters(model, convention="paper")
    assert total == EXACT_PARAMS[(variant, with_text)]
    assert total - paper_style == POSITION_EMBEDDING_PARAMS
    assert paper_style / 1e6 == pytest.approx(PAPER_PARAMS_M[(variant, with_text)], rel=0.005)


def test_each_transformer_layer_adds_the_same_parameters() -> None:
    t = count_parameters(build_model(_cfg(variant="T", text_dim=768)))
    s = count_parameters(build_model(_cfg(variant="S", text_dim=768)))
    # 12 C^2 + 13 C per layer, in 8 ViT modules (C = 64, 128, 256, 512 twice) ~ 8.38M (paper: ~8.36M)
    per_layer = 2 * sum(12 * c * c + 13 * c for c in (64, 128, 256, 512))
    assert s - t == 3 * per_layer


def test_text_path_adds_1_7m_parameters() -> None:
    with_text = count_parameters(build_model(_cfg(text_dim=768)))
    without = count_parameters(build_model(_cfg(text_dim=768, with_text=False)))
    assert (with_text - without) / 1e6 == pytest.approx(1.7, abs=0.05)


def test_unet_parameter_count_matches_the_paper() -> None:
    model = build_model(_cfg(arch="unet"))
    assert isinstance(model, UNet)
    assert count_parameters(model) == 14_751_873
    assert count_parameters(model) / 1e6 == pytest.approx(14.8, rel=0.005)


def test_macs_per_image() -> None:
    macs = count_macs(build_model(_cfg(variant="T", text_dim=768)))
    assert macs == pytest.approx(27.3e9, rel=0.01)  # paper: 54.1 "GFLOPs" for a batch of 2


@pytest.mark.parametrize(("variant", "with_text"), [("T", True), ("T", False), ("S", True), ("S", False), ("B", True)])
def test_forward_shapes(variant: str, with_text: bool) -> None:
    cfg = _cfg(variant=variant, with_text=with_text, text_dim=32)
    model = build_model(cfg).eval()
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        out = model(images, torch.randn(1, 10, 32)) if with_text else model(images)
    assert out.shape == (1, 1, 224, 224)
    assert torch.isfinite(out).all()


def test_bw_variant_builds_without_text_path() -> None:
    model = build_model(_cfg(variant="B", with_text=False))
    assert model.text is None
    assert all(len(v.vit.blocks) == 6 for v in [*model.down_vits, *model.up_vits])


def test_gray_input_and_multiclass_output() -> None:
    model = build_model(_cfg(in_channels=1, n_classes=2, with_text=False, img_size=64)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 64, 64)).shape == (2, 2, 64, 64)


def test_unet_forward_any_multiple_of_16() -> None:
    model = build_model(_cfg(arch="unet")).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg(variant="T", text_dim=16)).train()
    logits = model(torch.rand(2, 3, 224, 224), torch.randn(2, 10, 16))
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.randint(0, 2, logits.shape).float())
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad}"
    assert sum(int(p.grad.abs().sum() > 0) for p in model.parameters()) == len(list(model.parameters()))


def test_text_contract() -> None:
    text_model = build_model(_cfg(img_size=32, text_dim=8)).eval()
    image_model = build_model(_cfg(img_size=32, with_text=False)).eval()
    images, text = torch.rand(1, 3, 32, 32), torch.randn(1, 10, 8)
    with torch.no_grad():
        text_model(images, text)
        image_model(images)
        with pytest.raises(ValueError, match="needs text"):
            text_model(images)
        with pytest.raises(ValueError, match="without text"):
            image_model(images, text)
        with pytest.raises(ValueError, match="text must be"):
            text_model(images, torch.randn(1, 9, 8))
        with pytest.raises(ValueError, match="images must be"):
            text_model(torch.rand(1, 3, 64, 64), text)
        with pytest.raises(ValueError, match="takes no text"):
            build_model(_cfg(arch="unet"))(images, text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variant": "L"},
        {"arch": "transunet"},
        {"in_channels": 2},
        {"img_size": 200},
        {"img_size": 0},
        {"text_dim": 0},
        {"text_len": -1},
        {"n_classes": 0},
        {"with_text": "yes"},
        {"dropout": 1.0},
        {"text_dim": 7.5},
    ],
)
def test_bad_config_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LViTConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_module_arguments_raise() -> None:
    with pytest.raises(ValueError):
        LViT(_cfg(arch="unet"))
    with pytest.raises(ValueError):
        UNet(_cfg())
    with pytest.raises(ValueError):
        build_model({"variant": "T"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PLAM(0)
    with pytest.raises(ValueError):
        ViTToCNN(64, 0)


def test_config_round_trip_and_names() -> None:
    cfg = _cfg(variant="S", with_text=False, text_dim=768, in_channels=1)
    assert LViTConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.model_name == "LViT-SW"
    assert cfg.depth == 4
    assert _cfg(arch="unet").model_name == "U-Net"
    with pytest.raises(ValueError, match="unknown"):
        LViTConfig.from_dict({**cfg.to_dict(), "depth": 3})


def test_plam_is_per_pixel() -> None:
    """The reference PLAM weights each pixel from that pixel's channels only (not global pooling)."""
    torch.manual_seed(0)
    plam = PLAM(8).eval()
    x = torch.rand(1, 8, 5, 5)
    y = x.clone()
    y[:, :, 2, 3] += 1.0
    with torch.no_grad():
        changed = (plam(y) - plam(x)).abs().sum(1)[0] > 0
    assert changed[2, 3] and changed.sum() == 1


def _randomize_bn(bn: nn.modules.batchnorm._BatchNorm) -> None:
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.5)


@pytest.mark.parametrize(
    ("conv", "bn", "shape"),
    [
        (nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), (2, 4, 7, 7)),
        (nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6), (2, 4, 7, 7)),
        (nn.Conv1d(5, 3, 3, padding=1), nn.BatchNorm1d(3), (2, 5, 11)),
    ],
)
def test_fold_conv_bn(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    _randomize_bn(bn)
    x = torch.randn(shape)
    ref = bn.eval()(conv(x))
    fold_conv_bn(conv, bn)
    assert torch.allclose(conv(x), ref, atol=1e-5)


def test_fold_batchnorm_on_lvit_is_exact() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg(img_size=32, text_dim=8)).eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _randomize_bn(m)
    images, text = torch.rand(2, 3, 32, 32), torch.randn(2, 10, 8)
    with torch.no_grad():
        ref = model(images, text)
        assert fold_batchnorm(model) == 17 + 7 + 4  # ConvBlocks (inc, 2 per down/up), CTBNs (3+3+text), ViTToCNN
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        for m in model.modules():
            if isinstance(m, ViTToCNN):
                m.upsample_first = False
        assert torch.allclose(model(images, text), ref, atol=1e-4)
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(build_model(_cfg(img_size=32)).train())


def test_old_configs_load_with_the_papers_text_length_and_standard_mlp() -> None:
    """A checkpoint written before text_len / mlp_gelu_after_fc2 existed loads as what it was trained with."""
    from ml.config import PAPER_TEXT_LEN

    old = {k: v for k, v in LViTConfig(text_len=20).to_dict().items() if k not in ("text_len", "mlp_gelu_after_fc2")}
    cfg = LViTConfig.from_dict(old)
    assert cfg.text_len == PAPER_TEXT_LEN == 10 and cfg.mlp_gelu_after_fc2 is False


def test_reference_mlp_switch_adds_gelu_after_fc2() -> None:
    """Off by default (the paper); on, every transformer MLP ends in GELU as in the authors' code; same parameters."""
    from ml.models.lvit import Mlp

    cfg = _cfg(img_size=32, in_channels=1)
    torch.manual_seed(0)
    standard = build_model(cfg).eval()
    torch.manual_seed(0)
    reference = build_model(LViTConfig(**{**cfg.to_dict(), "mlp_gelu_after_fc2": True})).eval()
    mlps = [m for m in reference.modules() if isinstance(m, Mlp)]
    assert len(mlps) == 8 and all(m.gelu_after_fc2 for m in mlps)
    assert not any(m.gelu_after_fc2 for m in standard.modules() if isinstance(m, Mlp))
    x = torch.randn(3, 64)
    mlp = mlps[0]
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), torch.nn.functional.gelu(mlp.fc2(mlp.act(mlp.fc1(x)))))
        images, text = torch.rand(1, 1, 32, 32), torch.randn(1, 10, cfg.text_dim)
        assert not torch.allclose(standard(images, text), reference(images, text))
    assert sum(p.numel() for p in standard.parameters()) == sum(p.numel() for p in reference.parameters())
