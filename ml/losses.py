"""Segmentation losses of LViT: soft Dice, the reference's class-balanced BCE, their sum, and the LV loss.

All supervised losses take **logits** (pre-sigmoid) and a target of the same shape with values in
[0, 1] (binary masks, or soft EPI pseudo-labels). Shapes must match exactly; anything else raises
``ValueError``. They reduce to a scalar.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_pair(logits: Tensor, target: Tensor, name: str) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"{name}: logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    if logits.ndim < 2:
        raise ValueError(f"{name}: expected a batch (B, ...), got shape {tuple(logits.shape)}")


def _check_weight(logits: Tensor, weight: Tensor | None, name: str) -> None:
    if weight is not None and weight.shape != logits.shape:
        raise ValueError(f"{name}: weight {tuple(weight.shape)} must have the logits' shape {tuple(logits.shape)}")


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1e-5, weight: Tensor | None = None) -> Tensor:
    """Soft Dice loss, per image, averaged over the batch (the reference's ``WeightedDiceLoss(0.5, 0.5)``).

    Contract: ``logits`` (B, ...) pre-sigmoid; ``target`` same shape, values in [0, 1]; ``weight`` (optional, same
    shape, values in [0, 1]): a pixel with weight 0 is left out of the loss (prediction and target both
    multiplied by it; the confidence mask of pseudo-labels).
    Per image: ``1 - (2·Σ p·t + s) / (Σ p² + Σ t² + s)`` with ``p = sigmoid(logits)`` (squared terms in the
    denominator, as in the reference). An empty target with an empty prediction gives 0.

    Returns:
        scalar, mean over the batch.
    """
    _check_pair(logits, target, "soft_dice_loss")
    _check_weight(logits, weight, "soft_dice_loss")
    p = torch.sigmoid(logits.float()).flatten(1)  # (B, N)
    t = target.float().flatten(1)  # (B, N)
    if weight is not None:
        w = weight.float().flatten(1)
        p, t = p * w, t * w
    inter = (p * t).sum(1)
    denom = (p * p).sum(1) + (t * t).sum(1)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def weighted_bce_loss(
    logits: Tensor, target: Tensor, pos_weight: float = 0.5, neg_weight: float = 0.5, weight: Tensor | None = None
) -> Tensor:
    """Class-balanced BCE of the reference (``WeightedBCE([0.5, 0.5])``), on logits.

    Contract: ``logits`` (B, ...) pre-sigmoid; ``target`` same shape, values in [0, 1] (soft targets allowed);
    ``weight`` (optional, same shape, values in [0, 1]) weighs each pixel's term, 0 leaving it out.
    Pixels with ``target > 0.5`` are positives, the rest negatives (over the whole batch). The per-pixel
    BCE is averaged over positives and over negatives separately (weighted means when ``weight`` is given) and the
    two means are combined ``pos_weight·mean_pos + neg_weight·mean_neg``; a class absent from the batch contributes
    0.

    Returns:
        scalar.
    """
    _check_pair(logits, target, "weighted_bce_loss")
    _check_weight(logits, weight, "weighted_bce_loss")
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
    pos = (t > 0.5).float()
    neg = 1.0 - pos
    if weight is not None:
        pos, neg = pos * weight.float(), neg * weight.float()
    pos_mean = (bce * pos).sum() / pos.sum().clamp(min=1.0)
    neg_mean = (bce * neg).sum() / neg.sum().clamp(min=1.0)
    return pos_weight * pos_mean + neg_weight * neg_mean


class DiceBCELoss(nn.Module):
    """``dice_weight·soft_dice + bce_weight·weighted_bce`` (LViT: 0.5/0.5), on logits.

    Contract: as :func:`soft_dice_loss`. ``forward`` returns the scalar total; :meth:`components` returns
    ``{"dice", "bce", "loss"}``.
    """

    def __init__(self, dice_weight: float = 0.5, bce_weight: float = 0.5) -> None:
        super().__init__()
        if dice_weight < 0 or bce_weight < 0:
            raise ValueError(f"weights must be >= 0, got dice={dice_weight}, bce={bce_weight}")
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight

    def components(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> dict[str, Tensor]:
        """``weight``: optional per-pixel weights in [0, 1] (0 leaves a pixel out), passed to both terms."""
        dice = soft_dice_loss(logits, target, weight=weight)
        bce = weighted_bce_loss(logits, target, weight=weight)
        return {"dice": dice, "bce": bce, "loss": self.dice_weight * dice + self.bce_weight * bce}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.components(logits, target)["loss"]


EMPTY = -1  # bank index of "no entry": the empty mask (a negative report's LV target)


def lv_cosine_loss(logits: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """The LV loss against given targets (paper Eqs. 17-18), per image, averaged over the batch.

    Contract: ``logits`` (B, 1, H, W) pre-sigmoid; ``target`` same shape, values in [0, 1], already in the
    prediction's geometry (the trainer's dataset transforms each case's bank mask with the image).
    Per image: ``1 - cos(flatten(p), flatten(t))`` with ``p = sigmoid(logits)``. For an **empty** target (a negative
    report: nothing to segment) the cosine is undefined, so the loss is the predicted foreground fraction
    ``mean(p)``: 0 for an empty prediction, a gradient towards it otherwise.
    """
    _check_pair(logits, target, "lv_cosine_loss")
    prob = torch.sigmoid(logits.float()).flatten(1)  # (B, N)
    t = target.float().flatten(1)  # (B, N)
    empty = t.sum(1) <= 0  # (B,)
    cos = F.cosine_similarity(prob, t, dim=1, eps=eps)  # (B,)
    return torch.where(empty, prob.mean(1), 1.0 - cos).mean()


def lv_bank_select(
    query: Tensor, query_negative: Tensor, bank: Tensor, bank_negative: Tensor | None = None, eps: float = 1e-8
) -> Tensor:
    """Bank entry per case (paper Eq. 16), with negatives handled by rule: ``(B,)`` long, :data:`EMPTY` for a case
    whose report is negative (:func:`ml.laterality.is_negative`), otherwise the positive bank entry whose pooled
    text features are most cosine-similar to the case's. ``query`` (B, D) and ``bank`` (N, D) are pooled over the
    **whole** sentence (not the model's first L words). A case with no positive entry to pick gets :data:`EMPTY`.
    """
    if query.ndim != 2 or bank.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(f"query (B, D) and bank (N, D) must agree on D, got {tuple(query.shape)}, {tuple(bank.shape)}")
    sim = F.normalize(query.float(), dim=1, eps=eps) @ F.normalize(bank.float(), dim=1, eps=eps).T  # (B, N)
    if bank_negative is not None:
        sim = sim.masked_fill(bank_negative.bool()[None, :], -math.inf)
    idx = sim.argmax(dim=1) if bank.shape[0] else torch.zeros(query.shape[0], dtype=torch.long)
    none_left = (
        ~torch.isfinite(sim.max(dim=1).values) if bank.shape[0] else torch.ones(query.shape[0], dtype=torch.bool)
    )
    return torch.where(query_negative.bool() | none_left, torch.full_like(idx, EMPTY), idx)


class LVLoss(nn.Module):
    """Language-Vision loss (paper Eqs. 16-18) against a contrastive bank of (text, mask) pairs.

    For each case, the bank entry whose pooled text features have the highest cosine similarity with the
    case's pooled text features is picked (Eq. 16), and the loss is ``1 - cos(flatten(p), flatten(m))``
    (Eqs. 17-18), with ``p = sigmoid(logits)`` and ``m`` the entry's mask resized (nearest) to the
    prediction size. Differentiable w.r.t. the prediction; the bank is fixed (buffers).

    Contract: ``forward(logits (B, 1, H, W) pre-sigmoid, text (B, D) pooled text features)`` -> scalar mean
    over the batch. An empty target (an all-zero bank mask, or a negative report) scores the predicted foreground
    fraction instead of the undefined cosine (:func:`lv_cosine_loss`).

    Args:
        bank_text: (N, D) pooled text features of the bank entries.
        bank_masks: (N, H0, W0) or (N, 1, H0, W0) masks, values in [0, 1].
    """

    def __init__(self, bank_text: Tensor, bank_masks: Tensor, eps: float = 1e-8) -> None:
        super().__init__()
        if bank_masks.ndim == 4:
            if bank_masks.shape[1] != 1:
                raise ValueError(f"bank_masks must be (N, H, W) or (N, 1, H, W), got {tuple(bank_masks.shape)}")
            bank_masks = bank_masks[:, 0]
        if bank_text.ndim != 2 or bank_masks.ndim != 3 or bank_text.shape[0] != bank_masks.shape[0]:
            raise ValueError(
                f"bank_text (N, D) and bank_masks (N, H, W) must agree on N, got {tuple(bank_text.shape)} "
                f"and {tuple(bank_masks.shape)}"
            )
        if bank_text.shape[0] == 0:
            raise ValueError("the LV bank is empty")
        self.eps = eps
        self.register_buffer("bank_text", F.normalize(bank_text.float(), dim=1, eps=eps))  # (N, D)
        self.register_buffer("bank_masks", bank_masks.float())  # (N, H0, W0)
        self._resized: dict[tuple[int, int, str, torch.dtype], Tensor] = {}

    def __len__(self) -> int:
        return self.bank_text.shape[0]

    def select(self, text: Tensor) -> Tensor:
        """Index of the most similar bank entry per case: (B, D) -> (B,) long."""
        if text.ndim != 2 or text.shape[1] != self.bank_text.shape[1]:
            raise ValueError(f"text must be (B, {self.bank_text.shape[1]}), got {tuple(text.shape)}")
        sim = F.normalize(text.float(), dim=1, eps=self.eps) @ self.bank_text.T  # (B, N)
        return sim.argmax(dim=1)

    def masks_at(self, size: tuple[int, int]) -> Tensor:
        """Bank masks resized (nearest) to ``size``: (N, H, W); cached per size and device."""
        key = (size[0], size[1], str(self.bank_masks.device), self.bank_masks.dtype)
        if key not in self._resized:
            self._resized[key] = F.interpolate(self.bank_masks[:, None], size=size, mode="nearest")[:, 0]
        return self._resized[key]

    def targets(self, index: Tensor, size: tuple[int, int]) -> Tensor:
        """Bank masks for ``index`` (B,) at ``size``: (B, H, W); :data:`EMPTY` gives the empty mask."""
        masks = self.masks_at(size)
        out = masks[index.clamp(min=0)]
        return out * (index >= 0).to(out.dtype)[:, None, None]

    def forward(self, logits: Tensor, text: Tensor, negative: Tensor | None = None) -> Tensor:
        """Select by ``text`` (B, D) (``negative`` (B,) bool: those cases get the empty mask), then
        :func:`lv_cosine_loss`. The trainer selects once per case from the whole sentence and transforms the mask
        with the augmentation instead (:meth:`ml.train.Trainer._lv_targets`)."""
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(f"logits must be (B, 1, H, W), got {tuple(logits.shape)}")
        if text.shape[0] != logits.shape[0]:
            raise ValueError(f"batch sizes differ: logits {logits.shape[0]}, text {text.shape[0]}")
        idx = self.select(text)  # (B,)
        if negative is not None:
            idx = torch.where(negative.to(idx.device).bool(), torch.full_like(idx, EMPTY), idx)
        target = self.targets(idx, (logits.shape[2], logits.shape[3]))[:, None]  # (B, 1, H, W)
        return lv_cosine_loss(logits, target, self.eps)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._resized = {}  # device/dtype moves invalidate the resized cache
        return super()._apply(fn, recurse)
