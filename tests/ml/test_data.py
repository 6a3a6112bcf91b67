"""The LViT-layout reader on the real datasets, and the augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ml.data import (
    DataError,
    LViTDataset,
    Sample,
    augment,
    load_lv_templates,
    read_text_table,
    scan_split,
    split_labeled,
)

COUNTS = {
    ("monuseg", "Train"): 24,
    ("monuseg", "Val"): 6,
    ("monuseg", "Test"): 14,
    ("covid_ct", "Train"): 40,
    ("covid_ct", "Val"): 10,
    ("covid_ct", "Test"): 48,
    ("covid_cxr", "Train"): 63,
    ("covid_cxr", "Val"): 12,
}


@pytest.mark.parametrize(("dataset", "split"), list(COUNTS))
def test_counts_match_the_data_readme(shared_data: Path, dataset: str, split: str) -> None:
    samples = scan_split(shared_data / dataset, split)
    assert len(samples) == COUNTS[(dataset, split)]
    assert all(s.labeled and s.mask_path.is_file() and s.sentence for s in samples)
    assert len({s.name for s in samples}) == len(samples)


def test_monuseg_uses_the_authors_xlsx_and_tif_test_images(shared_data: Path) -> None:
    table = read_text_table(shared_data / "monuseg" / "Train_Folder" / "Train_text.xlsx")
    assert len(table) == 24
    test = scan_split(shared_data / "monuseg", "Test")
    assert all(s.image_path.suffix == ".tif" and s.name.endswith(".png") for s in test)
    by_name = {s.name: s.sentence for s in test}
    assert by_name["TCGA-2Z-A9J9-01A-01-TS1.png"] == "The nuclei are sparsely distributed."


def test_covid_sets_use_the_mask_prefix(shared_data: Path) -> None:
    for dataset in ("covid_ct", "covid_cxr"):
        for s in scan_split(shared_data / dataset, "Val"):
            assert s.name == s.mask_path.name == f"mask_{s.image_path.stem}.png"
    first = scan_split(shared_data / "covid_ct", "Train")[0]
    assert first.name == "mask_0.png"
    assert first.sentence.startswith("Bilateral pulmonary infection, two infected areas")


def test_dataset_items_gray_and_rgb(shared_data: Path) -> None:
    ct = LViTDataset(scan_split(shared_data / "covid_ct", "Val")[:2], in_channels=1)
    item = ct[0]
    assert item["image"].shape == (1, 224, 224) and item["image"].dtype == torch.float32
    assert item["image"].min() >= 0.0 and item["image"].max() <= 1.0
    assert item["mask"].shape == (1, 224, 224)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0} and item["mask"].sum() > 0
    assert item["name"] == "mask_50.png" and item["labeled"] is True
    mon = LViTDataset(scan_split(shared_data / "monuseg", "Test")[:1], in_channels=3)
    assert mon[0]["image"].shape == (3, 224, 224)


def test_text_source_gives_word_features(shared_data: Path) -> None:
    samples = scan_split(shared_data / "monuseg", "Val")[:2]
    feats = {s.sentence: np.full((10, 4), i, dtype=np.float32) for i, s in enumerate(samples)}
    ds = LViTDataset(samples, text=feats)
    assert ds[1]["text"].shape == (10, 4) and ds[1]["text"][0, 0] == 1


def _copy_split(shared_data: Path, tmp_path: Path, n: int = 3) -> Path:
    src = shared_data / "covid_ct" / "Val_Folder"
    dst = tmp_path / "ds" / "Val_Folder"
    (dst / "img").mkdir(parents=True)
    (dst / "labelcol").mkdir()
    names = sorted(p.name for p in (src / "img").iterdir())[:n]
    for name in names:
        shutil.copy(src / "img" / name, dst / "img" / name)
        shutil.copy(src / "labelcol" / f"mask_{name}", dst / "labelcol" / f"mask_{name}")
    lines = (src / "Val_text.csv").read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.split(",")[0] in {f"mask_{n}" for n in names}]
    (dst / "Val_text.csv").write_text("\n".join(keep) + "\n")
    return tmp_path / "ds"


def test_missing_text_row_names_the_file(shared_data: Path, tmp_path: Path) -> None:
    root = _copy_split(shared_data, tmp_path)
    csv = root / "Val_Folder" / "Val_text.csv"
    lines = csv.read_text().splitlines()
    missing = lines[2].split(",")[0]
    csv.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=missing):
        scan_split(root, "Val")


def test_missing_mask_names_the_image_and_unlabeled_is_opt_in(shared_data: Path, tmp_path: Path) -> None:
    root = _copy_split(shared_data, tmp_path)
    mask = sorted((root / "Val_Folder" / "labelcol").iterdir())[0]
    image_name = mask.name.removeprefix("mask_")
    mask.unlink()
    with pytest.raises(DataError, match=image_name):
        scan_split(root, "Val")
    samples = scan_split(root, "Val", allow_unlabeled=True)
    unlabeled = [s for s in samples if not s.labeled]
    assert len(unlabeled) == 1 and unlabeled[0].name == mask.name and unlabeled[0].mask_path is None
    item = LViTDataset(samples, in_channels=1)[samples.index(unlabeled[0])]
    assert item["labeled"] is False and item["mask"].sum() == 0


def test_split_labeled_is_seeded_and_hides_masks(shared_data: Path) -> None:
    train = scan_split(shared_data / "covid_cxr", "Train")
    labeled, unlabeled = split_labeled(train, 0.25, seed=0)
    assert len(labeled) == 16 and len(unlabeled) == 47
    assert not {s.name for s in labeled} & {s.name for s in unlabeled}
    assert all(not s.labeled for s in unlabeled)
    again, _ = split_labeled(train, 0.25, seed=0)
    assert [s.name for s in again] == [s.name for s in labeled]
    with pytest.raises(ValueError):
        split_labeled(train, 0.0)


def test_lv_templates_are_mirrored_for_patient_side_text(shared_data: Path) -> None:
    pairs = load_lv_templates(shared_data / "lv_loss")
    assert len(pairs) == 14
    sentence, mask = pairs[0]
    assert sentence == "Unilateral pulmonary infection, one infected area, all left lung."
    half = mask.shape[1] // 2
    assert mask[:, half:].sum() > 0 and mask[:, :half].sum() == 0  # patient's left = image right
    raw = load_lv_templates(shared_data / "lv_loss", mirror=False)[0][1]
    np.testing.assert_array_equal(raw, mask[:, ::-1])


def _synthetic(tmp_path: Path, n: int = 6) -> list[Sample]:
    """Images whose bright pixels are exactly the mask, so alignment can be checked after augmentation."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        mask = np.zeros((224, 224), dtype=np.uint8)
        y, x = rng.integers(20, 120, size=2)
        mask[y : y + 60, x : x + 90] = 255
        mask[150:200, 10:40] = 255
        Image.fromarray(mask).save(tmp_path / f"img{i}.png")
        Image.fromarray(mask).save(tmp_path / f"mask{i}.png")
        samples.append(Sample(f"mask{i}.png", tmp_path / f"img{i}.png", "x", tmp_path / f"mask{i}.png"))
    return samples


def test_augmentation_keeps_masks_binary_and_aligned(tmp_path: Path) -> None:
    ds = LViTDataset(_synthetic(tmp_path), in_channels=1, augment=True, seed=0)
    changed = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            mask, image = item["mask"][0], item["image"][0]
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            agree = ((image > 0.5) == (mask > 0.5)).float().mean().item()
            assert agree > 0.99  # same geometry for both (bilinear vs nearest differ only at edges)
            original = LViTDataset(ds.samples[i : i + 1], in_channels=1)[0]["mask"]
            changed += int(not torch.equal(original, item["mask"]))
    assert changed > 8  # the augmentation does something


def test_augmentation_is_deterministic_with_a_seed(tmp_path: Path) -> None:
    samples = _synthetic(tmp_path)
    a = LViTDataset(samples, in_channels=1, augment=True, seed=5)
    b = LViTDataset(samples, in_channels=1, augment=True, seed=5)
    for i in range(len(samples)):
        torch.testing.assert_close(a[i]["image"], b[i]["image"])
        torch.testing.assert_close(a[i]["mask"], b[i]["mask"])
    b.set_epoch(1)
    assert any(not torch.equal(a[i]["mask"], b[i]["mask"]) for i in range(len(samples)))


def test_augment_moves_soft_maps_with_the_image() -> None:
    image = np.zeros((8, 8, 1), np.uint8)
    image[0, 0] = 255
    soft = image[..., 0].astype(np.float32) / 255
    for seed in range(20):
        img, masks, softs = augment(image, [image[..., 0]], [soft], np.random.default_rng(seed))
        np.testing.assert_array_equal(img[..., 0] > 127, masks[0] > 127)
        np.testing.assert_array_equal(img[..., 0] > 127, softs[0] > 0.5)


def test_bad_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LViTDataset([], in_channels=2)
    with pytest.raises(DataError):
        scan_split(tmp_path, "Train")
    with pytest.raises(DataError):
        Sample("m.png", tmp_path / "i.png", "text", None, labeled=True)


def test_report_dropout_blanks_the_report_and_its_prior_and_leaves_the_geometry(shared_data: Path) -> None:
    """With report dropout a share of training items reads the empty report (no words, an all-zero zone prior), drawn
    per item and epoch; the augmentation's geometry is the same as without dropout, and evaluation never drops."""
    samples = scan_split(shared_data / "covid_cxr", "Train")[:12]
    texts = {s.sentence: np.ones((4, 3), np.float32) for s in samples} | {"": np.zeros((4, 3), np.float32)}

    def dataset(p: float, augment: bool = True) -> LViTDataset:
        return LViTDataset(samples, image_size=32, in_channels=1, zones=True, augment=augment, seed=3,
                           report_dropout=p, text=lambda s: texts.get(s, texts[samples[0].sentence]))  # fmt: skip

    dropped, kept = dataset(0.5), dataset(0.0)
    blank = 0
    for epoch in range(3):
        dropped.set_epoch(epoch)
        kept.set_epoch(epoch)
        for i in range(len(samples)):
            a, b = dropped[i], kept[i]
            torch.testing.assert_close(a["image"], b["image"])  # same geometry draws
            torch.testing.assert_close(a["mask"], b["mask"])
            if a["sentence"] == "":
                blank += 1
                assert float(a["zones"].abs().sum()) == 0.0 and float(a["text"].abs().sum()) == 0.0
            else:
                assert a["sentence"] == b["sentence"] and torch.equal(a["zones"], b["zones"])
                assert float(a["zones"][1].sum()) > 0  # the lung box is there when the report is
    assert 6 <= blank <= 30  # about half of 36 draws
    plain = dataset(0.5, augment=False)
    assert all(plain[i]["sentence"] == samples[i].sentence for i in range(len(samples)))  # never at evaluation
    with pytest.raises(ValueError, match="report_dropout"):
        dataset(1.0)
