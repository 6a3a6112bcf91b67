"""Lung-zone geometry shared by the server and the models (numpy only: importing this never loads torch).

The lung-infection report names zones: the patient's ``left``/``right`` lung x ``upper``/``middle``/``lower``
third. Radiological display: **the patient's left is on the image's right** (PA/AP chest X-ray, axial CT).

- :func:`expected_cells` / :func:`parse_cells`: the cells a report claims, from the structured fields the server
  stores, or from the canonical sentence (``"Unilateral pulmonary infection, one infected area, all left lung."``).
  ``None`` means "not a lung-infection report" (free text): no prior. A negative report claims the empty set.
- :func:`body_box` (the server's inconsistency-score box) and :func:`lung_box` (an estimate of the lungs' bounding
  box from the image alone, calibrated on covid_cxr's lung masks; no mask is needed at inference).
- :func:`observed_cells`: the cells a binary mask covers, following the dataset text rules.
- :func:`render_prior`: the report as a spatial prompt, ``(ZONE_CHANNELS, H, W)`` float32: channel 0 the claimed
  zones with soft edges, channel 1 the lung box (present whenever the report parsed, so a negative report reads
  "lungs here, nothing claimed" and a free-text report is all zeros). Both channels are mirror-equivariant: the
  prior of a mirrored image with the sides of its report swapped is the mirrored prior.
- :func:`pseudo_label_gate`: the report's correction of a pseudo-label (its claimed zones; ones for free text).
- :func:`side_fraction`: the share of a mask's foreground on one patient side (the text-steering metric).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

ZONE_NAMES = ("upper", "middle", "lower")
SIDES = ("left", "right")  # the patient's sides
ZONE_CHANNELS = 2  # claimed zones, lung box

# Lung box inside the body box, as fractions of the body box's height / width: medians over covid_cxr Train's
# 63 lung masks (top 0.076, bottom 0.854, left 0.064, right 0.928; spread 0.04-0.09). Left and right use the same
# margin (their mean) so the box, and with it the prior, is mirror-equivariant.
LUNG_BOX_FRACTIONS = (0.076, 0.854, 0.068, 0.932)
SOFTNESS = 0.04  # zone edge ramp width, as a fraction of the lung box's size

Cell = tuple[str, str]
Box = tuple[int, int, int, int]  # top, bottom, left, right (bottom/right exclusive)


# --------------------------------------------------------------------------- what a report claims


def expected_cells(fields: dict) -> set[Cell] | None:
    """``{(side, zone)}`` a lung-infection report's fields claim (patient's sides), or ``None`` for other reports."""
    if "laterality" not in fields:
        return None
    cells: set[Cell] = set()
    for side in SIDES:
        zones = fields.get(f"{side}_zones") or []
        for z in ZONE_NAMES if "all" in zones else zones:
            cells.add((side, z))
    return cells


_SENTENCE = re.compile(
    r"^(?P<lat>unilateral|bilateral) pulmonary infection\s*,\s*(?P<areas>[a-z ]+?infected areas?)\s*,\s*"
    r"(?P<where>.+?)\s*\.?$"
)
_WHERE = re.compile(
    r"(?P<zones>(?:all|upper|middle|lower)(?:\s+(?:upper|middle|lower))*)\s+(?P<side>left|right)\s+lung"
)
_NEGATIVE = re.compile(r"^no pulmonary infection\s*\.?$")


def parse_cells(sentence: str) -> set[Cell] | None:
    """The cells a lung-infection sentence (the template's canonical forms, any case/spacing) claims.

    ``"No pulmonary infection."`` -> ``set()``; a sentence of the template -> its cells; anything else (free text,
    another template, an empty string) -> ``None``.
    """
    s = " ".join(str(sentence).lower().split())
    if _NEGATIVE.match(s):
        return set()
    m = _SENTENCE.match(s)
    if not m:
        return None
    where = m.group("where")
    cells: set[Cell] = set()
    rest = _WHERE.sub("", where)
    if re.sub(r"[\s,]|and", "", rest):  # words the template never writes: not ours
        return None
    for w in _WHERE.finditer(where):
        zones = w.group("zones").split()
        for z in ZONE_NAMES if "all" in zones else zones:
            cells.add((w.group("side"), z))
    if not cells:
        return None
    return cells


def swap_cells(cells: Iterable[Cell]) -> set[Cell]:
    """The same zones on the other patient side (what a left-right mirror of the image does)."""
    other = {"left": "right", "right": "left"}
    return {(other[side], zone) for side, zone in cells}


# --------------------------------------------------------------------------- boxes


def body_box(image: Any, *, threshold: int = 40) -> Box:
    """``(top, bottom, left, right)`` of the body in an 8-bit image: rows/columns where more than 1 % of the pixels
    are brighter than ``threshold`` (the covid_ct text rule; for a chest X-ray this is about the whole image)."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a.mean(axis=2)
    bright = a > threshold
    rows = np.nonzero(bright.mean(axis=1) > 0.01)[0]
    cols = np.nonzero(bright.mean(axis=0) > 0.01)[0]
    if rows.size == 0 or cols.size == 0:
        return 0, a.shape[0], 0, a.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def lung_box(image: Any) -> tuple[float, float, float, float]:
    """Estimated ``(top, bottom, left, right)`` of both lungs in an 8-bit chest image, in pixels (floats).

    The body box (:func:`body_box`) shrunk by the calibrated margins :data:`LUNG_BOX_FRACTIONS`. Measured against
    the union of covid_cxr's lung masks: see ``docs/results.md`` ("Text steering"). Needs no mask.
    """
    top, bottom, left, right = body_box(image)
    h, w = bottom - top, right - left
    ft, fb, fl, fr = LUNG_BOX_FRACTIONS
    return top + ft * h, top + fb * h, left + fl * w, left + fr * w


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(top, bottom, left, right)`` boxes."""
    ih = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = ih * iw
    union = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return float(inter / union) if union > 0 else 0.0


# --------------------------------------------------------------------------- what a mask shows


def observed_cells(mask: Any, *, box: Box | None = None, min_side: float = 0.002, min_zone: float = 0.05) -> set[Cell]:
    """``{(side, zone)}`` holding lesion pixels of a binary mask (numpy ``(H, W)``), following the dataset text rules.

    Radiological display: the patient's left lung is on the RIGHT half of ``box`` (default: the whole image). A side
    is affected when it holds at least ``min_side`` of the image area in lesion pixels or holds the most; each
    affected side's rows are cut into thirds of ``box``, and a third counts when it holds at least ``min_zone`` of
    that side's lesion pixels.
    """
    m = np.asarray(mask) > 0
    h, w = m.shape
    top, bottom, left, right = box or (0, h, 0, w)
    m = m[top:bottom, left:right]
    if not m.any():
        return set()
    mid = m.shape[1] // 2
    halves = {"right": m[:, :mid], "left": m[:, mid:]}  # patient's right = image's left
    counts = {side: int(half.sum()) for side, half in halves.items()}
    most = max(counts, key=counts.get)
    cuts = [0, m.shape[0] // 3, 2 * m.shape[0] // 3, m.shape[0]]
    cells = set()
    for side, half in halves.items():
        if counts[side] == 0 or (counts[side] < min_side * h * w and side != most):
            continue
        for i, zone in enumerate(ZONE_NAMES):
            if half[cuts[i] : cuts[i + 1]].sum() >= min_zone * counts[side]:
                cells.add((side, zone))
    return cells


def side_fraction(mask: Any, side: str, *, box: tuple[float, float, float, float] | None = None) -> float | None:
    """Share of ``mask``'s foreground pixels on the patient's ``side`` (``"left"`` = the image's right of the box's
    vertical midline; default box: the whole image). ``None`` for an empty mask."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    m = np.asarray(mask) > 0
    total = int(m.sum())
    if total == 0:
        return None
    h, w = m.shape
    _, _, left, right = box or (0, h, 0, w)
    mid = (left + right) / 2.0
    cols = np.arange(w) + 0.5
    image_right = int(m[:, cols >= mid].sum())
    on_left = image_right  # patient's left = image's right
    return (on_left if side == "left" else total - on_left) / total


def named_side(cells: set[Cell] | None) -> str | None:
    """The one side a unilateral claim names, else ``None`` (bilateral, negative, unparsed)."""
    if not cells:
        return None
    sides = {side for side, _ in cells}
    return next(iter(sides)) if len(sides) == 1 else None


# --------------------------------------------------------------------------- the prior map


def _ramp(coord: np.ndarray, lo: float, hi: float, soft: float) -> np.ndarray:
    """Soft indicator of ``lo <= coord < hi``: a product of two logistic edges of width ``soft`` pixels."""
    soft = max(soft, 1e-3)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(coord - lo) / soft)) / (1.0 + np.exp(-(hi - coord) / soft))


def render_prior(
    cells: set[Cell] | None,
    shape: tuple[int, int],
    box: tuple[float, float, float, float],
    *,
    softness: float = SOFTNESS,
) -> np.ndarray:
    """The report as a ``(ZONE_CHANNELS, H, W)`` float32 map in [0, 1].

    Channel 0: the union of the claimed cells; a cell is the patient side's half of ``box`` (patient's left = the
    box's right half) x one third of its rows, with logistic edges ``softness`` x the box size wide. Channel 1: the
    whole box with the same edges. ``cells is None`` (unparsed report) -> all zeros; ``set()`` (negative report) ->
    only the box.
    """
    h, w = shape
    out = np.zeros((ZONE_CHANNELS, h, w), np.float32)
    if cells is None:
        return out
    top, bottom, left, right = box
    bh, bw = max(bottom - top, 1.0), max(right - left, 1.0)
    ys = np.arange(h, dtype=np.float64) + 0.5
    xs = np.arange(w, dtype=np.float64) + 0.5
    sy, sx = softness * bh, softness * bw
    mid = (left + right) / 2.0
    col = {"right": _ramp(xs, left, mid, sx), "left": _ramp(xs, mid, right, sx)}  # patient's right = image's left
    row = [_ramp(ys, top + i * bh / 3, top + (i + 1) * bh / 3, sy) for i in range(3)]
    zones = np.zeros((h, w), np.float64)
    for side, zone in cells:
        zones += np.outer(row[ZONE_NAMES.index(zone)], col[side])
    out[0] = np.clip(zones, 0.0, 1.0)
    out[1] = np.outer(_ramp(ys, top, bottom, sy), _ramp(xs, left, right, sx))
    return out


def zone_prior(sentence: str, image: Any, *, softness: float = SOFTNESS) -> np.ndarray:
    """:func:`render_prior` for a report sentence and the image it describes (8-bit, ``(H, W)`` or ``(H, W, C)``),
    with the lung box estimated from the image; ``(ZONE_CHANNELS, H, W)``."""
    a = np.asarray(image)
    return render_prior(parse_cells(sentence), a.shape[:2], lung_box(a), softness=softness)


def pseudo_label_gate(prior: np.ndarray) -> np.ndarray:
    """The report's correction of a pseudo-label: ``(..., ZONE_CHANNELS, H, W)`` priors -> ``(..., H, W)`` gates.

    A prediction times its gate keeps what lies in the zones the report claims (channel 0, soft edges) and clears
    the rest; a negative report (lungs found, nothing claimed) clears everything; where the report did not parse
    (free text: the lung-box channel is empty) the gate is all ones and the prediction passes unchanged."""
    a = np.asarray(prior, dtype=np.float32)
    if a.ndim < 3 or a.shape[-3] != ZONE_CHANNELS:
        raise ValueError(f"expected (..., {ZONE_CHANNELS}, H, W) zone priors, got shape {a.shape}")
    parsed = a[..., 1, :, :].max(axis=(-2, -1)) > 0  # (...)
    return np.where(parsed[..., None, None], a[..., 0, :, :], np.float32(1.0)).astype(np.float32)


__all__ = [
    "LUNG_BOX_FRACTIONS",
    "SIDES",
    "ZONE_CHANNELS",
    "ZONE_NAMES",
    "body_box",
    "box_iou",
    "expected_cells",
    "lung_box",
    "named_side",
    "observed_cells",
    "parse_cells",
    "pseudo_label_gate",
    "render_prior",
    "side_fraction",
    "swap_cells",
    "zone_prior",
]
