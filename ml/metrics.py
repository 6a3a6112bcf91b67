"""Per-image Dice and IoU at a threshold, with an explicit empty-mask policy.

Policy: an image whose ground truth is empty **and** whose thresholded prediction is empty scores
1.0 for both Dice and IoU (nothing to find, nothing found). Such images are counted (``n_empty_both``)
so reports can say how much of a mean comes from them. An empty ground truth with a non-empty
prediction (or the reverse) scores 0.

Inputs are probabilities (or binary masks) in [0, 1], thresholded with ``>= threshold`` (0.5 by
default). Pass ``sigmoid(logits)``, not logits. Prediction and target must have the same shape,
``(B, ...)``; numpy arrays and torch tensors are accepted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _as_tensor(x: Any) -> Tensor:
    return x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def dice_iou_per_image(pred: Any, target: Any, threshold: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image Dice, IoU and the empty-both flag.

    Args:
        pred: (B, ...) probabilities or binary masks.
        target: (B, ...) same shape, binary masks (0/1) or probabilities.
        threshold: foreground is ``value >= threshold`` for both prediction and target.

    Returns:
        ``dice (B,) float64, iou (B,) float64, empty_both (B,) bool``.
    """
    p = _as_tensor(pred)
    t = _as_tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(t.shape)} must have the same shape")
    if p.ndim < 2:
        raise ValueError(f"expected a batch (B, ...), got shape {tuple(p.shape)}")
    pb = (p.float() >= threshold).flatten(1)
    tb = (t.float() >= threshold).flatten(1)
    inter = (pb & tb).sum(1).double()
    ps = pb.sum(1).double()
    ts = tb.sum(1).double()
    union = ps + ts - inter
    empty_both = (ps == 0) & (ts == 0)
    dice = torch.where(empty_both, torch.ones_like(inter), 2 * inter / (ps + ts).clamp(min=1))
    iou = torch.where(empty_both, torch.ones_like(inter), inter / union.clamp(min=1))
    return dice, iou, empty_both


def dice_score(pred: Any, target: Any, threshold: float = 0.5) -> float:
    """Dice of one image (no batch dimension), with the empty-both policy."""
    return float(dice_iou_per_image(_as_tensor(pred)[None], _as_tensor(target)[None], threshold)[0][0])


def iou_score(pred: Any, target: Any, threshold: float = 0.5) -> float:
    """IoU of one image (no batch dimension), with the empty-both policy."""
    return float(dice_iou_per_image(_as_tensor(pred)[None], _as_tensor(target)[None], threshold)[1][0])


@dataclass(frozen=True)
class MetricSummary:
    """Mean and (population) standard deviation over images."""

    dice: float
    dice_std: float
    iou: float
    iou_std: float
    n: int
    n_empty_both: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class MetricAccumulator:
    """Collects per-image Dice/IoU over batches; :meth:`compute` returns a :class:`MetricSummary`.

    ``update(pred, target, names=None)`` takes probabilities as in :func:`dice_iou_per_image`.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self.dice: list[float] = []
        self.iou: list[float] = []
        self.empty_both: list[bool] = []
        self.names: list[str] = []

    def update(self, pred: Any, target: Any, names: list[str] | None = None) -> None:
        dice, iou, empty = dice_iou_per_image(pred, target, self.threshold)
        if names is not None and len(names) != len(dice):
            raise ValueError(f"{len(names)} names for a batch of {len(dice)}")
        self.dice += dice.tolist()
        self.iou += iou.tolist()
        self.empty_both += empty.tolist()
        self.names += list(names) if names is not None else [str(len(self.names) + i) for i in range(len(dice))]

    def __len__(self) -> int:
        return len(self.dice)

    def per_image(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "dice": d, "iou": i, "empty_both": e}
            for n, d, i, e in zip(self.names, self.dice, self.iou, self.empty_both, strict=True)
        ]

    def compute(self) -> MetricSummary:
        n = len(self.dice)
        if n == 0:
            return MetricSummary(math.nan, math.nan, math.nan, math.nan, 0, 0)
        d = np.asarray(self.dice)
        i = np.asarray(self.iou)
        return MetricSummary(
            dice=float(d.mean()),
            dice_std=float(d.std()),
            iou=float(i.mean()),
            iou_std=float(i.std()),
            n=n,
            n_empty_both=int(sum(self.empty_both)),
        )
