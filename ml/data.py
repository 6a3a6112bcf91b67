"""Reader for the LViT dataset layout and a torch Dataset with text-consistent (or the reference) augmentation.

Layout (see the shared data README)::

    <root>/<Split>_Folder/img/<image>            image (.png, .jpg, .tif, ...)
    <root>/<Split>_Folder/labelcol/<mask>.png    binary mask (0 background, >0 target)
    <root>/<Split>_Folder/<Split>_text.xlsx      or <Split>_text.csv, columns Image, Description

The text key (column ``Image``) is the **mask** file name. A mask is ``<image stem>.png`` (MoNuSeg; its
Test images are ``.tif``) or ``mask_<image stem>.png`` (the COVID sets). Images without a mask are
unlabeled samples (allowed only when asked for).

Preprocessing follows the reference: images scaled to [0, 1] without mean/std normalisation, resized to
224 (bilinear; the mask nearest, then ``> 0``). Augmentation (:func:`draw_augmentation`): with p = 0.5 a
discrete symmetry, otherwise with p = 0.5 a rotation by a random integer angle in [-20, 20] degrees (bilinear for
the image, nearest for the mask, zero fill). The discrete part is the reference's ``rot90(k)`` + flip in
``"reference"`` mode, and only axis-keeping flips with the sentence mirrored to match (:mod:`ml.laterality`) in
``"consistent"`` mode. Randomness comes from ``(seed, epoch, index)``, so a run is reproducible whatever the number
of loader workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ml.laterality import mirror_sentence
from ml.tables import DataError, read_text_rows

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_PREFIX = "mask_"


@dataclass(frozen=True)
class Sample:
    """One case. ``name`` is the text key (the mask file name, LViT's convention)."""

    name: str
    image_path: Path
    sentence: str
    mask_path: Path | None = None
    labeled: bool = True

    def __post_init__(self) -> None:
        if self.labeled and self.mask_path is None:
            raise DataError(f"labeled sample {self.name!r} has no mask")


# --------------------------------------------------------------------------- folder scanning


def read_text_table(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an LViT text table (``.xlsx`` first sheet, or UTF-8 ``.csv``) -> {Image: Description}.

    Strict, for training: every row needs a Description, and an Image listed twice needs the same text.
    """
    path = Path(path)
    rows = read_text_rows(path.read_bytes(), path.suffix.lower().lstrip("."), where=str(path))
    table: dict[str, str] = {}
    for n, (key, desc) in enumerate(rows, start=2):
        if not desc.strip():
            raise DataError(f"{path}, row {n}: empty Description for {key}")
        if key in table and table[key] != desc.strip():
            raise DataError(f"{path}, row {n}: {key} appears twice with different text")
        table[key] = desc.strip()
    return table


def find_text_table(split_dir: Path, split: str) -> Path:
    for ext in (".xlsx", ".csv"):
        path = split_dir / f"{split}_text{ext}"
        if path.is_file():
            return path
    raise DataError(f"no text table {split}_text.xlsx or {split}_text.csv in {split_dir}")


def _files_by_stem(folder: Path, extensions: Sequence[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."):
            if p.stem in out:
                raise DataError(f"two files with the stem {p.stem!r} in {folder}: {out[p.stem].name}, {p.name}")
            out[p.stem] = p
    return out


def scan_split(root: str | os.PathLike[str], split: str, *, allow_unlabeled: bool = False) -> list[Sample]:
    """All samples of ``<root>/<split>_Folder``, sorted by name.

    Every image needs a text row; every image needs a mask unless ``allow_unlabeled`` (then it becomes an
    unlabeled sample keyed by the text row that matches ``<stem>.png`` or ``mask_<stem>.png``). Every mask
    needs an image.
    """
    split_dir = Path(root) / f"{split}_Folder"
    if not split_dir.is_dir():
        raise DataError(f"split folder not found: {split_dir}")
    img_dir, mask_dir = split_dir / "img", split_dir / "labelcol"
    images = _files_by_stem(img_dir, IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f"no images in {img_dir}")
    masks = _files_by_stem(mask_dir, (".png", ".bmp", ".tif", ".tiff"))
    text_path = find_text_table(split_dir, split)
    text = read_text_table(text_path)

    samples: list[Sample] = []
    used_masks: set[str] = set()
    for stem, image_path in images.items():
        mask_path = masks.get(stem) or masks.get(MASK_PREFIX + stem)
        if mask_path is not None:
            used_masks.add(mask_path.stem)
            key = mask_path.name
            if key not in text:
                raise DataError(f"no text row for {key} (image {image_path.name}) in {text_path}")
            samples.append(Sample(key, image_path, text[key], mask_path, labeled=True))
            continue
        keys = [k for k in (f"{stem}.png", f"{MASK_PREFIX}{stem}.png") if k in text]
        if not allow_unlabeled:
            raise DataError(
                f"no mask for image {image_path.name} in {mask_dir} (looked for {stem}.png, mask_{stem}.png)"
            )
        if not keys:
            raise DataError(
                f"no text row for image {image_path.name} in {text_path} (looked for {stem}.png, mask_{stem}.png)"
            )
        samples.append(Sample(keys[0], image_path, text[keys[0]], None, labeled=False))
    orphans = sorted(set(masks) - used_masks)
    if orphans:
        raise DataError(f"mask without an image in {img_dir}: {masks[orphans[0]].name}")
    return sorted(samples, key=lambda s: s.name)


def split_labeled(samples: Sequence[Sample], fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Keep the masks of a random ``fraction`` of the samples (at least one); hide the others' masks.

    The unlabeled samples keep ``mask_path`` (so pseudo-label quality can be measured) but are
    ``labeled=False``; nothing in training reads their masks.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labeled fraction must be in (0, 1], got {fraction}")
    samples = list(samples)
    n_labeled = max(1, round(fraction * len(samples)))
    order = np.random.default_rng(seed).permutation(len(samples))
    chosen = set(order[:n_labeled].tolist())
    labeled = [s for i, s in enumerate(samples) if i in chosen]
    unlabeled = [replace(s, labeled=False) for i, s in enumerate(samples) if i not in chosen]
    return labeled, unlabeled


# --------------------------------------------------------------------------- image io


def load_image(path: str | os.PathLike[str], in_channels: int, size: int) -> np.ndarray:
    """Image -> uint8 (H, W, C) at ``size`` x ``size`` (bilinear). Gray for 1 channel, RGB for 3."""
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    with Image.open(path) as im:
        im = im.convert("L" if in_channels == 1 else "RGB")
        im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Mask file -> bool (H, W): palette index > 0, or any channel > 0 (alpha ignored)."""
    with Image.open(path) as im:
        if im.mode in ("P", "L", "1", "I", "I;16", "F"):
            arr = np.asarray(im)
        else:
            arr = np.asarray(im.convert("RGB")).max(axis=-1)
    return arr > 0


def load_mask(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Mask -> bool (size, size): nearest-neighbour resize, then ``> 0``."""
    mask = read_mask(path)
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(im) > 0


def load_lv_templates(lv_dir: str | os.PathLike[str], *, mirror: bool = True) -> list[tuple[str, np.ndarray]]:
    """LViT's LV-loss templates: (sentence, bool mask) pairs from ``LV_loss.xlsx`` + ``fig*.png``.

    The templates draw "left lung" on the image's left; our chest X-ray text uses the patient's left
    (image right in PA view), so ``mirror=True`` flips the masks left-right to match patient-side text.
    """
    lv_dir = Path(lv_dir)
    table = read_text_table(lv_dir / "LV_loss.xlsx")
    out = []
    for key, sentence in sorted(table.items(), key=lambda kv: int("".join(c for c in kv[0] if c.isdigit()) or 0)):
        path = lv_dir / key
        if not path.is_file():
            raise DataError(f"LV template mask missing: {path}")
        mask = read_mask(path)
        out.append((sentence, mask[:, ::-1].copy() if mirror else mask))
    return out


# --------------------------------------------------------------------------- augmentation


def _rotate(arr: np.ndarray, angle: float, resample: Image.Resampling) -> np.ndarray:
    """Rotate (H, W) or (H, W, C) uint8/float32 about the centre, same size, zero fill."""
    if arr.ndim == 3 and arr.dtype != np.uint8:
        return np.stack([_rotate(arr[..., c], angle, resample) for c in range(arr.shape[-1])], axis=-1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        return _rotate(arr[..., 0], angle, resample)[..., None]
    im = Image.fromarray(arr if arr.dtype == np.uint8 else arr.astype(np.float32))
    return np.array(im.rotate(angle, resample=resample, fillcolor=0))  # a writable copy


AUGMENT_MODES = ("consistent", "reference")


@dataclass(frozen=True)
class Augmentation:
    """One drawn augmentation: ``np.rot90(a, k)`` then ``np.flip`` over ``flips`` (axes 0 = rows, 1 = columns), then
    a rotation by ``angle`` degrees (PIL's sense, about the centre, zero fill).

    Apply the same object to every per-pixel array of a sample (image, masks, soft maps, extra channels such as a
    zone prior) and to its sentence; :meth:`apply` / :meth:`apply_text` are the only entry points.
    """

    k: int = 0
    flips: tuple[int, ...] = ()
    angle: float = 0.0

    @property
    def swaps_axes(self) -> bool:
        """A 90/270° rotation or a transpose: rows become columns (left/right would become top/bottom)."""
        return self.k % 2 == 1

    @property
    def flip_rows(self) -> bool:
        """Net vertical mirror (for ``swaps_axes`` False): upper <-> lower."""
        return (self.k % 4 == 2) != (0 in self.flips)

    @property
    def flip_cols(self) -> bool:
        """Net horizontal mirror (for ``swaps_axes`` False): the patient's sides exchange, left <-> right."""
        return (self.k % 4 == 2) != (1 in self.flips)

    def apply(self, arr: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """(H, W) or (H, W, C) array -> the transformed array (a new, contiguous one). ``nearest`` for label maps
        (the rotation resamples nearest), otherwise bilinear."""
        out = np.rot90(arr, self.k, axes=(0, 1)) if self.k % 4 else arr
        for axis in self.flips:
            out = np.flip(out, axis=axis)
        out = np.ascontiguousarray(out)
        if self.angle:
            out = _rotate(out, self.angle, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
        return out

    def apply_text(self, sentence: str) -> str:
        """The sentence that describes the transformed image (:mod:`ml.laterality`). An axis swap has none."""
        if self.swaps_axes:
            raise ValueError("a 90/270-degree rotation or transpose has no consistent report sentence")
        return mirror_sentence(sentence, flip_rows=self.flip_rows, flip_cols=self.flip_cols)


def draw_augmentation(rng: np.random.Generator, mode: str = "reference") -> Augmentation:
    """Draw one augmentation.

    ``"reference"`` (the authors' code, the paper's numbers): with p = 0.5 ``rot90(k)`` for a random k and a flip
    of a random axis (all 8 symmetries of the square, including the 4 that exchange the axes); otherwise with
    p = 0.5 a rotation by a random integer angle in [-20, 20]. Meant for image-only use; with text, half the draws
    mirror the image while the sentence keeps its sides.

    ``"consistent"`` (the app's and the default for text models): the same structure, but the discrete part keeps
    the axes: each of row flip and column flip with p = 0.5 (identity, horizontal, vertical, 180°, each 1/4 of
    that branch); the sentence follows with :meth:`Augmentation.apply_text`. 90/270° rotations and transposes are
    never drawn, because no report sentence describes a lung lying on its side.
    """
    if mode not in AUGMENT_MODES:
        raise ValueError(f"augmentation mode must be one of {AUGMENT_MODES}, got {mode!r}")
    if rng.random() > 0.5:
        if mode == "reference":
            k = int(rng.integers(0, 4))
            return Augmentation(k=k, flips=(int(rng.integers(0, 2)),))
        flip_rows, flip_cols = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        return Augmentation(flips=tuple(a for a, on in ((0, flip_rows), (1, flip_cols)) if on))
    if rng.random() > 0.5:
        return Augmentation(angle=float(rng.integers(-20, 21)))
    return Augmentation()


def augment(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    soft: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    mode: str = "reference",
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Draw one augmentation (:func:`draw_augmentation`) and apply it identically to an image (H, W, C) uint8,
    label maps (H, W) (nearest) and soft maps / extra channels (H, W) or (H, W, C) float32 (bilinear)."""
    aug = draw_augmentation(rng, mode)
    return aug.apply(image), [aug.apply(m, nearest=True) for m in masks], [aug.apply(s) for s in soft]


# --------------------------------------------------------------------------- dataset

TextSource = Callable[[str], np.ndarray] | Mapping[str, np.ndarray]


class LViTDataset(Dataset):
    """Samples -> dicts for training and evaluation.

    Each item: ``image`` (C, S, S) float32 in [0, 1]; ``mask`` (1, S, S) float32 in {0, 1} (zeros when
    unlabeled); ``labeled`` bool; ``name``; ``sentence`` (as augmented: mirrored with the image in
    ``"consistent"`` mode); ``text`` (L, D) float32 of that sentence when a text source is given; ``pseudo``
    (1, S, S) float32 and ``has_pseudo`` when a pseudo-label source is given; ``lv_target`` (1, S, S) float32 and
    ``has_lv`` when an LV-target source is given; ``extra`` (K, S, S) float32 when an extra-channel source is
    given. Every per-pixel array gets the image's geometry (one :class:`Augmentation` per item).

    Args:
        samples: from :func:`scan_split` / :func:`split_labeled` (or built by the server).
        image_size: S (224 for LViT).
        in_channels: 1 (gray) or 3 (RGB).
        augment: apply the augmentation (:func:`draw_augmentation`).
        augment_mode: ``"consistent"`` (the sentence follows mirrors; no axis swaps) or ``"reference"``.
        seed: augmentation seed; per item the generator is seeded with ``(seed, epoch, index)``.
        text: a callable sentence -> (L, D) (e.g. a :class:`ml.text.TextEmbedder`) or a mapping; with an
            object that has ``embed_many``, all sentences are embedded once up front (one batched pass).
        pseudo_labels: name -> (S, S) float map or None (e.g. ``EPIStore.get``).
        lv_targets: name -> (S, S) binary LV-loss target (the bank entry chosen for the case's un-augmented
            sentence, empty for a negative report) or None; transformed like the mask.
        extra: (index, sample) -> (S, S, K) float32 per-pixel channels in the un-augmented frame (e.g. a zone
            prior); transformed like the image.
        cache: keep decoded, resized images/masks in memory (uint8).
        report_dropout: with augmentation on, the probability that an item's report is replaced by the empty
            sentence (no words, and no zone prior), drawn per item and epoch: the model also learns the image-only
            case (a case without a report, a free-text report a zone model cannot read) instead of predicting
            nothing whenever the prior is blank.
        zones: add ``zones`` (ZONE_CHANNELS, S, S) float32, the report's lung-zone prior
            (:func:`ml.zones.zone_prior` of the un-augmented sentence and image) put through the same augmentation
            geometry as the image, so prior and anatomy stay aligned under every transform (a mirror moves the
            prior exactly as rendering the swapped sentence on the mirrored image would; rotations keep it on the
            rotated lungs, which re-rendering from an axis-aligned box would not).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        image_size: int = 224,
        in_channels: int = 3,
        augment: bool = False,
        augment_mode: str = "consistent",
        seed: int = 0,
        text: TextSource | None = None,
        pseudo_labels: Callable[[str], np.ndarray | None] | None = None,
        lv_targets: Callable[[str], np.ndarray | None] | None = None,
        extra: Callable[[int, Sample], np.ndarray] | None = None,
        cache: bool = True,
        zones: bool = False,
        report_dropout: float = 0.0,
    ) -> None:
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        self.samples = list(samples)
        self.image_size = image_size
        self.in_channels = in_channels
        if augment_mode not in AUGMENT_MODES:
            raise ValueError(f"augment_mode must be one of {AUGMENT_MODES}, got {augment_mode!r}")
        if not 0.0 <= report_dropout < 1.0:
            raise ValueError(f"report_dropout must be in [0, 1), got {report_dropout}")
        self.augment = augment
        self.augment_mode = augment_mode
        self.report_dropout = report_dropout
        self.seed = seed
        self.epoch = 0
        self.text = text
        self.pseudo_labels = pseudo_labels
        self.lv_targets = lv_targets
        self.extra = extra
        self.zones = zones
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        embed_many = getattr(text, "embed_many", None)
        if callable(embed_many) and self.samples:
            sentences = {s.sentence for s in self.samples} | ({""} if augment and report_dropout else set())
            if augment and augment_mode == "consistent":  # the mirrored sentences too
                sentences |= {
                    mirror_sentence(t, flip_rows=r, flip_cols=c) for t in sentences for r in (0, 1) for c in (0, 1)
                }
            embed_many(sorted(sentences))  # fill the embedder's cache in one pass

    def set_epoch(self, epoch: int) -> None:
        """Reseed the augmentation for a new epoch (call before iterating; workers copy it on start)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def preload(self) -> None:
        """Decode and resize every sample now (forked DataLoader workers then inherit the cache)."""
        if self.cache:
            for i in range(len(self.samples)):
                self._load(i)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index in self._cache:
            return self._cache[index]
        s = self.samples[index]
        image = load_image(s.image_path, self.in_channels, self.image_size)  # (S, S, C) uint8
        mask = load_mask(s.mask_path, self.image_size).astype(np.uint8) if s.labeled else None  # (S, S)
        if self.cache:
            self._cache[index] = (image, mask)
        return image, mask

    def text_features(self, sentence: str) -> np.ndarray:
        if self.text is None:
            raise ValueError("this dataset has no text source")
        feats = self.text[sentence] if isinstance(self.text, Mapping) else self.text(sentence)
        return np.asarray(feats, dtype=np.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        size = self.image_size
        image, mask = self._load(index)
        masks = [mask] if mask is not None else []  # label maps: nearest
        soft: list[np.ndarray] = []  # float maps: bilinear
        pseudo = self.pseudo_labels(s.name) if self.pseudo_labels is not None else None
        if pseudo is not None:
            pseudo = np.asarray(pseudo, dtype=np.float32)
            if pseudo.shape != (size, size):
                raise ValueError(f"pseudo-label for {s.name} has shape {pseudo.shape}, want {size}²")
            soft.append(pseudo)
        lv = self.lv_targets(s.name) if self.lv_targets is not None else None
        if lv is not None:
            lv = (np.asarray(lv) > 0).astype(np.uint8)
            if lv.shape != (size, size):
                raise ValueError(f"LV target for {s.name} has shape {lv.shape}, want {size}²")
            masks.append(lv)
        extra = np.asarray(self.extra(index, s), dtype=np.float32) if self.extra is not None else None
        if extra is not None:
            if extra.ndim == 2:
                extra = extra[..., None]
            if extra.shape[:2] != (size, size):
                raise ValueError(f"extra channels for {s.name} have shape {extra.shape}, want ({size}, {size}, K)")
        sentence = s.sentence
        if (
            self.augment
            and self.report_dropout
            and np.random.default_rng([self.seed, self.epoch, index, 1]).random() < self.report_dropout
        ):
            sentence = ""  # its own random stream: the geometry draws stay as they are without dropout
        zone_maps = None
        if self.zones:  # (S, S, Z) in the un-augmented frame
            from ml.zones import zone_prior

            zone_maps = zone_prior(sentence, image[..., 0] if image.shape[-1] == 1 else image).transpose(1, 2, 0)
        if self.augment:
            aug = draw_augmentation(np.random.default_rng([self.seed, self.epoch, index]), self.augment_mode)
            image = aug.apply(image)
            masks = [aug.apply(m, nearest=True) for m in masks]
            soft = [aug.apply(m) for m in soft]
            extra = aug.apply(extra) if extra is not None else None
            zone_maps = aug.apply(zone_maps) if zone_maps is not None else None
            if self.augment_mode == "consistent":
                sentence = aug.apply_text(sentence)
        label = masks.pop(0) if mask is not None else None
        item: dict[str, Any] = {
            "image": torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0),  # (C, S, S)
            "mask": torch.from_numpy((label > 0).astype(np.float32))[None]
            if label is not None
            else torch.zeros(1, size, size),  # (1, S, S)
            "labeled": s.labeled,
            "name": s.name,
            "sentence": sentence,
        }
        if self.text is not None:
            item["text"] = torch.from_numpy(self.text_features(sentence))  # (L, D)
        if self.pseudo_labels is not None:
            item["pseudo"] = torch.from_numpy(soft[0])[None] if pseudo is not None else torch.zeros(1, size, size)
            item["has_pseudo"] = pseudo is not None
        if self.lv_targets is not None:
            item["lv_target"] = (
                torch.from_numpy((masks[0] > 0).astype(np.float32))[None]
                if lv is not None
                else torch.zeros(1, size, size)
            )
            item["has_lv"] = lv is not None
        if extra is not None:
            item["extra"] = torch.from_numpy(extra.transpose(2, 0, 1).copy())  # (K, S, S)
        if zone_maps is not None:
            item["zones"] = torch.from_numpy(np.clip(zone_maps, 0.0, 1.0).transpose(2, 0, 1).astype(np.float32))
        return item
