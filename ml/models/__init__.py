"""Networks: LViT, the U-Net baseline, and ``build_model`` which picks one from a config."""

from __future__ import annotations

from torch import nn

from ml.config import LViTConfig
from ml.models.lvit import LViT
from ml.models.unet import UNet
from ml.models.zones import LViTZones


def build_model(cfg: LViTConfig) -> nn.Module:
    """Build the network ``cfg.arch`` names (``"lvit"``, ``"unet"`` or ``"lvit_zones"``), freshly initialised."""
    if not isinstance(cfg, LViTConfig):
        raise ValueError(f"cfg must be an LViTConfig, got {type(cfg).__name__}")
    if cfg.arch == "unet":
        return UNet(cfg)
    if cfg.arch == "lvit_zones":
        return LViTZones(cfg)
    return LViT(cfg)


__all__ = ["LViT", "LViTZones", "UNet", "build_model"]
