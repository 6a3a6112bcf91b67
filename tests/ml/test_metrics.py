"""Per-image Dice/IoU with the empty-mask policy, and the accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ml.metrics import MetricAccumulator, dice_iou_per_image, dice_score, iou_score


def test_hand_values() -> None:
    pred = np.array([[1, 1, 0, 0]], dtype=np.float32)  # 2 predicted
    gt = np.array([[1, 0, 1, 0]], dtype=np.float32)  # 2 true, 1 overlap
    dice, iou, empty = dice_iou_per_image(pred, gt)
    assert dice.tolist() == [pytest.approx(0.5)]  # 2·1 / (2 + 2)
    assert iou.tolist() == [pytest.approx(1 / 3)]  # 1 / 3
    assert empty.tolist() == [False]


def test_threshold_is_applied_to_probabilities() -> None:
    probs = torch.tensor([[0.49, 0.5, 0.9, 0.1]])
    gt = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert dice_score(probs[0], gt[0]) == pytest.approx(1.0)
    assert dice_score(probs[0], gt[0], threshold=0.95) == pytest.approx(0.0)


def test_empty_policy() -> None:
    empty = np.zeros((1, 3, 3))
    one = np.zeros((1, 3, 3))
    one[0, 1, 1] = 1
    assert dice_score(empty[0], empty[0]) == 1.0 and iou_score(empty[0], empty[0]) == 1.0
    assert dice_score(one[0], empty[0]) == 0.0 and iou_score(one[0], empty[0]) == 0.0
    assert dice_score(empty[0], one[0]) == 0.0
    _, _, flag = dice_iou_per_image(np.stack([empty[0], one[0]]), np.stack([empty[0], one[0]]))
    assert flag.tolist() == [True, False]


def test_accumulator_mean_std_and_empty_count() -> None:
    acc = MetricAccumulator()
    pred = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    gt = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32)
    acc.update(pred, gt, names=["a", "b"])
    acc.update(torch.ones(1, 4), torch.ones(1, 4))
    s = acc.compute()
    assert s.n == 3 and s.n_empty_both == 1
    assert s.dice == pytest.approx((0.5 + 1 + 1) / 3)
    assert s.dice_std == pytest.approx(np.std([0.5, 1, 1]))
    assert s.iou == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert [r["name"] for r in acc.per_image()][:2] == ["a", "b"]
    assert s.to_dict()["n_empty_both"] == 1


def test_empty_accumulator_is_nan() -> None:
    s = MetricAccumulator().compute()
    assert s.n == 0 and math.isnan(s.dice)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same shape"):
        dice_iou_per_image(np.zeros((2, 4, 4)), np.zeros((2, 1, 4, 4)))
    with pytest.raises(ValueError):
        MetricAccumulator().update(np.zeros((2, 4)), np.zeros((2, 4)), names=["only-one"])
