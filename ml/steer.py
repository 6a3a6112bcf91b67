"""Does the report steer the mask? Dice with the true report, with its sides swapped, and with an empty report.

For each image the model runs three times, with the same image and:

- ``true``: the report as written;
- ``swapped``: the report with the patient's left and right exchanged (:func:`ml.laterality.swap_sides`), text
  features and zone prior alike;
- ``empty``: the empty sentence (all-zero word features, no zone prior).

A model that ignores the text scores the same three times. For **unilateral** reports (one side named) it also
reports the share of the predicted foreground on the named side (:func:`ml.zones.side_fraction`, split at the
midline of the estimated lung box): with the true report it should be high, with the swapped report low. Images whose
prediction is empty have no side fraction (counted in ``n_empty_pred``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ml.config import LViTConfig
from ml.data import LViTDataset, Sample
from ml.laterality import swap_sides
from ml.metrics import dice_iou_per_image
from ml.zones import lung_box, named_side, parse_cells, side_fraction

CONDITIONS = ("true", "swapped", "empty")


def _sentence(condition: str, sentence: str) -> str:
    if condition == "true":
        return sentence
    if condition == "swapped":
        return swap_sides(sentence)
    if condition == "empty":
        return ""
    raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")


@torch.no_grad()
def predict_masks(
    model: nn.Module,
    model_cfg: LViTConfig,
    samples: Sequence[Sample],
    text: Any,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities (N, S, S), ground truth (N, S, S) bool, images (N, S, S) uint8 first channel)``."""
    from ml.train import forward_model

    ds = LViTDataset(
        samples,
        image_size=model_cfg.img_size,
        in_channels=model_cfg.in_channels,
        text=text if model_cfg.uses_text else None,
        zones=model_cfg.uses_zones,
    )
    was_training = model.training
    model.eval()
    probs, gts, images = [], [], []
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False):
        x = batch["image"].to(device)
        logits = forward_model(model, model_cfg, x, batch.get("text"), batch.get("zones"))
        probs.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
        gts.append(batch["mask"][:, 0].numpy() > 0.5)
        images.append(np.rint(batch["image"][:, 0].numpy() * 255).astype(np.uint8))
    model.train(was_training)
    return np.concatenate(probs), np.concatenate(gts), np.concatenate(images)


def text_sensitivity(
    model: nn.Module,
    model_cfg: LViTConfig,
    samples: Sequence[Sample],
    text: Any = None,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
) -> dict[str, Any]:
    """Dice per condition (all images, and the unilateral-report subset) and the named-side fractions.

    Returns ``{"dice": {cond: mean}, "dice_unilateral": {cond: mean}, "side_fraction": {cond: mean},
    "n": N, "n_unilateral": U, "n_empty_pred": {cond: count among unilateral}, "per_image": [...]}``; Dice is
    per image at 0.5 with the empty/empty policy of :mod:`ml.metrics`. ``side_fraction[cond]`` is the mean over
    unilateral images (with a non-empty prediction) of the foreground share on the side the **true** report
    names. For a model without text every condition gives the same masks.
    """
    samples = list(samples)
    sides = [named_side(parse_cells(s.sentence)) for s in samples]
    uni = [i for i, side in enumerate(sides) if side is not None]
    out: dict[str, Any] = {
        "dice": {},
        "dice_unilateral": {},
        "side_fraction": {},
        "n_empty_pred": {},
        "n": len(samples),
        "n_unilateral": len(uni),
    }
    rows: list[dict[str, Any]] = [{"name": s.name, "side": side} for s, side in zip(samples, sides, strict=True)]
    for cond in CONDITIONS:
        changed = [replace(s, sentence=_sentence(cond, s.sentence)) for s in samples]
        probs, gts, images = predict_masks(model, model_cfg, changed, text, device, batch_size)
        dice = dice_iou_per_image(probs, gts.astype(np.float32))[0].numpy()
        out["dice"][cond] = float(dice.mean()) if len(dice) else math.nan
        out["dice_unilateral"][cond] = float(dice[uni].mean()) if uni else math.nan
        fractions = []
        for i in uni:
            f = side_fraction(probs[i] >= 0.5, sides[i], box=lung_box(images[i]))
            rows[i][f"side_fraction_{cond}"] = f
            if f is not None:
                fractions.append(f)
        out["side_fraction"][cond] = float(np.mean(fractions)) if fractions else math.nan
        out["n_empty_pred"][cond] = len(uni) - len(fractions)
        for i, d in enumerate(dice):
            rows[i][f"dice_{cond}"] = float(d)
    out["per_image"] = rows
    return out


def sensitivity_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary as table rows (one per condition), for ``ml eval``."""
    return [
        {
            "report": cond,
            "dice": result["dice"][cond],
            "dice_unilateral": result["dice_unilateral"][cond],
            "named_side_fraction": result["side_fraction"][cond],
            "n_empty_pred_unilateral": result["n_empty_pred"][cond],
        }
        for cond in CONDITIONS
    ]


__all__ = ["CONDITIONS", "predict_masks", "sensitivity_rows", "text_sensitivity"]
