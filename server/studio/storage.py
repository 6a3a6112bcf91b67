"""Reading stored files (images, masks, soft maps, checkpoints) through Django's storage API, never local paths."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from django.core.files.storage import default_storage
from PIL import Image


def read_file(name: str) -> bytes:
    with default_storage.open(name, "rb") as fh:
        return fh.read()


def read_image(name: str) -> Image.Image:
    """A stored image, decoded (PNG or JPEG)."""
    im = Image.open(io.BytesIO(read_file(name)))
    im.load()
    return im


def read_uint8_png(name: str) -> np.ndarray:
    """A stored single-channel 8-bit PNG (mask, soft map) as a (H, W) uint8 array."""
    return np.asarray(read_image(name).convert("L"), dtype=np.uint8)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
