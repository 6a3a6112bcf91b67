"""Text-consistent augmentation: a mirrored image gets the mirrored report, in one place (ml.laterality)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.data import Augmentation, LViTDataset, Sample, draw_augmentation, load_lv_templates, read_text_table
from ml.laterality import is_negative, mirror_sentence, swap_sides, swap_vertical


def test_swap_sides_maps_each_lv_template_to_its_mirror_template(shared_data: Path) -> None:
    """The authors' 14 LV templates come in mirror pairs; swapping sides of one gives the other's exact sentence."""
    sentences = {s for s, _ in load_lv_templates(shared_data / "lv_loss")}
    pairs = {s: swap_sides(s) for s in sentences}
    assert pairs["Unilateral pulmonary infection, one infected area, all left lung."] == (
        "Unilateral pulmonary infection, one infected area, all right lung."
    )
    assert pairs["Bilateral pulmonary infection, two infected areas, all left lung and upper middle right lung."] == (
        "Bilateral pulmonary infection, two infected areas, upper middle left lung and all right lung."
    )
    mirrored = {m for s, m in pairs.items() if m != s}
    assert mirrored <= sentences  # every asymmetric template's mirror is itself a template (left lung first)
    assert len(mirrored) == 12  # all but "all/all" and "upper middle lower/upper middle lower"


def test_swaps_are_involutions_on_every_real_report(shared_data: Path) -> None:
    sentences = set()
    for table in shared_data.glob("*/*_Folder/*_text.*"):
        sentences |= set(read_text_table(table).values())
    assert len(sentences) > 20
    for s in sentences:
        assert swap_sides(swap_sides(s)) == s
        assert swap_vertical(swap_vertical(s)) == s
    assert any(swap_sides(s) != s for s in sentences)


def test_case_and_word_boundaries() -> None:
    assert swap_sides("Left and RIGHT, leftover rights") == "Right and LEFT, leftover rights"
    assert swap_vertical("The nuclei density in the lower left is high.") == (
        "The nuclei density in the upper left is high."
    )
    assert swap_vertical("Unilateral pulmonary infection, two infected areas, upper middle right lung.") == (
        "Unilateral pulmonary infection, two infected areas, middle lower right lung."
    )
    assert swap_vertical("Top to bottom") == "Bottom to top"
    both = mirror_sentence("The nuclei density in the upper right is high.", flip_rows=True, flip_cols=True)
    assert both == "The nuclei density in the lower left is high."
    assert is_negative("No pulmonary infection.") and is_negative(" no esophageal tumour.")
    assert not is_negative("Nodular infection, left lung.")


def test_augmentation_geometry_and_text_rule() -> None:
    """The rule in one table: which transforms mirror sides or zones, and which have no sentence."""
    a = np.arange(12).reshape(3, 4)
    assert np.array_equal(Augmentation(flips=(1,)).apply(a), a[:, ::-1])
    assert Augmentation(flips=(1,)).flip_cols and not Augmentation(flips=(1,)).flip_rows
    rot180 = Augmentation(k=2)
    assert np.array_equal(rot180.apply(a), a[::-1, ::-1]) and rot180.flip_cols and rot180.flip_rows
    assert Augmentation(k=2, flips=(0,)).flip_cols and not Augmentation(k=2, flips=(0,)).flip_rows
    for k in (1, 3):
        with pytest.raises(ValueError, match="no consistent report sentence"):
            Augmentation(k=k, flips=(0,)).apply_text("left")
    kinds = {"reference": set(), "consistent": set()}
    for mode, seen in kinds.items():
        for seed in range(400):
            aug = draw_augmentation(np.random.default_rng(seed), mode)
            seen.add((aug.swaps_axes, aug.flip_rows, aug.flip_cols, aug.angle != 0))
    assert not any(swap for swap, *_ in kinds["consistent"])  # never a lung on its side
    assert {(False, r, c, False) for r in (0, 1) for c in (0, 1)} <= kinds["consistent"]
    assert any(swap for swap, *_ in kinds["reference"])  # the reference draws all 8 symmetries


def _quadrant_case(tmp_path: Path) -> Sample:
    """An image whose only bright block is the mask, in the upper left, and a report that says so."""
    mask = np.zeros((64, 64), np.uint8)
    mask[6:24, 4:20] = 255
    Image.fromarray(mask).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return Sample(
        "mask.png", tmp_path / "img.png", "The nuclei density in the upper left is high.", tmp_path / "mask.png"
    )


def _words_of_mask(mask: torch.Tensor) -> str:
    ys, xs = torch.nonzero(mask[0] > 0.5, as_tuple=True)
    return f"{'upper' if ys.float().mean() < 32 else 'lower'} {'left' if xs.float().mean() < 32 else 'right'}"


def test_consistent_dataset_sentence_follows_every_mirror(tmp_path: Path) -> None:
    sample = _quadrant_case(tmp_path)
    ds = LViTDataset([sample], image_size=64, in_channels=1, augment=True, augment_mode="consistent")
    seen = set()
    for epoch in range(60):
        ds.set_epoch(epoch)
        item = ds[0]
        where = _words_of_mask(item["mask"])
        assert where in item["sentence"], (epoch, item["sentence"])
        seen.add(where)
    assert seen == {"upper left", "upper right", "lower left", "lower right"}


def test_reference_mode_is_what_contradicted_the_text(tmp_path: Path) -> None:
    """The defect as it was: the reference draw mirrors the image and keeps the sentence."""
    ds = LViTDataset([_quadrant_case(tmp_path)], image_size=64, in_channels=1, augment=True, augment_mode="reference")
    contradictions = 0
    for epoch in range(40):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["sentence"] == "The nuclei density in the upper left is high."
        contradictions += _words_of_mask(item["mask"]) not in item["sentence"]
    assert contradictions > 10


def test_every_per_pixel_array_gets_the_image_geometry(tmp_path: Path) -> None:
    """LV target (nearest) and extra channels (bilinear, e.g. a zone prior) move exactly like the mask."""
    sample = _quadrant_case(tmp_path)
    raw = np.asarray(Image.open(sample.mask_path)) > 0
    ds = LViTDataset(
        [sample],
        image_size=64,
        in_channels=1,
        augment=True,
        lv_targets=lambda name: raw,
        extra=lambda i, s: np.stack([raw, ~raw], axis=-1).astype(np.float32),
    )
    for epoch in range(30):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["has_lv"]
        torch.testing.assert_close(item["lv_target"], item["mask"])
        assert item["extra"].shape == (2, 64, 64)
        agree = ((item["extra"][0] > 0.5) == (item["mask"][0] > 0.5)).float().mean().item()
        assert agree > 0.98
