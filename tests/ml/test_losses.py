"""Losses: hand-computed values on tiny tensors, gradients, and input contracts."""

from __future__ import annotations

import math

import pytest
import torch

from ml.losses import (
    EMPTY,
    DiceBCELoss,
    LVLoss,
    lv_bank_select,
    lv_cosine_loss,
    soft_dice_loss,
    weighted_bce_loss,
)


def _img(values: list[float]) -> torch.Tensor:
    """A (1, 1, 2, 2) tensor from 4 values."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2)


def test_soft_dice_hand_value() -> None:
    # p = 0.5 everywhere; t = [1, 0, 1, 0]: 2·Σpt = 2, Σp² + Σt² = 1 + 2 = 3
    loss = soft_dice_loss(_img([0, 0, 0, 0]), _img([1, 0, 1, 0]))
    assert loss.item() == pytest.approx(1 - 2 / 3, abs=1e-5)


def test_soft_dice_is_per_image_mean_and_empty_is_zero() -> None:
    logits = torch.cat([_img([-50] * 4), _img([50, -50, -50, -50])])
    target = torch.cat([_img([0] * 4), _img([1, 0, 0, 0])])
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-5)
    # one perfect image and one with p=0.5 vs [1,0,1,0] -> mean of 0 and 1/3
    logits = torch.cat([_img([50, -50, -50, -50]), _img([0, 0, 0, 0])])
    target = torch.cat([_img([1, 0, 0, 0]), _img([1, 0, 1, 0])])
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.5 * (1 / 3), abs=1e-5)


def test_weighted_bce_averages_classes_separately() -> None:
    # one positive (logit 2) and three negatives (logits -1, 0, 1)
    loss = weighted_bce_loss(_img([2, -1, 0, 1]), _img([1, 0, 0, 0]))
    pos = math.log1p(math.exp(-2))
    neg = (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(1))) / 3
    assert loss.item() == pytest.approx(0.5 * pos + 0.5 * neg, rel=1e-6)
    # logits 0: BCE = ln 2 for every pixel, whatever the balance
    assert weighted_bce_loss(_img([0, 0, 0, 0]), _img([1, 0, 0, 0])).item() == pytest.approx(math.log(2), rel=1e-6)


def test_weighted_bce_without_positives_counts_only_negatives() -> None:
    loss = weighted_bce_loss(_img([0, 0, 0, 0]), _img([0, 0, 0, 0]))
    assert loss.item() == pytest.approx(0.5 * math.log(2), rel=1e-6)


def test_weighted_bce_soft_targets_use_the_05_split() -> None:
    logits, target = _img([0.3, -0.2, 1.0, -1.0]), _img([0.9, 0.2, 0.6, 0.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten()
    want = 0.5 * (bce[0] + bce[2]) / 2 + 0.5 * (bce[1] + bce[3]) / 2
    assert weighted_bce_loss(logits, target).item() == pytest.approx(want.item(), rel=1e-6)


def test_dice_bce_is_the_half_half_sum() -> None:
    logits, target = _img([2, -1, 0, 1]), _img([1, 0, 0, 0])
    parts = DiceBCELoss().components(logits, target)
    want = 0.5 * soft_dice_loss(logits, target) + 0.5 * weighted_bce_loss(logits, target)
    assert parts["loss"].item() == pytest.approx(want.item())
    assert DiceBCELoss()(logits, target).item() == pytest.approx(want.item())
    assert set(parts) == {"dice", "bce", "loss"}


def test_supervised_losses_are_finite_for_extreme_logits() -> None:
    logits = _img([1e4, -1e4, 1e4, -1e4]).requires_grad_()
    loss = DiceBCELoss()(logits, _img([0, 1, 1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_pixel_weight_leaves_zero_weight_pixels_out_of_both_terms() -> None:
    """Weight 0 on a pixel: the loss is that of the other pixels alone, whatever the pixel holds."""
    logits, target = _img([2, -1, 0, 1]), _img([1, 0, 0, 1])
    weight = _img([1, 1, 1, 0])  # the last pixel (a wrong, confident-looking target) is left out
    # BCE: positives {logit 2}, negatives {-1, 0}
    pos = math.log1p(math.exp(-2))
    neg = (math.log1p(math.exp(-1)) + math.log(2)) / 2
    assert weighted_bce_loss(logits, target, weight=weight).item() == pytest.approx(0.5 * pos + 0.5 * neg, rel=1e-6)
    # Dice: the three kept pixels only
    p = torch.sigmoid(torch.tensor([2.0, -1.0, 0.0]))
    t = torch.tensor([1.0, 0.0, 0.0])
    want = 1 - (2 * (p * t).sum() + 1e-5) / ((p * p).sum() + (t * t).sum() + 1e-5)
    assert soft_dice_loss(logits, target, weight=weight).item() == pytest.approx(want.item(), rel=1e-5)
    # a left-out pixel's value does not matter; all-ones weight is the unweighted loss
    other = _img([2, -1, 0, -30])
    parts = DiceBCELoss().components(logits, target, weight=weight)
    assert DiceBCELoss().components(other, target, weight=weight)["loss"].item() == pytest.approx(parts["loss"].item())
    ones = torch.ones_like(logits)
    assert DiceBCELoss().components(logits, target, weight=ones)["loss"].item() == pytest.approx(
        DiceBCELoss()(logits, target).item()
    )
    with pytest.raises(ValueError, match="weight"):
        soft_dice_loss(logits, target, weight=torch.ones(1, 4))


@pytest.mark.parametrize("fn", [soft_dice_loss, weighted_bce_loss, DiceBCELoss()])
def test_shape_mismatch_raises(fn) -> None:
    with pytest.raises(ValueError, match="same shape"):
        fn(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))


def _bank() -> LVLoss:
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # entry 0 ~ "left", entry 1 ~ "right"
    masks = torch.zeros(2, 2, 2)
    masks[0, :, 0] = 1  # left column
    masks[1, :, 1] = 1  # right column
    return LVLoss(text, masks)


def test_lv_loss_picks_the_most_similar_text_and_matches_hand_value() -> None:
    lv = _bank()
    assert lv.select(torch.tensor([[0.9, 0.1], [0.2, 0.8]])).tolist() == [0, 1]
    # p = 0.5 everywhere (4 px), bank mask with 2 ones: cos = sqrt(2/4)
    loss = lv(torch.zeros(1, 1, 2, 2), torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(1 - math.sqrt(0.5), abs=1e-6)
    # a prediction equal to the chosen mask gives ~0, the other mask gives ~1
    pred = torch.tensor([[[[50.0, -50.0], [50.0, -50.0]]]])
    assert lv(pred, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-5)
    assert lv(pred, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(1.0, abs=1e-5)


def test_lv_loss_resizes_the_bank_masks_to_the_prediction() -> None:
    lv = _bank()
    pred = torch.full((1, 1, 8, 8), -50.0)
    pred[..., :4] = 50.0  # left half
    assert lv(pred, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-5)
    assert lv.masks_at((8, 8)).shape == (2, 8, 8)


def test_lv_loss_gradient_flows_to_the_prediction() -> None:
    lv = _bank()
    logits = torch.randn(3, 1, 6, 6, requires_grad=True)
    loss = lv(logits, torch.randn(3, 2))
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert not lv.bank_masks.requires_grad


def test_lv_loss_contract_raises() -> None:
    lv = _bank()
    with pytest.raises(ValueError):
        lv(torch.zeros(2, 6, 6), torch.zeros(2, 2))  # no channel dimension
    with pytest.raises(ValueError):
        lv(torch.zeros(2, 1, 6, 6), torch.zeros(3, 2))  # batch sizes differ
    with pytest.raises(ValueError):
        lv(torch.zeros(2, 1, 6, 6), torch.zeros(2, 5))  # text width differs from the bank
    with pytest.raises(ValueError):
        LVLoss(torch.zeros(2, 4), torch.zeros(3, 5, 5))  # bank sizes disagree
    with pytest.raises(ValueError):
        LVLoss(torch.zeros(0, 4), torch.zeros(0, 5, 5))


def test_lv_loss_of_a_negative_report_is_the_predicted_foreground() -> None:
    """A negative report's target is the empty mask; its loss pushes the prediction to empty (not 1 - cos(p, 0))."""
    empty = torch.zeros(2, 1, 4, 4)
    logits = torch.tensor([-50.0, 0.0])[:, None, None, None].expand(2, 1, 4, 4).clone().requires_grad_(True)
    per_image = [lv_cosine_loss(logits[i : i + 1], empty[i : i + 1]).item() for i in range(2)]
    assert per_image == [pytest.approx(0.0, abs=1e-6), pytest.approx(0.5)]
    lv_cosine_loss(logits, empty).backward()
    assert logits.grad[1].sum() > 0  # lowering the logits lowers the loss
    lv = _bank()
    pred = torch.tensor([[[[50.0, -50.0], [50.0, -50.0]]]])
    assert lv(pred, torch.tensor([[1.0, 0.0]]), negative=torch.tensor([True])).item() == pytest.approx(0.5)


def test_bank_selection_sends_negatives_to_the_empty_mask() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    query = torch.tensor([[0.9, 0.1], [0.7, 0.7], [0.2, 0.8]])
    idx = lv_bank_select(query, torch.tensor([False, True, False]), bank, torch.tensor([False, False, True]))
    assert idx.tolist() == [0, EMPTY, 1]  # the negative case: EMPTY; the negative bank entry is never picked
    lv = _bank()
    assert lv.targets(torch.tensor([EMPTY, 1]), (2, 2)).sum((1, 2)).tolist() == [0.0, 2.0]


def test_bank_selection_uses_the_whole_sentence(shared_data) -> None:
    """Bank selection compares whole sentences: the pooled features equal those of an embedder long enough for every
    word, whatever the model's L; with L = 10 the right-lung half of a bilateral report was cut from the comparison."""
    from ml.data import load_lv_templates
    from ml.text import TextEmbedder, pool_words

    sentences = [s for s, _ in load_lv_templates(shared_data / "lv_loss")]
    short, long = TextEmbedder(length=10), TextEmbedder(length=40)
    whole = torch.from_numpy(short.sentence_features(sentences))
    torch.testing.assert_close(whole, torch.from_numpy(pool_words(long.embed_many(sentences))), atol=1e-5, rtol=1e-5)
    cut = torch.from_numpy(pool_words(short.embed_many(sentences)))
    bilateral = [i for i, s in enumerate(sentences) if s.startswith("Bilateral")]
    assert (whole[bilateral] - cut[bilateral]).norm(dim=1).min() > 0.05  # the words after "all left" count now
    no = torch.zeros(len(sentences), dtype=torch.bool)
    assert lv_bank_select(whole, no, whole).tolist() == list(range(len(sentences)))
