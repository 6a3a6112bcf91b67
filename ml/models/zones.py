"""LViT with the report as a spatial prompt (``arch="lvit_zones"``): the paper's LViT, text path included, plus the
report's lung-zone prior (:func:`ml.zones.zone_prior`, ``ZONE_CHANNELS`` maps) in two places:

- as extra input channels of the first convolution (``inc`` takes ``in_channels + ZONE_CHANNELS``), so the CNN and,
  through it, the ViT branch see where the report puts the lesion;
- added after every decoder stage through a 1x1 convolution of the prior resized to that stage (a per-scale
  spatial bias), so the location reaches the logits directly instead of being washed out by the encoder.

Why: the paper's single text injection at level 1 gave identical masks for "left" and "right" at this data size
(docs/results.md, "Text steering"). A report that does not parse (free text) gives an all-zero prior: the model is
then LViT with its text path only. ``arch="lvit"`` stays exactly the paper's network; this class wraps one.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ml.config import LViTConfig
from ml.models.lvit import CNN_WIDTHS, ConvBlock, LViT
from ml.zones import ZONE_CHANNELS


class LViTZones(nn.Module):
    """``forward(images, text=None, zones=None)``: images (B, C_in, S, S); text (B, L, D) when ``cfg.with_text``;
    zones (B, ZONE_CHANNELS, S, S) in [0, 1] (``None``: no prior, all zeros). Returns logits (B, n_classes, S, S).
    """

    def __init__(self, cfg: LViTConfig) -> None:
        super().__init__()
        if not isinstance(cfg, LViTConfig):
            raise ValueError(f"cfg must be an LViTConfig, got {type(cfg).__name__}")
        if cfg.arch != "lvit_zones":
            raise ValueError(f"LViTZones needs cfg.arch == 'lvit_zones', got {cfg.arch!r}")
        self.cfg = cfg
        c1, c2, c3, _ = CNN_WIDTHS
        self.lvit = LViT(replace(cfg, arch="lvit"))
        self.lvit.inc = ConvBlock(cfg.in_channels + ZONE_CHANNELS, c1)  # image + prior channels
        # decoder stages' outputs: up4 (c3 @ S/8), up3 (c2 @ S/4), up2 (c1 @ S/2), up1 (c1 @ S)
        self.zone_proj = nn.ModuleList(nn.Conv2d(ZONE_CHANNELS, c, kernel_size=1) for c in (c3, c2, c1, c1))

    def forward(
        self, images: torch.Tensor, text: torch.Tensor | None = None, zones: torch.Tensor | None = None
    ) -> torch.Tensor:
        net = self.lvit
        b, _, h, w = images.shape
        if zones is None:
            zones = images.new_zeros(b, ZONE_CHANNELS, h, w)
        if zones.ndim != 4 or tuple(zones.shape) != (b, ZONE_CHANNELS, h, w):
            raise ValueError(f"zones must be ({b}, {ZONE_CHANNELS}, {h}, {w}), got {tuple(zones.shape)}")
        zones = zones.to(images.dtype)
        net._check_inputs(images, text)  # the image part and the text, as LViT checks them
        x1 = net.inc(torch.cat([images, zones], dim=1))
        x2 = net.down1(x1)
        x3 = net.down2(x2)
        x4 = net.down3(x3)
        x5 = net.down4(x4)

        text_tokens = net.text(text.to(images.dtype)) if net.text is not None else None
        d1, d2, d3, d4 = net.down_vits
        y1 = d1(x1, text_tokens=text_tokens)
        y2 = d2(x2, y1)
        y3 = d3(x3, y2)
        y4 = d4(x4, y3)
        u1, u2, u3, u4 = net.up_vits
        y4 = u4(y4)
        y3 = u3(y3, y4)
        y2 = u2(y2, y3)
        y1 = u1(y1, y2)
        r1, r2, r3, r4 = net.vit_to_cnn
        x1 = x1 + r1(y1)
        x2 = x2 + r2(y2)
        x3 = x3 + r3(y3)
        x4 = x4 + r4(y4)

        x = x5
        for up, skip, proj in zip((net.up4, net.up3, net.up2, net.up1), (x4, x3, x2, x1), self.zone_proj, strict=True):
            x = up(x, skip)  # (B, C, S/8 .. S, ...)
            prior = zones if x.shape[-1] == w else F.interpolate(zones, size=x.shape[-2:], mode="area")
            x = x + proj(prior)
        return net.outc(x)
