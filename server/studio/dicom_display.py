"""DICOM pixels to the 8-bit picture a clinician (and the model) sees, as the modality intends.

Grey-scale images go through the Modality LUT (rescale or Modality LUT Sequence), then the VOI transform the object
carries: a VOI LUT Sequence (CR/DX films often carry only this) or Window Center/Width with its ``VOILUTFunction``
(LINEAR, LINEAR_EXACT, SIGMOID), both applied by pydicom; min-max only when the object has neither. A window preset the
user picks replaces the object's own VOI. MONOCHROME1 is inverted after the VOI. PALETTE COLOR images become RGB
through their palette. Multi-frame objects give one frame, chosen by :func:`choose_frame`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing


def choose_frame(pixels: np.ndarray, *, frames: int, samples: int) -> tuple[np.ndarray, int]:
    """The middle frame of a multi-frame pixel array (the slice a 2D reader would show first) and its 0-based index.

    A single-frame array comes back as it is, with index 0.
    """
    if frames <= 1:
        return pixels, 0
    expected_ndim = 4 if samples > 1 else 3
    if pixels.ndim != expected_ndim:  # a decoder gave one frame only
        return pixels, 0
    index = frames // 2
    return pixels[index], index


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _windowed(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
    """Window Center/Width with the object's VOI LUT Function (pydicom's ``apply_windowing``), scaled to 0..255.

    ``apply_windowing`` answers in the object's output range (which depends on Bits Stored and the rescale); that range
    is read back by windowing two values far outside any window, so the scaling never re-derives pydicom's rule.
    """
    windowed = apply_windowing(values, ds)
    with np.errstate(over="ignore"):  # SIGMOID of the probes overflows exp() to exactly its bounds
        lo, hi = apply_windowing(np.array([-1e12, 1e12]), ds).tolist()
    function = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR").upper()
    window = {
        "center": _first_number(ds.WindowCenter),
        "width": _first_number(ds.WindowWidth),
        "function": function,
        "source": "tags",
    }
    return _scale(windowed, lo, hi), window


def _voi_lut(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, dict[str, Any]]:
    """The first VOI LUT Sequence item (pydicom's ``apply_voi``), scaled from the LUT's output range to 0..255.

    The table's own smallest and largest entries bound its output: vendors disagree on what the descriptor's bit count
    means (12-bit values in a table declared 16-bit are common), the table's contents do not.
    """
    item = ds.VOILUTSequence[0]
    mapped = apply_voi(values, ds)
    entries = int(item.LUTDescriptor[0]) or 65536
    first = int(item.LUTDescriptor[1])
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds)
    window = {"source": "voi_lut", "explanation": str(getattr(item, "LUTExplanation", "") or "")}
    return _scale(mapped, float(table.min()), float(table.max())), window


def monochrome_display(
    ds: Dataset, pixels: np.ndarray, *, preset: tuple[float, float] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """An ``(H, W)`` uint8 picture of one grey-scale frame, and how it was windowed (``meta["window"]``).

    ``preset`` is a ``(center, width)`` the user chose (linear); otherwise the object's VOI LUT Sequence wins over its
    Window Center/Width (pydicom's preference), and min-max is the last resort.
    """
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    values = apply_modality_lut(pixels, ds)
    if preset is not None:
        center, width = preset
        out = _scale(values, center - width / 2.0, center + width / 2.0)
        window: dict[str, Any] = {"center": center, "width": width, "function": "LINEAR", "source": "preset"}
    elif ds.get("VOILUTSequence"):
        out, window = _voi_lut(np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64), ds)
    elif _has_window(ds):
        out, window = _windowed(np.asarray(values, dtype=np.float64), ds)
    else:
        values = np.asarray(values, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        out = _scale(values, lo, hi)
        window = {"min": lo, "max": hi, "source": "range"}
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out, window


def _has_window(ds: Dataset) -> bool:
    center, width = _first_number(ds.get("WindowCenter")), _first_number(ds.get("WindowWidth"))
    if center is None or width is None:
        return False
    function = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in {"LINEAR", "LINEAR_EXACT", "SIGMOID"}:
        return False
    return width >= 1 if function == "LINEAR" else width > 0


def palette_display(ds: Dataset, pixels: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB picture of a PALETTE COLOR frame through its Red/Green/Blue palette LUTs."""
    rgb = np.asarray(apply_color_lut(pixels, ds))
    if rgb.dtype == np.uint8:
        return rgb
    if float(rgb.max(initial=0)) <= 255:  # 16-bit entries that hold 8-bit values (seen in the wild)
        return rgb.astype(np.uint8)
    return np.clip(np.rint(rgb.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
