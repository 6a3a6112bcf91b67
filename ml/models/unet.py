"""The paper's U-Net baseline (14.8M parameters in Table I).

Classic U-Net 64-128-256-512-512 built from the same Conv3x3-BN-ReLU blocks as LViT's CNN branch. Decoder
upsampling is a learned ConvTranspose2d(C, C, 2, stride 2), as in the authors' baseline (``nets/UNet.py``);
those four layers hold 1.4M parameters, without them (nearest upsampling) the network has 13.4M and would
not match the paper's count. With 3 input channels and 1 class: 14,751,873 parameters (paper: 14.8M).
"""

from __future__ import annotations

import torch
from torch import nn

from ml.config import LViTConfig
from ml.models.lvit import CNN_WIDTHS, ConvBlock, DownBlock


class UNetUpBlock(nn.Module):
    """ConvTranspose 2x up, concat [up, skip], two ConvBlocks: (B, C_x, H, W) + skip -> (B, C_out, 2H, 2W)."""

    def __init__(self, up_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(up_channels, up_channels, kernel_size=2, stride=2)
        self.convs = nn.Sequential(
            ConvBlock(up_channels + skip_channels, out_channels), ConvBlock(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net baseline: ``forward(images)`` with images (B, C_in, S, S), S a multiple of 16 -> logits (B, K, S, S).

    Built from an ``LViTConfig`` with ``arch="unet"`` (only ``in_channels``, ``n_classes`` and ``img_size``
    matter; the network itself is fully convolutional). Passing text raises ``ValueError``.
    """

    def __init__(self, cfg: LViTConfig) -> None:
        super().__init__()
        if not isinstance(cfg, LViTConfig):
            raise ValueError(f"cfg must be an LViTConfig, got {type(cfg).__name__}")
        if cfg.arch != "unet":
            raise ValueError(f"UNet needs cfg.arch == 'unet', got {cfg.arch!r}")
        self.cfg = cfg
        c1, c2, c3, c4 = CNN_WIDTHS
        self.inc = ConvBlock(cfg.in_channels, c1)  # (B, 64, S, S)
        self.down1 = DownBlock(c1, c2)  # (B, 128, S/2, S/2)
        self.down2 = DownBlock(c2, c3)  # (B, 256, S/4, S/4)
        self.down3 = DownBlock(c3, c4)  # (B, 512, S/8, S/8)
        self.down4 = DownBlock(c4, c4)  # (B, 512, S/16, S/16)
        self.up4 = UNetUpBlock(c4, c4, c3)  # 1024 -> 256
        self.up3 = UNetUpBlock(c3, c3, c2)  # 512 -> 128
        self.up2 = UNetUpBlock(c2, c2, c1)  # 256 -> 64
        self.up1 = UNetUpBlock(c1, c1, c1)  # 128 -> 64
        self.outc = nn.Conv2d(c1, cfg.n_classes, kernel_size=1)

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        if text is not None:
            raise ValueError("U-Net takes no text; call model(images)")
        cfg = self.cfg
        if images.ndim != 4 or images.shape[1] != cfg.in_channels or images.shape[2] % 16 or images.shape[3] % 16:
            raise ValueError(
                f"images must be (B, {cfg.in_channels}, H, W) with H, W multiples of 16, got {tuple(images.shape)}"
            )
        x1 = self.inc(images)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up4(x5, x4)
        x = self.up3(x, x3)
        x = self.up2(x, x2)
        x = self.up1(x, x1)
        return self.outc(x)  # (B, n_classes, S, S) logits
