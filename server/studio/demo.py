"""SYNTHETIC chest-radiograph-like phantoms for the demo project (pure numpy: no data, no patients).

Each phantom is a bright body with two dark lung fields, ribs, a mediastinum, and bright lesions placed in named
lung zones. The lesion mask and a lung-infection report that matches it come with the image. Radiological display:
the patient's right lung is on the image's LEFT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ZONES = ("upper", "middle", "lower")
SIDES = ("left", "right")  # the patient's sides
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # (H, W) uint8
    mask: np.ndarray  # (H, W) bool, lesions
    lungs: dict[str, np.ndarray]  # side -> (H, W) bool
    lesions: tuple[tuple[str, str], ...]  # (side, zone)
    fields: dict  # lung-infection template fields


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def lung_fields(size: int) -> dict[str, np.ndarray]:
    """Two lung ellipses; the patient's right lung on the image's left half."""
    h = w = size
    right = _ellipse(h, w, 0.50 * h, 0.30 * w, 0.42 * h, 0.15 * w)
    left = _ellipse(h, w, 0.50 * h, 0.70 * w, 0.42 * h, 0.15 * w)
    return {"left": left, "right": right}


def zone_center(lung: np.ndarray, zone: str) -> tuple[float, float]:
    """Centre (y, x) of a third of a lung's vertical extent."""
    ys, xs = np.nonzero(lung)
    top, bottom = ys.min(), ys.max() + 1
    third = (bottom - top) / 3.0
    i = ZONES.index(zone)
    cy = top + third * (i + 0.5)
    row = xs[ys == int(cy)]
    return cy, float(row.mean()) if row.size else float(xs.mean())


def report_fields(lesions: tuple[tuple[str, str], ...]) -> dict:
    """Lung-infection fields for lesions given as (side, zone)."""
    if not lesions:
        return {"laterality": "none"}
    sides = {s for s, _ in lesions}
    fields: dict = {
        "laterality": "bilateral" if len(sides) == 2 else "unilateral",
        "areas": COUNT_WORDS.get(len(lesions), "multiple"),
    }
    for side in SIDES:
        zones = [z for z in ZONES if (side, z) in lesions]
        if zones:
            fields[f"{side}_zones"] = zones
    return fields


def phantom(seed: int, *, size: int = 256, lesions: tuple[tuple[str, str], ...] | None = None) -> Phantom:
    """A deterministic phantom; ``lesions`` defaults to 0-3 random (side, zone) cells drawn from ``seed``."""
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    rng = np.random.default_rng(seed)
    if lesions is None:
        cells = [(s, z) for s in SIDES for z in ZONES]
        k = int(rng.integers(0, 4))
        picked = rng.choice(len(cells), size=k, replace=False) if k else []
        lesions = tuple(sorted((cells[i] for i in picked), key=lambda c: (SIDES.index(c[0]), ZONES.index(c[1]))))
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.full((h, w), 20.0, dtype=np.float32)
    body = _ellipse(h, w, 0.50 * h, 0.5 * w, 0.56 * h, 0.46 * w)
    image[body] = 165.0
    lungs = lung_fields(size)
    for lung in lungs.values():
        image[lung] = 65.0
    image[_ellipse(h, w, 0.55 * h, 0.5 * w, 0.30 * h, 0.06 * w)] = 185.0  # mediastinum
    for k in range(9):  # ribs: bright arcs over the lungs
        y0 = 0.10 * h + k * 0.09 * h
        arc = np.abs(yy - (y0 + 0.06 * h * np.cos((xx - 0.5 * w) / (0.28 * w)))) < 0.012 * h
        image[arc & (lungs["left"] | lungs["right"])] += 35.0
    mask = np.zeros((h, w), dtype=bool)
    for side, zone in lesions:
        cy, cx = zone_center(lungs[side], zone)
        cy += float(rng.normal(0, 0.01 * h))
        cx += float(rng.normal(0, 0.01 * w))
        ry, rx = (0.04 + 0.015 * rng.random()) * h, (0.05 + 0.02 * rng.random()) * w
        blob = np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
        lesion = (blob > 0.35) & lungs[side]
        image += 95.0 * blob * lungs[side]
        mask |= lesion
    image += rng.normal(0, 6.0, size=(h, w)).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return Phantom(image=image, mask=mask, lungs=lungs, lesions=tuple(lesions), fields=report_fields(tuple(lesions)))
