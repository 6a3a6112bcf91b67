"""Decoding and validating uploads: PNG, JPEG, TIFF, 16-bit PNG and DICOM; masks; zip archives.

Everything here is pure (bytes in, bytes/arrays out, :class:`ImageError` on bad input) so it can be validated before
anything is written to storage. DICOM files are de-identified (PS3.15 basic profile as an allow-list, see
``server/studio/deid.py``) before the original is kept. pydicom (about 1.5 s to import) is imported by the DICOM
functions, so a process that never sees a DICOM file does not load it.
"""

from __future__ import annotations

import io
import posixpath
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from server.core.errors import ServiceError
from server.studio import dicom_guard
from server.studio.reports import body_box


class ImageError(ServiceError):
    code = "invalid_image"


# CT window presets (center, width) in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "soft_tissue": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpeg", "TIFF": "tiff", "BMP": "bmp"}


@dataclass
class DecodedImage:
    """A validated upload: the normalized 8-bit PNG and the original bytes to keep (de-identified for DICOM)."""

    normalized_png: bytes
    original: bytes
    original_format: str  # png | jpeg | tiff | bmp | dicom
    width: int
    height: int
    channels: int
    meta: dict[str, Any] = field(default_factory=dict)


def max_pixels() -> int:
    return int(settings.LVIT_MAX_IMAGE_PIXELS)


def max_bytes() -> int:
    return int(settings.LVIT_MAX_UPLOAD_BYTES)


def _check_pixels(width: int, height: int, frames: int = 1) -> None:
    limit = max_pixels()
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has no pixels ({width}x{height})", code="invalid_image")
    if width * height * frames > limit:
        raise ImageError(
            f"the image has {width}x{height}{f'x{frames}' if frames > 1 else ''} pixels, more than the limit of "
            f"{limit} (LVIT_MAX_IMAGE_PIXELS)",
            code="image_too_large",
        )


def is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def _to_uint8(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (array.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def encode_png(array: np.ndarray) -> bytes:
    """An ``(H, W)`` or ``(H, W, 3)`` uint8 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _open_pil(data: bytes, formats: tuple[str, ...] = tuple(IMAGE_FORMATS)) -> Image.Image:
    """Open with only the Pillow plugins of ``formats`` (not PSD, SGI, FLI, EPS/Ghostscript, ... that any byte string
    could otherwise reach), check the size, then decode."""
    Image.MAX_IMAGE_PIXELS = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=list(formats))
            _check_pixels(*im.size, getattr(im, "n_frames", 1))
            im.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large: {exc}", code="image_too_large") from None
    except UnidentifiedImageError:
        if data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")):
            raise ImageError("the image is corrupt: its header is damaged", code="corrupt_image") from None
        raise ImageError(
            "the file is not an image this server reads; upload PNG, JPEG, TIFF or DICOM", code="unsupported_format"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"the image is corrupt or truncated: {exc}", code="corrupt_image") from None
    return im


def _decode_pil(data: bytes) -> DecodedImage:
    im = _open_pil(data)
    fmt = IMAGE_FORMATS.get(im.format or "")
    if fmt is None:
        raise ImageError(
            f"{im.format} images are not supported; upload PNG, JPEG, TIFF or DICOM", code="unsupported_format"
        )
    meta: dict[str, Any] = {"mode": im.mode}
    if im.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        array = np.asarray(im)
        lo, hi = float(np.min(array)), float(np.max(array))
        out = _to_uint8(array, lo, hi)
        meta["window"] = {"min": lo, "max": hi}
    elif im.mode in {"L", "1", "LA"}:
        out = np.asarray(im.convert("L"))
    elif im.mode == "P":
        rgb = np.asarray(im.convert("RGB"))
        grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        out = rgb[..., 0] if grey else rgb
    else:  # RGB, RGBA, CMYK, YCbCr, ...
        out = np.asarray(im.convert("RGB"))
    height, width = out.shape[:2]
    meta["body_box"] = list(body_box(out))
    return DecodedImage(
        normalized_png=encode_png(out),
        original=data,
        original_format=fmt,
        width=width,
        height=height,
        channels=1 if out.ndim == 2 else 3,
        meta=meta,
    )


def deidentify(ds: Any) -> list[str]:
    """De-identify in place with the basic profile's allow-list (:mod:`server.studio.deid`)."""
    from server.studio import deid

    return deid.deidentify(ds)


def _decode_dicom(data: bytes, *, window: str | None = None) -> DecodedImage:
    try:  # before pydicom, whose reader and writer recurse once per sequence level
        dicom_guard.dicom_check(data, max_bytes=max_bytes())
    except dicom_guard.DicomRefused as exc:
        raise ImageError(exc.detail, code=exc.code) from None
    import pydicom
    from pydicom.errors import InvalidDicomError

    from server.studio import dicom_codecs, dicom_display  # pydicom's pixel stack: only where DICOM is decoded

    dicom_codecs.register()  # 12-bit JPEG Extended (idempotent; here rather than at start-up)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"the DICOM file is corrupt or truncated: {exc}", code="corrupt_image") from None
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    ts_name = f"{ts.name} ({ts})" if ts is not None else "an unknown transfer syntax"
    if "PixelData" not in ds:
        raise ImageError("the DICOM file holds no image (no Pixel Data element)", code="unsupported_format")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise ImageError("the DICOM file lacks valid Rows/Columns", code="corrupt_image") from None
    _check_pixels(cols, rows, frames)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageError(
            f"cannot decode DICOM pixel data in transfer syntax {ts_name}: {first_line}", code="unsupported_codec"
        ) from None
    except (ValueError, EOFError, OSError, AttributeError, KeyError, TypeError, IndexError) as exc:
        raise ImageError(
            f"the DICOM pixel data ({ts_name}) is corrupt or truncated: {exc}", code="corrupt_image"
        ) from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    pixels, frame = dicom_display.choose_frame(np.asarray(pixels), frames=frames, samples=samples)
    meta: dict[str, Any] = {
        "modality": str(getattr(ds, "Modality", "")),
        "photometric": photometric,
        "transfer_syntax": str(ts) if ts is not None else "",
        "frames": frames,
    }
    if frames > 1:
        meta["frame"] = frame
    if window and window not in WINDOW_PRESETS:
        raise ImageError(f"unknown window preset {window!r}; use one of {sorted(WINDOW_PRESETS)}")
    try:
        if samples == 1 and photometric == "PALETTE COLOR":
            out = dicom_display.palette_display(ds, pixels)
            meta["window"] = {"source": "palette"}
        elif samples == 1:
            out, meta["window"] = dicom_display.monochrome_display(
                ds, pixels, preset=WINDOW_PRESETS[window] if window else None
            )
            if window:
                meta["window"]["preset"] = window
        else:
            arr = np.asarray(pixels)
            out = arr.astype(np.uint8) if arr.dtype == np.uint8 else _to_uint8(arr, float(arr.min()), float(arr.max()))
    except (ValueError, KeyError, AttributeError, IndexError, TypeError, NotImplementedError) as exc:
        raise ImageError(f"the DICOM display attributes (VOI LUT, window or palette) are invalid: {exc}") from None
    meta["deidentified"] = deidentify(ds)
    meta["body_box"] = list(body_box(out))
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=False)
    except Exception as exc:  # pydicom raises many types on odd files; none may escape as a 500
        raise ImageError(f"the DICOM file cannot be re-written after de-identification: {exc}") from None
    height, width = out.shape[:2]
    return DecodedImage(
        normalized_png=encode_png(out),
        original=buf.getvalue(),
        original_format="dicom",
        width=width,
        height=height,
        channels=1 if out.ndim == 2 else 3,
        meta=meta,
    )


def dicom_hounsfield(data: bytes) -> np.ndarray:
    """Modality-LUT values (HU for CT) of a DICOM file's displayed frame, as float32 (middle frame if several)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from server.studio import dicom_codecs

    dicom_codecs.register()
    ds = pydicom.dcmread(io.BytesIO(data))
    pixels = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[len(pixels) // 2]
    if pixels.ndim != 2:
        raise ImageError("not a single-channel image")
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)


def decode_upload(data: bytes, *, filename: str = "", window: str | None = None) -> DecodedImage:
    """Validate and decode one uploaded file; raises :class:`ImageError` with what is wrong."""
    if not data:
        raise ImageError(f"{filename or 'the file'} is empty", code="empty_file")
    if len(data) > max_bytes():
        raise ImageError(
            f"{filename or 'the file'} has {len(data)} bytes, more than the limit of {max_bytes()}",
            code="file_too_large",
        )
    if is_dicom(data) or filename.lower().endswith((".dcm", ".dicom")):
        if not is_dicom(data):
            raise ImageError(
                f"{filename} is not a DICOM Part 10 file (no 'DICM' marker at byte 128)", code="corrupt_image"
            )
        return _decode_dicom(data, window=window)
    return _decode_pil(data)


# --- Masks ---------------------------------------------------------------------------------------------------------


def decode_mask(data: bytes, *, width: int, height: int) -> np.ndarray:
    """A binary ``(H, W)`` bool mask from PNG bytes; any non-zero pixel is foreground."""
    if not data:
        raise ImageError("the mask file is empty", code="invalid_mask")
    im = _open_pil(data, formats=("PNG",))
    if im.format != "PNG":
        raise ImageError(f"masks must be PNG, got {im.format}", code="invalid_mask")
    if im.size != (width, height):
        raise ImageError(
            f"the mask is {im.size[0]}x{im.size[1]} but the image is {width}x{height}; expected {width}x{height}",
            code="mask_size",
        )
    if im.mode == "P":
        array = np.asarray(im)  # palette indices: 0 = background
    elif im.mode in {"RGB", "RGBA"}:
        array = np.asarray(im.convert("RGB")).max(axis=2)
    else:
        array = np.asarray(im.convert("L") if im.mode not in {"L", "I", "I;16", "1"} else im)
    return np.asarray(array) > 0


def canonical_mask_png(data: bytes, *, width: int, height: int) -> tuple[bytes, np.ndarray]:
    """PNG bytes to store for a mask, and the mask. An 8-bit grey 0/255 PNG is kept byte for byte (so datasets
    round-trip exactly); anything else is re-encoded as one."""
    mask = decode_mask(data, width=width, height=height)
    im = Image.open(io.BytesIO(data), formats=["PNG"])
    if im.mode == "L":
        values = np.unique(np.asarray(im))
        if set(values.tolist()) <= {0, 255}:
            return data, mask
    return encode_mask(mask), mask


def thumbnail_png(data: bytes, *, size: int) -> bytes:
    """A stored (normalized) image scaled down to fit ``size`` x ``size`` pixels, keeping its aspect ratio."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    return encode_png(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8))


def mask_from_png(data: bytes) -> np.ndarray:
    """Stored mask PNG (already validated) to a bool array."""
    im = Image.open(io.BytesIO(data), formats=["PNG"])
    return np.asarray(im.convert("L")) > 0


# --- Archives ------------------------------------------------------------------------------------------------------


def safe_member_name(name: str) -> str:
    """A zip member's normalized relative path, refusing absolute paths and ``..`` (zip slip)."""
    cleaned = name.replace("\\", "/")
    norm = posixpath.normpath(cleaned)
    if cleaned.startswith("/") or norm.startswith("../") or norm == ".." or "/../" in f"/{cleaned}/" or ":" in norm:
        raise ImageError(f"refusing the archive member {name!r}: absolute or parent paths are not allowed")
    return norm


def safe_filename(name: str) -> str:
    """The base name of an uploaded file, refusing path-like names (``../../etc/passwd.png``)."""
    cleaned = (name or "").replace("\\", "/")
    base = posixpath.basename(cleaned)
    if cleaned != base or base in {"", ".", ".."} or base.startswith(".") or any(ord(c) < 32 for c in base):
        raise ImageError(f"refusing the file name {name!r}: give a plain file name without folders")
    if len(base) > 200:
        raise ImageError("the file name is longer than 200 characters")
    return base


def open_zip(data: bytes, *, max_members: int = 100_000) -> zipfile.ZipFile:
    """Open an uploaded zip after checking its declared sizes against the upload limit (zip bombs)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImageError(f"the archive is not a valid zip file: {exc}", code="invalid_archive") from None
    infos = zf.infolist()
    if len(infos) > max_members:
        raise ImageError(f"the archive has {len(infos)} members, more than {max_members}", code="invalid_archive")
    total = sum(i.file_size for i in infos)
    limit = max_bytes() * 4
    if total > limit:
        raise ImageError(
            f"the archive unpacks to {total} bytes, more than the limit of {limit}", code="invalid_archive"
        )
    for info in infos:
        safe_member_name(info.filename)
    return zf


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    limit = max_bytes()
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise ImageError(f"cannot read {info.filename!r} from the archive: {exc}", code="invalid_archive") from None
    if len(data) > limit:
        raise ImageError(f"{info.filename!r} is larger than {limit} bytes", code="file_too_large")
    return data


def iter_zip_files(zf: zipfile.ZipFile) -> Iterator[tuple[str, zipfile.ZipInfo]]:
    """``(normalized path, info)`` of regular files, skipping folders, dotfiles and ``__MACOSX``."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = safe_member_name(info.filename)
        parts = name.split("/")
        if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            continue
        yield name, info
