"""Model configuration: one dataclass that every checkpoint carries, so inference needs nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ARCHS = ("lvit", "unet", "lvit_zones")
PAPER_TEXT_LEN = 10  # the paper's L: words of the report the text path sees; a checkpoint without text_len has it
VARIANT_DEPTH = {"T": 1, "S": 4, "B": 6}  # transformer layers per ViT module (paper Table IV)


@dataclass(frozen=True)
class LViTConfig:
    """Architecture hyper-parameters for LViT (and the U-Net baseline).

    Attributes:
        arch: ``"lvit"`` (the paper's network), ``"unet"`` (the paper's CNN baseline, which ignores the ViT/text
            fields) or ``"lvit_zones"`` (LViT plus the report's lung-zone prior as extra input channels and decoder
            inputs, :mod:`ml.models.zones`; the text path is kept).
        variant: ``"T"``, ``"S"`` or ``"B"``: 1, 4 or 6 transformer layers in each of the 8 ViT modules.
        with_text: ``False`` builds the paper's "W" models (LViT-TW/SW/BW): no text path, image-only forward.
        text_dim: width D of the per-word text features (384 for the bundled MiniLM, 768 for BERT-base).
        text_len: number of word tokens L the text path expects: :data:`PAPER_TEXT_LEN` (10) reproduces the
            paper; the app uses the longest sentence its report template can produce (``ml.text.count_words``). A
            checkpoint records it, and loading uses the recorded one (a config without it loads as 10).
        img_size: square network input size; a multiple of 16 (four 2x poolings, 16x16 patches at level 1).
        in_channels: 1 (gray) or 3 (RGB).
        n_classes: output channels of the logits.
        dropout: dropout after the patch embedding and inside the transformer MLPs (reference: 0.1).
        mlp_gelu_after_fc2: reference-exact switch: the authors' code applies GELU after the MLP's output
            projection too (``fc1 -> GELU -> fc2 -> GELU``); off (standard ViT, the paper's text) by default. The only
            behavioural difference between our LViT and the authors' code; parameters are the same either way.
    """

    arch: str = "lvit"
    variant: str = "T"
    with_text: bool = True
    text_dim: int = 384
    text_len: int = PAPER_TEXT_LEN
    img_size: int = 224
    in_channels: int = 3
    n_classes: int = 1
    dropout: float = 0.1
    mlp_gelu_after_fc2: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.variant not in VARIANT_DEPTH:
            raise ValueError(f"variant must be one of {tuple(VARIANT_DEPTH)}, got {self.variant!r}")
        for name in ("with_text", "mlp_gelu_after_fc2"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.arch == "lvit_zones" and not self.with_text:
            raise ValueError("lvit_zones keeps LViT's text path: with_text must be True")
        for name in ("text_dim", "text_len", "img_size", "n_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.img_size % 16:
            raise ValueError(f"img_size must be a multiple of 16, got {self.img_size}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def depth(self) -> int:
        """Transformer layers per ViT module."""
        return VARIANT_DEPTH[self.variant]

    @property
    def uses_text(self) -> bool:
        """Whether the built model's forward takes text features."""
        return self.arch in ("lvit", "lvit_zones") and self.with_text

    @property
    def uses_zones(self) -> bool:
        """Whether the built model's forward takes the report's zone prior (:func:`ml.zones.zone_prior`)."""
        return self.arch == "lvit_zones"

    @property
    def model_name(self) -> str:
        """Display name as in the paper: ``LViT-T``, ``LViT-TW``, ..., ``U-Net``."""
        if self.arch == "unet":
            return "U-Net"
        name = f"LViT-{self.variant}{'' if self.with_text else 'W'}"
        return name + "+zones" if self.arch == "lvit_zones" else name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LViTConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise so a mismatched checkpoint fails loudly. Keys an older
        checkpoint lacks take their defaults, which are the values those checkpoints were trained with (``text_len``
        10, ``mlp_gelu_after_fc2`` off)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown LViTConfig keys: {sorted(unknown)}")
        return cls(**data)
