"""LViT: a U-shaped CNN branch and a U-shaped ViT branch, with text entering the first ViT level.

Follows ``docs/LVIT.md`` (which was read off the authors' reference implementation). Only modules that
run are built, so ``parameters()`` counts what the network uses (the reference class also builds unused
modules and reports 39.9M for LViT-T).

Shapes below are for the default 224x224 input; every ViT level has ``(img_size / 16) ** 2`` = 196 tokens.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ml.config import LViTConfig

CNN_WIDTHS = (64, 128, 256, 512)  # channels of x1..x4; x5 has 512 as well
PATCH_SIZES = (16, 8, 4, 2)  # patch size = stride per ViT level, so every level has the same token grid
NUM_HEADS = 8
MLP_RATIO = 4
TEXT_WIDTHS = (512, 256, 128, 64)  # text Conv1d stack D -> 512 -> 256 -> 128 -> 64


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


# --------------------------------------------------------------------------------------------- CNN branch


class ConvBlock(nn.Module):
    """Conv3x3 + BatchNorm + ReLU, the unit of the CNN branch (and of the U-Net baseline)."""

    conv_then_norm = True  # ``norm`` consumes ``conv``'s output directly: ml.models.fold may fold it

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))  # (B, C_out, H, W)


class DownBlock(nn.Module):
    """MaxPool 2x2 then two ConvBlocks: (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.convs = nn.Sequential(ConvBlock(in_channels, out_channels), ConvBlock(out_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.pool(x))


class PLAM(nn.Module):
    """Pixel-Level Attention Module on a skip connection.

    Computed as the reference code does: two parallel Conv1x1 (C->C, no bias) + ReLU; per-pixel *channel*
    mean of one branch and channel max of the other give two (B, 1, H, W) maps; [avg, max, avg + max]
    goes through a per-pixel MLP 3 -> 6 -> 1 (ReLU between, no sigmoid) and the result scales the input.

    Note: the paper's Fig. 2(b) labels the branches GAP / GMP (global pooling, CBAM style), which would give
    per-channel weights; the reference computes per-pixel statistics over channels instead. We keep the
    reference behaviour (it is what the published numbers were produced with).
    """

    def __init__(self, channels: int, hidden: int = 6) -> None:
        super().__init__()
        _check_positive(channels=channels, hidden=hidden)
        self.conv_avg = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.conv_max = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        # The per-pixel MLP as 1x1 convolutions (same weights as Linear(3, 6) / Linear(6, 1)).
        self.mlp = nn.Sequential(nn.Conv2d(3, hidden, kernel_size=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = F.relu(self.conv_avg(x)).mean(dim=1, keepdim=True)  # (B, 1, H, W)
        mx = F.relu(self.conv_max(x)).amax(dim=1, keepdim=True)  # (B, 1, H, W)
        weight = self.mlp(torch.cat([avg, mx, avg + mx], dim=1))  # (B, 1, H, W)
        return x * weight  # (B, C, H, W)


class UpBlock(nn.Module):
    """Nearest 2x upsampling, PLAM on the skip, concat [skip, up], two ConvBlocks.

    ``in_channels`` is the width after concatenation (skip + upsampled), as in the spec's table
    (1024 -> 256, 512 -> 128, 256 -> 64, 128 -> 64).
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int, use_plam: bool = True) -> None:
        super().__init__()
        if skip_channels >= in_channels:
            raise ValueError(f"skip_channels ({skip_channels}) must be smaller than in_channels ({in_channels})")
        self.plam = PLAM(skip_channels) if use_plam else nn.Identity()
        self.convs = nn.Sequential(ConvBlock(in_channels, out_channels), ConvBlock(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C_x, 2H, 2W)
        return self.convs(torch.cat([self.plam(skip), up], dim=1))  # (B, C_out, 2H, 2W)


# --------------------------------------------------------------------------------------------- ViT branch


class CTBN(nn.Module):
    """Conv1d (k=3, p=1) + BatchNorm1d + ReLU on (B, C_in, L) -> (B, C_out, L).

    Used over tokens (channels = feature width, L = tokens) to halve / merge widths between ViT levels,
    and over text (channels = word positions, L = feature width) to map L words to the patch tokens.
    """

    conv_then_norm = True

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class PatchEmbed(nn.Module):
    """Conv(C, C, k=p, s=p) + learnable position embedding + dropout: (B, C, H, W) -> (B, N, C)."""

    def __init__(self, channels: int, patch_size: int, num_tokens: int, dropout: float = 0.1) -> None:
        super().__init__()
        _check_positive(channels=channels, patch_size=patch_size, num_tokens=num_tokens)
        self.proj = nn.Conv2d(channels, channels, kernel_size=patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.zeros(1, num_tokens, channels))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, C)
        return self.drop(x + self.pos)


class Attention(nn.Module):
    """Multi-head self-attention with a qkv bias: (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, num_heads: int = NUM_HEADS) -> None:
        super().__init__()
        _check_positive(dim=dim, num_heads=num_heads)
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, C / heads)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, (B, heads, N, C / heads)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout, hidden = 4 * dim.

    The reference applies a second GELU after the output projection; the spec (and standard ViT) does not.
    ``gelu_after_fc2 = True`` (``LViTConfig.mlp_gelu_after_fc2``) does it as the reference does.
    """

    gelu_after_fc2 = False

    def __init__(self, dim: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.drop(self.act(self.fc1(x))))
        return self.drop(self.act(x) if self.gelu_after_fc2 else x)


class TransformerBlock(nn.Module):
    """Pre-LN transformer layer: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int = NUM_HEADS, mlp_ratio: int = MLP_RATIO, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A stack of ``depth`` transformer layers (1 / 4 / 6 for LViT-T / S / B): (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, depth: int, num_heads: int = NUM_HEADS, dropout: float = 0.1) -> None:
        super().__init__()
        _check_positive(depth=depth)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, num_heads, MLP_RATIO, dropout) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class DownViT(nn.Module):
    """One level of the ViT encoder.

    Level 1 (``merge_previous=False``): ``y1 = ViT(embed(x1) + text_tokens)`` (text optional).
    Levels 2..4: ``y_i = concat(CTBN(ViT(embed(x_i))), y_{i-1})`` where CTBN halves the width over tokens,
    so ``y_i`` has ``dim`` channels again (dim/2 from this level + dim/2 carried from the previous one).
    """

    def __init__(
        self, dim: int, patch_size: int, num_tokens: int, depth: int, merge_previous: bool, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if merge_previous and dim % 2:
            raise ValueError(f"dim must be even when merging the previous level, got {dim}")
        self.embed = PatchEmbed(dim, patch_size, num_tokens, dropout)
        self.vit = ViT(dim, depth, NUM_HEADS, dropout)
        self.reduce = CTBN(dim, dim // 2) if merge_previous else None

    def forward(
        self, x: torch.Tensor, previous: torch.Tensor | None = None, text_tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens = self.embed(x)  # (B, N, C)
        if text_tokens is not None:
            tokens = tokens + text_tokens  # (B, N, C)
        y = self.vit(tokens)  # (B, N, C)
        if self.reduce is None:
            return y
        if previous is None:
            raise ValueError("levels 2..4 need the previous level's tokens")
        y = self.reduce(y.transpose(1, 2)).transpose(1, 2)  # (B, N, C/2)
        return torch.cat([y, previous], dim=2)  # (B, N, C)


class UpViT(nn.Module):
    """One level of the ViT decoder: ``y_i' = ViT(y_i) + CTBN2(y_{i+1}')``; the deepest level has no CTBN2.

    CTBN2 is Conv1d(2C -> C, k=3) over tokens + BN + ReLU (the deeper level is twice as wide).
    """

    def __init__(self, dim: int, depth: int, from_deeper: bool, dropout: float = 0.1) -> None:
        super().__init__()
        self.vit = ViT(dim, depth, NUM_HEADS, dropout)
        self.merge = CTBN(2 * dim, dim) if from_deeper else None

    def forward(self, y: torch.Tensor, deeper: torch.Tensor | None = None) -> torch.Tensor:
        out = self.vit(y)  # (B, N, C)
        if self.merge is None:
            return out
        if deeper is None:
            raise ValueError("levels 1..3 need the deeper level's tokens")
        return out + self.merge(deeper.transpose(1, 2)).transpose(1, 2)  # (B, N, C)


class ViTToCNN(nn.Module):
    """CNN-ViT interaction: tokens (B, N, C) -> (B, C, g, g) -> nearest upsample by the patch size ->
    Conv1x1 + BN + ReLU -> (B, C, g*p, g*p), which the caller adds to the CNN feature map.

    The 1x1 conv, BN and ReLU act per pixel and so commute with nearest upsampling; the fast inference path
    sets ``upsample_first = False`` to run them on the g x g grid (identical result, ``patch**2`` fewer MACs).
    """

    conv_then_norm = True

    def __init__(self, channels: int, patch_size: int) -> None:
        super().__init__()
        _check_positive(channels=channels, patch_size=patch_size)
        self.patch_size = patch_size
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)
        self.upsample_first = True

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        grid = math.isqrt(n)
        x = tokens.transpose(1, 2).reshape(b, c, grid, grid)  # (B, C, g, g)
        if self.upsample_first:
            x = F.interpolate(x, scale_factor=float(self.patch_size), mode="nearest")
            return self.act(self.norm(self.conv(x)))  # (B, C, g*p, g*p)
        x = self.act(self.norm(self.conv(x)))
        return F.interpolate(x, scale_factor=float(self.patch_size), mode="nearest")


class TextPath(nn.Module):
    """Word features (B, L, D) -> tokens (B, N, 64) added to the level-1 patch embedding.

    Conv1d stack over words D -> 512 -> 256 -> 128 -> 64 (k=3, p=1; plain convolutions, no BN or activation,
    as in the reference), then CTBN3 = Conv1d(L -> N word-to-token channels, k=3) + BN1d + ReLU.
    """

    def __init__(self, text_dim: int, text_len: int, num_tokens: int) -> None:
        super().__init__()
        _check_positive(text_dim=text_dim, text_len=text_len, num_tokens=num_tokens)
        widths = (text_dim, *TEXT_WIDTHS)
        self.convs = nn.Sequential(
            *(nn.Conv1d(w_in, w_out, kernel_size=3, padding=1) for w_in, w_out in itertools.pairwise(widths))
        )
        self.to_tokens = CTBN(text_len, num_tokens)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        t = self.convs(text.transpose(1, 2))  # (B, 64, L)
        return self.to_tokens(t.transpose(1, 2))  # (B, N, 64)


# ------------------------------------------------------------------------------------------------- LViT


class LViT(nn.Module):
    """LViT-T/S/B (with text) and LViT-TW/SW/BW (``with_text=False``).

    ``forward(images, text=None)``: images (B, C_in, S, S) with S = ``cfg.img_size``, scaled to [0, 1];
    text (B, L, D) word features (required iff ``cfg.with_text``). Returns logits (B, n_classes, S, S).
    """

    def __init__(self, cfg: LViTConfig) -> None:
        super().__init__()
        if not isinstance(cfg, LViTConfig):
            raise ValueError(f"cfg must be an LViTConfig, got {type(cfg).__name__}")
        if cfg.arch != "lvit":
            raise ValueError(f"LViT needs cfg.arch == 'lvit', got {cfg.arch!r}")
        self.cfg = cfg
        c1, c2, c3, c4 = CNN_WIDTHS
        grid = cfg.img_size // PATCH_SIZES[0]
        num_tokens = grid * grid  # 196 at 224x224, the same at every level
        drop, depth = cfg.dropout, cfg.depth

        # CNN encoder
        self.inc = ConvBlock(cfg.in_channels, c1)  # x1 (B, 64, S, S)
        self.down1 = DownBlock(c1, c2)  # x2 (B, 128, S/2, S/2)
        self.down2 = DownBlock(c2, c3)  # x3 (B, 256, S/4, S/4)
        self.down3 = DownBlock(c3, c4)  # x4 (B, 512, S/8, S/8)
        self.down4 = DownBlock(c4, c4)  # x5 (B, 512, S/16, S/16)

        # ViT branch
        self.text = TextPath(cfg.text_dim, cfg.text_len, num_tokens) if cfg.with_text else None
        widths, patches = CNN_WIDTHS, PATCH_SIZES
        self.down_vits = nn.ModuleList(
            DownViT(w, p, num_tokens, depth, merge_previous=i > 0, dropout=drop)
            for i, (w, p) in enumerate(zip(widths, patches, strict=True))
        )
        self.up_vits = nn.ModuleList(
            UpViT(w, depth, from_deeper=i < 3, dropout=drop) for i, w in enumerate(widths)
        )  # index i = level i + 1; level 4 has no deeper level
        self.vit_to_cnn = nn.ModuleList(ViTToCNN(w, p) for w, p in zip(widths, patches, strict=True))

        # CNN decoder
        self.up4 = UpBlock(2 * c4, c3, skip_channels=c4)  # 1024 -> 256 @ S/8
        self.up3 = UpBlock(2 * c3, c2, skip_channels=c3)  # 512 -> 128 @ S/4
        self.up2 = UpBlock(2 * c2, c1, skip_channels=c2)  # 256 -> 64 @ S/2
        self.up1 = UpBlock(2 * c1, c1, skip_channels=c1)  # 128 -> 64 @ S
        self.outc = nn.Conv2d(c1, cfg.n_classes, kernel_size=1)
        if cfg.mlp_gelu_after_fc2:  # reference-exact MLP (see Mlp)
            for m in self.modules():
                if isinstance(m, Mlp):
                    m.gelu_after_fc2 = True

    def _check_inputs(self, images: torch.Tensor, text: torch.Tensor | None) -> None:
        cfg = self.cfg
        expected = (cfg.in_channels, cfg.img_size, cfg.img_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}")
        if self.text is None:
            if text is not None:
                raise ValueError(f"{cfg.model_name} is built without text (with_text=False); do not pass text")
            return
        if text is None:
            raise ValueError(f"{cfg.model_name} needs text features of shape (B, {cfg.text_len}, {cfg.text_dim})")
        if text.ndim != 3 or tuple(text.shape) != (images.shape[0], cfg.text_len, cfg.text_dim):
            raise ValueError(
                f"text must be ({images.shape[0]}, {cfg.text_len}, {cfg.text_dim}), got {tuple(text.shape)}"
            )

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(images, text)
        x1 = self.inc(images)  # (B, 64, 224, 224)
        x2 = self.down1(x1)  # (B, 128, 112, 112)
        x3 = self.down2(x2)  # (B, 256, 56, 56)
        x4 = self.down3(x3)  # (B, 512, 28, 28)
        x5 = self.down4(x4)  # (B, 512, 14, 14)

        text_tokens = self.text(text.to(images.dtype)) if self.text is not None else None  # (B, 196, 64)
        d1, d2, d3, d4 = self.down_vits
        y1 = d1(x1, text_tokens=text_tokens)  # (B, 196, 64)
        y2 = d2(x2, y1)  # (B, 196, 128)
        y3 = d3(x3, y2)  # (B, 196, 256)
        y4 = d4(x4, y3)  # (B, 196, 512)

        u1, u2, u3, u4 = self.up_vits
        y4 = u4(y4)
        y3 = u3(y3, y4)
        y2 = u2(y2, y3)
        y1 = u1(y1, y2)

        r1, r2, r3, r4 = self.vit_to_cnn
        x1 = x1 + r1(y1)  # the CNN encoder above used the features before this addition
        x2 = x2 + r2(y2)
        x3 = x3 + r3(y3)
        x4 = x4 + r4(y4)

        x = self.up4(x5, x4)  # (B, 256, 28, 28)
        x = self.up3(x, x3)  # (B, 128, 56, 56)
        x = self.up2(x, x2)  # (B, 64, 112, 112)
        x = self.up1(x, x1)  # (B, 64, 224, 224)
        return self.outc(x)  # (B, n_classes, 224, 224) logits
